"""The deployed student: an onnxruntime session, the schema stored in the model's metadata,
and a model card built from that metadata and the releasable ``model_card.json`` beside it
(never from the internal ``report.json``).

Before a model is loaded its sha256 must match the hash recorded beside it (the run's
``manifest.json`` or a bundle's ``bundle_manifest.json``); a model that does not verify is
refused unless the caller opts out explicitly (``verify=False``), which is logged.

Imports onnxruntime, numpy and PyYAML only: never torch, scikit-learn or pandas.
"""

from __future__ import annotations

import hashlib
import json
import logging
from dataclasses import dataclass
from functools import cached_property
from pathlib import Path
from typing import Any

import numpy as np

from medistill.errors import DataError, ModelIntegrityError
from medistill.runfolder import sha256_of

log = logging.getLogger("medistill.deploy")
MANIFESTS = ("manifest.json", "bundle_manifest.json")
CARD_FILE = "model_card.json"

MODEL_FILE = "student.onnx"
OUTPUT_NAME = "probabilities"
NUMERIC, BINARY, CATEGORICAL = "numeric", "binary", "categorical"
PATIENT_KEY = "patient_key"
_DEFAULT_ID = {"builtin": "patient_id", "fhir": PATIENT_KEY}


@dataclass(frozen=True)
class Feature:
    """One input column of the model: its kind and, for categoricals, the known categories."""

    name: str
    kind: str
    categories: tuple[str, ...] = ()


@dataclass(frozen=True)
class ModelSchema:
    """What the model reads (features) and predicts (label, classes), and the export codes
    read as missing besides the usual spellings (``data.missing_values`` of its run)."""

    label: str
    classes: tuple[str, ...]
    features: tuple[Feature, ...]
    missing_values: tuple[str, ...] = ()

    @property
    def feature_names(self) -> list[str]:
        return [f.name for f in self.features]

    @classmethod
    def from_metadata(cls, raw: str, *, source: str) -> ModelSchema:
        try:
            data = json.loads(raw)
            features = tuple(Feature(str(f["name"]), str(f["kind"]),
                                     tuple(str(c) for c in f.get("categories") or ()))
                             for f in data["features"])
            codes = data.get("missing_values") or []
            if not isinstance(codes, list) or not all(isinstance(c, str) for c in codes):
                raise TypeError("'missing_values' must be a list of strings")
            schema = cls(str(data["label"]), tuple(str(c) for c in data["classes"]), features,
                         tuple(codes))
        except (ValueError, KeyError, TypeError) as error:
            raise DataError(f"{source}: the 'schema' metadata is not valid ({error}).",
                            hint="Re-export the model with medistill.") from None
        bad = [f.name for f in features if f.kind not in (NUMERIC, BINARY, CATEGORICAL)]
        if bad or len(schema.classes) < 2:
            raise DataError(f"{source}: the 'schema' metadata has unknown feature kinds "
                            f"{bad} or fewer than two classes.")
        return schema


file_sha256 = sha256_of  # one implementation, shared with the run folder's manifest


def _read_json(path: Path) -> dict | None:
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    return data if isinstance(data, dict) else None


def _id_columns(folder: Path) -> tuple[str, ...]:
    """``patient_key``, and the run's id column (``data.id_column`` of its pipeline.yaml)."""
    import yaml

    columns = [PATIENT_KEY]
    try:
        data = yaml.safe_load((folder / "pipeline.yaml").read_text(encoding="utf-8"))
        data = data.get("data") or {}
        column = data.get("id_column") or _DEFAULT_ID.get(str(data.get("source")))
    except (OSError, UnicodeDecodeError, yaml.YAMLError, AttributeError):
        column = None
    if not column:
        card = _read_json(folder / CARD_FILE) or {}
        column = (card.get("inputs") or {}).get("key_column")
    if column and str(column) not in columns:
        columns.append(str(column))
    return tuple(columns)


def _resolve(path: Path) -> Path:
    path = Path(path)
    if path.is_dir():
        path = path / MODEL_FILE
    if not path.is_file():
        raise DataError(f"model file '{path}' does not exist.",
                        hint=f"Point --model at the {MODEL_FILE} of a finished run folder "
                             "(or an unpacked `medistill package` bundle).")
    return path


