"""A model's own content hash, embedded in its ONNX metadata (``medistill_content_sha256``).

The hash is the sha256 of the serialized model with that metadata value set to 64 zeros;
the real value has the same length, so a checker swaps it back to zeros in the file's bytes
and hashes again — with the bytes alone, no ONNX parser. It detects a model changed after
export (bit flips, edited weights) even when no manifest travels with it. Like the
manifests, it is a checksum, not a signature: whoever can rewrite the file can rewrite it.
"""

from __future__ import annotations

import hashlib
from typing import Any

CONTENT_KEY = "medistill_content_sha256"
PLACEHOLDER = "0" * 64


def _set_prop(model: Any, key: str, value: str) -> None:
    for prop in model.metadata_props:
        if prop.key == key:
            prop.value = value
            return
    entry = model.metadata_props.add()
    entry.key, entry.value = key, value


def seal(model: Any) -> bytes:
    """The serialized ``onnx.ModelProto`` with its content hash embedded."""
    _set_prop(model, CONTENT_KEY, PLACEHOLDER)
    blank = model.SerializeToString()
    digest = hashlib.sha256(blank).hexdigest()
    _set_prop(model, CONTENT_KEY, digest)
    sealed = model.SerializeToString()
    if len(sealed) != len(blank) or sealed.replace(digest.encode(), PLACEHOLDER.encode()) != blank:
        raise RuntimeError("could not embed the content hash")  # pragma: no cover
    return sealed


def matches_embedded(data: bytes, claimed: str) -> bool:
    """Do the bytes ``data`` of a model match the content hash ``claimed`` in its metadata?"""
    needle = claimed.encode()
    if len(claimed) != 64 or data.count(needle) != 1:
        return False
    return hashlib.sha256(data.replace(needle, PLACEHOLDER.encode())).hexdigest() == claimed


__all__ = ["CONTENT_KEY", "PLACEHOLDER", "matches_embedded", "seal"]
