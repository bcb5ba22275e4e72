"""``package_run``: a run folder's deployable files in one reproducible ``.tar.gz``.

The bundle holds ``student.onnx`` (required), the FHIR ``mapping.yaml`` if the run has one,
the model card (``model_card.json``, plus ``report.json``/``.md``/``.html``,
``pipeline.yaml`` and ``ledger.json`` when present) and two hash lists of every member:
``bundle_manifest.json`` and ``SHA256SUMS`` (``sha256sum -c SHA256SUMS`` checks it without
Python). Members are checked against the run's ``manifest.json`` first, so a run folder
edited after the run is refused. Same run in, same bytes out.
"""

from __future__ import annotations

import gzip
import hashlib
import io
import json
import os
import tarfile
import uuid
from datetime import datetime
from pathlib import Path
from typing import Any

from medistill import __version__
from medistill.deploy.model import MODEL_FILE, file_sha256, load_model
from medistill.errors import RunFolderError

OPTIONAL = ("mapping.yaml", "report.json", "report.md", "report.html", "pipeline.yaml",
            "ledger.json")
CARD, MANIFEST, SUMS = "model_card.json", "bundle_manifest.json", "SHA256SUMS"


def _bundle_name(out: Path) -> str:
    name = out.name
    for suffix in (".tar.gz", ".tgz"):
        if name.endswith(suffix):
            return name[: -len(suffix)] or "student"
    return out.stem or "student"


def _epoch(run_dir: Path) -> int:
    """The run's creation time (from report.json), so the archive is reproducible."""
    try:
        created = json.loads((run_dir / "report.json").read_text())["run"]["created_at"]
        return int(datetime.fromisoformat(created.replace("Z", "+00:00")).timestamp())
    except (OSError, ValueError, KeyError, TypeError, AttributeError):
        return 0


def _check_against_run_manifest(run_dir: Path, members: dict[str, str]) -> None:
    try:
        recorded = json.loads((run_dir / "manifest.json").read_text()).get("sha256") or {}
    except (OSError, ValueError, AttributeError):
        return
    changed = [name for name, digest in members.items()
               if name in recorded and recorded[name] != digest]
    if changed:
        raise RunFolderError(
            f"{run_dir}: {', '.join(changed)} differ(s) from the run's manifest.json; the run "
            "folder was modified after the run.",
            hint="Package an untouched run folder (or re-run the pipeline).")


def _write_tar(path: Path, folder: str, contents: dict[str, bytes], mtime: int) -> None:
    """A gzipped tar with fixed names, order, owners, modes and times (reproducible)."""
    with path.open("wb") as raw, \
            gzip.GzipFile(filename="", fileobj=raw, mode="wb", mtime=mtime) as gz, \
            tarfile.open(fileobj=gz, mode="w", format=tarfile.PAX_FORMAT) as tar:
        for name in sorted(contents):
            info = tarfile.TarInfo(f"{folder}/{name}")
            info.size, info.mtime, info.mode = len(contents[name]), mtime, 0o644
            tar.addfile(info, io.BytesIO(contents[name]))


def package_run(run_dir: str | Path, out_tar_gz: str | Path) -> dict[str, Any]:
    """Write the deployable bundle of ``run_dir`` to ``out_tar_gz`` atomically.

    Returns ``{"out", "folder", "sha256" (of the archive), "members": {name: sha256}}``.
    Raises :class:`RunFolderError` if the folder or its ``student.onnx`` is missing, or a
    member differs from the run's ``manifest.json``.
    """
    run_dir, out = Path(run_dir), Path(out_tar_gz)
    if not run_dir.is_dir():
        raise RunFolderError(f"run folder '{run_dir}' does not exist.")
    if not (run_dir / MODEL_FILE).is_file():
        raise RunFolderError(f"'{run_dir}' has no {MODEL_FILE}; it is not a finished run "
                             "folder.", hint="Package the folder written by `medistill run`.")
    if out.is_dir():
        raise RunFolderError(f"--out '{out}' is a folder; expected a .tar.gz file path.")
    files = [MODEL_FILE] + [n for n in OPTIONAL if (run_dir / n).is_file()]
    hashes = {name: file_sha256(run_dir / name) for name in files}
    _check_against_run_manifest(run_dir, hashes)
    card = json.dumps(load_model(run_dir / MODEL_FILE).card, indent=2, sort_keys=True).encode()
    contents: dict[str, bytes] = {name: (run_dir / name).read_bytes() for name in files}
    contents[CARD] = card
    hashes[CARD] = hashlib.sha256(card).hexdigest()
    manifest = json.dumps({"medistill_version": __version__, "model": MODEL_FILE,
                           "sha256": hashes}, indent=2, sort_keys=True).encode()
    contents[MANIFEST] = manifest
    contents[SUMS] = "".join(f"{hashes[n]}  {n}\n" for n in sorted(hashes)).encode()
    folder, mtime = _bundle_name(out), _epoch(run_dir)
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = out.with_name(f".{out.name}.tmp-{uuid.uuid4().hex[:8]}")
    try:
        _write_tar(tmp, folder, contents, mtime)
        os.replace(tmp, out)
    finally:
        tmp.unlink(missing_ok=True)
    return {"out": str(out), "folder": folder, "sha256": file_sha256(out), "members": hashes}


__all__ = ["CARD", "MANIFEST", "SUMS", "package_run"]