class DeployedModel:
    """A loaded ``student.onnx``; thread-safe (onnxruntime sessions are)."""

    def __init__(self, path: Path, session: Any, schema: ModelSchema,
                 metadata: dict[str, str], *, sha256: str | None = None,
                 integrity: str = "not checked") -> None:
        self.path = path
        self.session = session
        self.schema = schema
        self.metadata = metadata
        self.sha256 = sha256 or file_sha256(path)
        self.integrity = integrity
        self.id_columns = _id_columns(path.parent)

    @property
    def folder(self) -> Path:
        return self.path.parent

    @property
    def binary(self) -> bool:
        return len(self.schema.classes) == 2

    def predict_proba(self, feeds: dict[str, np.ndarray]) -> np.ndarray:
        """Class probabilities ``[N, n_classes]`` (float32) for prepared feeds."""
        return self.session.run([OUTPUT_NAME], feeds)[0]

    @cached_property
    def card(self) -> dict[str, Any]:
        """Model card: identity, inputs, privacy claim and (if present) the audit's verdict."""
        return model_card(self)


def _check_io(session: Any, schema: ModelSchema, source: str) -> None:
    inputs = {i.name: i.type for i in session.get_inputs()}
    expected = {f.name: "tensor(string)" if f.kind == CATEGORICAL else "tensor(float)"
                for f in schema.features}
    if inputs != expected:
        raise DataError(f"{source}: the graph's inputs do not match its schema metadata "
                        f"(graph: {sorted(inputs)}; schema: {sorted(expected)}).",
                        hint="Re-export the model with medistill.")
    if OUTPUT_NAME not in {o.name for o in session.get_outputs()}:
        raise DataError(f"{source}: the graph has no '{OUTPUT_NAME}' output.")


def _manifest_check(path: Path, digest: str) -> str | None:
    """"ok: matches NAME" if a manifest beside ``path`` records ``digest`` for it; None if
    there is no manifest; :class:`ModelIntegrityError` if one differs or does not list it."""
    for name in MANIFESTS:
        manifest_path = path.parent / name
        if not manifest_path.exists():
            continue
        manifest = _read_json(manifest_path) if not manifest_path.is_symlink() else None
        recorded = ((manifest or {}).get("sha256") or {})
        recorded = recorded.get(path.name) if isinstance(recorded, dict) else None
        if recorded is None:
            raise ModelIntegrityError(
                f"model file '{path}': {name} beside it does not list it (or is unreadable), "
                "so the model cannot be verified; refusing to use it.",
                hint="Use the student.onnx of an untouched run folder or package bundle.")
        if recorded != digest:
            raise ModelIntegrityError(
                f"model file '{path}' does not match the sha256 recorded in {name}: it was "
                "modified or corrupted after the run; refusing to score with it.",
                hint="Restore the model from its run folder or package.")
        return f"ok: matches {name}"
    return None


def verify_model(path: Path, data: bytes, embedded: str | None) -> str:
    """How the model bytes ``data`` (read from ``path``) were verified: against the manifest
    beside it and/or the content hash ``embedded`` in its own metadata. Raises
    :class:`ModelIntegrityError` if either differs, or if there is neither."""
    from medistill.integrity import matches_embedded

    by_manifest = _manifest_check(path, hashlib.sha256(data).hexdigest())
    if embedded is not None and not matches_embedded(data, embedded):
        raise ModelIntegrityError(
            f"model file '{path}' does not match the content hash in its own metadata: it "
            "was modified or corrupted after export; refusing to score with it.",
            hint="Restore the model from its run folder or package.")
    if by_manifest:
        return by_manifest + (" and its embedded content hash" if embedded else "")
    if embedded:
        return "ok: matches its embedded content hash"
    raise ModelIntegrityError(
        f"model file '{path}' has no manifest.json or bundle_manifest.json beside it and no "
        "embedded content hash, so its integrity cannot be checked; refusing to use it.",
        hint="Point --model at a run folder or an unpacked `medistill package` bundle, or "
             "pass --allow-unverified-model to use it anyway (logged).")


