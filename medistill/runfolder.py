"""Atomic run folders: everything is written to a temporary sibling folder, then moved
into place in one rename. A failed run leaves nothing half-written."""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import uuid
from pathlib import Path
from types import TracebackType

from medistill.errors import RunFolderError

MANIFEST = "manifest.json"


def sha256_of(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as handle:
        for chunk in iter(lambda: handle.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def write_manifest(folder: Path) -> dict[str, str]:
    """sha256 of every file in ``folder`` (except the manifest itself)."""
    hashes = {str(p.relative_to(folder)): sha256_of(p) for p in sorted(folder.rglob("*"))
              if p.is_file() and p.name != MANIFEST}
    (folder / MANIFEST).write_text(json.dumps({"sha256": hashes}, indent=2))
    return hashes


class AtomicRunFolder:
    """Context manager: ``with AtomicRunFolder(out) as tmp: write into tmp``.

    On success the manifest is written and ``tmp`` replaces ``out`` (an earlier medistill
    run folder there is replaced; any other existing content is refused). On error ``tmp``
    is removed and ``out`` is untouched.
    """

    def __init__(self, destination: Path) -> None:
        self.destination = Path(destination)

    def __enter__(self) -> Path:
        dest = self.destination
        if dest.exists() and (not dest.is_dir() or
                              (any(dest.iterdir()) and not (dest / MANIFEST).exists())):
            raise RunFolderError(
                f"'{dest}' exists and is not a medistill run folder; refusing to overwrite it.",
                hint="Choose another --out folder, or remove this one first.")
        dest.parent.mkdir(parents=True, exist_ok=True)
        self.tmp = dest.parent / f".{dest.name}.tmp-{uuid.uuid4().hex[:8]}"
        self.tmp.mkdir()
        return self.tmp

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        if exc_type is not None:
            shutil.rmtree(self.tmp, ignore_errors=True)
            return
        write_manifest(self.tmp)
        old = None
        if self.destination.exists():
            old = self.destination.parent / f".{self.destination.name}.old-{uuid.uuid4().hex[:8]}"
            os.replace(self.destination, old)
        os.replace(self.tmp, self.destination)
        if old is not None:
            shutil.rmtree(old, ignore_errors=True)


__all__ = ["MANIFEST", "AtomicRunFolder", "sha256_of", "write_manifest"]
