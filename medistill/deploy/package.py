"""``package_run``: a run folder's deployable files in one reproducible ``.tar.gz``.

The bundle holds ``student.onnx`` (required), the releasable model card
(``model_card.json``, ``model_card.md``), ``ledger.json`` and the FHIR ``mapping.yaml``
when the run has them, and two hash lists of every member: ``bundle_manifest.json`` and
``SHA256SUMS`` (``sha256sum -c SHA256SUMS`` checks it without Python). Never the internal
audit report, never ``pipeline.yaml`` (local paths, seed), never a per-patient file.

Only files listed in the run's ``manifest.json`` are taken, each verified against it first;
a missing manifest, a changed file or a symbolic link is refused. Member names are fixed
(``<name>/<file>``, never ``..``); member modes and the archive follow the umask. Same run
and umask in, same bytes out.
"""

from __future__ import annotations

import gzip
import hashlib
import io
import json
import os
import re
import tarfile
import uuid
from datetime import datetime
from pathlib import Path
from typing import Any

from medistill import __version__
from medistill.deploy.model import MODEL_FILE, file_sha256, load_model
from medistill.errors import ModelIntegrityError, RunFolderError
from medistill.runfolder import verify_manifest

RELEASABLE = ("mapping.yaml", "model_card.json", "model_card.md", "ledger.json")
CARD, MANIFEST, SUMS = "model_card.json", "bundle_manifest.json", "SHA256SUMS"
_SAFE = re.compile(r"[^A-Za-z0-9._-]+")


def bundle_name(out: Path) -> str:
    """The folder inside the archive: the file name without ``.tar.gz``, made safe (no
    path separators, no leading dots, so never ``.`` or ``..``)."""
    name = out.name
    for suffix in (".tar.gz", ".tgz"):
        if name.endswith(suffix):
            name = name[: -len(suffix)]
            break
    else:
        name = Path(name).stem
    name = _SAFE.sub("-", name).lstrip(".-")
    return name or "student"


def _umask() -> int:
    mask = os.umask(0o022)
    os.umask(mask)
    return mask


def _epoch(run_dir: Path) -> int:
    """The run's creation time (from the model card), so the archive is reproducible."""
    try:
        created = json.loads((run_dir / CARD).read_text())["model"]["created_at"]
        return int(datetime.fromisoformat(created.replace("Z", "+00:00")).timestamp())
    except (OSError, ValueError, KeyError, TypeError, AttributeError):
        return 0


def _verified_members(run_dir: Path) -> dict[str, bytes]:
    """The releasable files of ``run_dir``, read once and checked against its manifest."""
    check = verify_manifest(run_dir)
    if not check.has_manifest or check.unreadable:
        raise RunFolderError(f"'{run_dir}': {check.describe()}, so its files cannot be "
                             "verified; refusing to package it.",
                             hint="Package the folder written by `medistill run`.")
    if MODEL_FILE not in check.recorded:
        raise RunFolderError(f"'{run_dir}': its manifest.json does not list {MODEL_FILE}; it "
                             "is not a finished run folder.")
    contents: dict[str, bytes] = {}
    for name in (MODEL_FILE, *RELEASABLE):
        if name not in check.recorded:
            continue
        path = run_dir / name
        if path.is_symlink() or not path.is_file():
            raise RunFolderError(f"'{run_dir}': {name} is a symbolic link or missing; "
                                 "refusing to package it.",
                                 hint="Package an untouched run folder.")
        data = path.read_bytes()
        if hashlib.sha256(data).hexdigest() != check.recorded[name]:
            raise ModelIntegrityError(
                f"'{run_dir}': {name} differs from the run's manifest.json; the run folder "
                "was modified after the run.",
                hint="Package an untouched run folder (or re-run the pipeline).")
        contents[name] = data
    return contents


def _write_tar(path: Path, folder: str, contents: dict[str, bytes], mtime: int, mode: int) -> None:
    """A gzipped tar with fixed names, order, owners, modes and times (reproducible)."""
    with path.open("wb") as raw, \
            gzip.GzipFile(filename="", fileobj=raw, mode="wb", mtime=mtime) as gz, \
            tarfile.open(fileobj=gz, mode="w", format=tarfile.PAX_FORMAT) as tar:
        for name in sorted(contents):
            info = tarfile.TarInfo(f"{folder}/{name}")
            info.size, info.mtime, info.mode = len(contents[name]), mtime, mode
            tar.addfile(info, io.BytesIO(contents[name]))


def package_run(run_dir: str | Path, out_tar_gz: str | Path) -> dict[str, Any]:
    """Write the deployable bundle of ``run_dir`` to ``out_tar_gz`` atomically.

    Returns ``{"out", "folder", "sha256" (of the archive), "members": {name: sha256}}``.
    Raises :class:`RunFolderError` if the folder, its manifest or its ``student.onnx`` is
    missing, a member differs from the manifest, or a member is a symbolic link.
    """
    run_dir, out = Path(run_dir), Path(out_tar_gz)
    if not run_dir.is_dir():
        raise RunFolderError(f"run folder '{run_dir}' does not exist.")
    if not (run_dir / MODEL_FILE).exists():
        raise RunFolderError(f"'{run_dir}' has no {MODEL_FILE}; it is not a finished run "
                             "folder.", hint="Package the folder written by `medistill run`.")
    if out.is_dir():
        raise RunFolderError(f"--out '{out}' is a folder; expected a .tar.gz file path.")
    contents = _verified_members(run_dir)
    if CARD not in contents:  # a run from before model cards: the model's own facts only
        card = load_model(run_dir / MODEL_FILE).card
        contents[CARD] = json.dumps(card, indent=2, sort_keys=True).encode()
    hashes = {name: hashlib.sha256(data).hexdigest() for name, data in contents.items()}
    manifest = json.dumps({"medistill_version": __version__, "model": MODEL_FILE,
                           "sha256": hashes}, indent=2, sort_keys=True).encode()
    contents[MANIFEST] = manifest
    contents[SUMS] = "".join(f"{hashes[n]}  {n}\n" for n in sorted(hashes)).encode()
    folder, mtime = bundle_name(out), _epoch(run_dir)
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = out.with_name(f".{out.name}.tmp-{uuid.uuid4().hex[:8]}")
    try:
        _write_tar(tmp, folder, contents, mtime, 0o666 & ~_umask())
        os.replace(tmp, out)
    finally:
        tmp.unlink(missing_ok=True)
    return {"out": str(out), "folder": folder, "sha256": file_sha256(out), "members": hashes}


__all__ = ["CARD", "MANIFEST", "RELEASABLE", "SUMS", "bundle_name", "package_run"]