def load_model(path: str | Path, *, threads: int | None = None,
               verify: bool = True) -> DeployedModel:
    """Load ``student.onnx`` (or the one inside a run folder) with its schema.

    ``threads`` sets onnxruntime's intra-op threads (default: onnxruntime's choice).
    ``verify`` (default) refuses a model whose sha256 does not match the manifest beside
    it (:class:`ModelIntegrityError`); ``verify=False`` is an explicit, logged opt-out.
    Raises :class:`DataError` if the file is missing, not ONNX, or not a medistill model.
    """
    import onnxruntime as ort

    from medistill.integrity import CONTENT_KEY

    path = _resolve(path)
    data = path.read_bytes()  # verified and loaded from the same bytes
    digest = hashlib.sha256(data).hexdigest()
    if verify:
        _manifest_check(path, digest)  # a known-bad model is refused before it is parsed
    else:
        log.warning("model %s (sha256 %s) loaded WITHOUT integrity verification "
                    "(--allow-unverified-model)", path, digest)
    options = ort.SessionOptions()
    options.log_severity_level = 3
    if threads:
        options.intra_op_num_threads = int(threads)
        options.inter_op_num_threads = 1
    try:
        session = ort.InferenceSession(data, sess_options=options,
                                       providers=["CPUExecutionProvider"])
    except Exception as error:  # onnxruntime raises its own exception types
        reason = str(error).splitlines()[0][:200] if str(error) else type(error).__name__
        raise DataError(f"model file '{path}' is not an ONNX model onnxruntime can load "
                        f"({reason}).",
                        hint=f"Use the {MODEL_FILE} written by medistill.") from None
    try:
        metadata = dict(session.get_modelmeta().custom_metadata_map)
    except (UnicodeDecodeError, RuntimeError):
        raise DataError(f"model file '{path}': its metadata is not readable (corrupted?).",
                        hint=f"Use the {MODEL_FILE} written by medistill.") from None
    if "schema" not in metadata:
        raise DataError(f"model file '{path}' has no medistill 'schema' metadata; it was not "
                        "exported by medistill.", hint=f"Use the {MODEL_FILE} of a run folder.")
    integrity = (verify_model(path, data, metadata.get(CONTENT_KEY)) if verify else
                 "NOT VERIFIED: loaded with the integrity check switched off")
    schema = ModelSchema.from_metadata(metadata["schema"], source=str(path))
    _check_io(session, schema, str(path))
    return DeployedModel(path, session, schema, metadata, sha256=digest, integrity=integrity)


def _float(value: Any) -> float | None:
    try:
        return float(value)
    except (TypeError, ValueError):
        return None


def model_card(model: DeployedModel) -> dict[str, Any]:
    """Identity, inputs and privacy claim of a model (from its metadata), plus the
    releasable ``model_card.json`` beside it when that card describes this very model
    (same sha256). The internal audit report is never read, nor any metadata key beyond
    these (an older model may still carry ``pipeline_sha256``: it is not echoed)."""
    meta = model.metadata
    privacy: dict[str, Any] = {
        "unit": "patient",
        "formal_guarantee": meta.get("formal_guarantee") == "true",
        "epsilon": _float(meta.get("epsilon")), "delta": _float(meta.get("delta")),
        "accountant": meta.get("accountant"), "source": "student.onnx metadata"}
    card: dict[str, Any] = {
        "model": {"file": model.path.name, "sha256": model.sha256,
                  "size_bytes": model.path.stat().st_size,
                  "medistill_version": meta.get("medistill_version"),
                  "label": model.schema.label, "classes": list(model.schema.classes),
                  "features": [{"name": f.name, "kind": f.kind,
                                "categories": list(f.categories)} for f in model.schema.features],
                  "integrity": model.integrity},
        "privacy": privacy, "card": None}
    released = _read_json(model.folder / CARD_FILE)
    if released and (released.get("model") or {}).get("sha256") == model.sha256:
        card["card"] = released
        claimed = released.get("privacy") or {}
        privacy.update({k: claimed[k] for k in ("unit", "formal_guarantee", "epsilon", "delta",
                                                "accountant", "covered") if k in claimed})
        privacy["source"] = CARD_FILE
    elif released:
        card["card_note"] = (f"{CARD_FILE} beside the model describes another model (sha256 "
                             "differs); it was not used.")
    return card


__all__ = ["BINARY", "CATEGORICAL", "MODEL_FILE", "NUMERIC", "OUTPUT_NAME", "PATIENT_KEY",
           "DeployedModel", "Feature", "ModelSchema", "file_sha256", "load_model", "model_card",
           "verify_model"]
