"""The run registry: one JSON line per finished run, beside the run folders.

``<parent of --out>/medistill-runs.jsonl`` records, for each run, when it ran, its run
folder, its (ε, δ) and a *keyed* fingerprint of its data source (HMAC-SHA256 with a secret
kept beside the registry in ``.medistill-runs.key``, mode 0600): runs on the same data can
be linked by whoever holds the key, and nobody learns anything about the data from the
registry alone. No raw value, file name of the data, count or statistic is written.

The registry is append-only (earlier lines are copied unchanged) and every update is
atomic (a new file renamed into place, under an exclusive lock). The report states how many
registered runs touched the same data and their summed ε and δ — basic composition, a
valid if loose upper bound on what all of those releases together reveal.
"""

from __future__ import annotations

import datetime as dt
import fcntl
import hashlib
import hmac
import json
import math
import os
import secrets
from contextlib import contextmanager
from collections.abc import Iterator
from pathlib import Path
from typing import Any

REGISTRY_NAME = "medistill-runs.jsonl"
KEY_NAME = ".medistill-runs.key"
COMPOSITION = ("basic composition: the sum of ε and of δ over every registered run on the "
               "same data, a valid upper bound on what those releases reveal together")


def registry_path(out_dir: str | Path) -> Path:
    """Where the registry of runs written to ``out_dir`` lives (its parent folder)."""
    return Path(out_dir).absolute().parent / REGISTRY_NAME


def _key(folder: Path) -> bytes:
    """The registry's secret key, created (mode 0600) on first use."""
    path = folder / KEY_NAME
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    except FileExistsError:
        return bytes.fromhex(path.read_text().strip())
    with os.fdopen(fd, "w") as handle:
        handle.write(secrets.token_hex(32))
    return bytes.fromhex(path.read_text().strip())


def _update_file(mac: hmac.HMAC, path: Path) -> None:
    with path.open("rb") as handle:
        for chunk in iter(lambda: handle.read(1 << 20), b""):
            mac.update(chunk)


def data_fingerprint(config: Any, key: bytes) -> str:
    """Keyed fingerprint of the run's data source (``config``: a PipelineConfig): its
    bytes for files and folders, its generating parameters for built-in data, its address
    for a database server."""
    data = config.data
    mac = hmac.new(key, digestmod=hashlib.sha256)
    mac.update(f"source={data.source}\0".encode())
    if data.source == "builtin":
        mac.update(json.dumps({**data.builtin.model_dump(mode="json"), "seed": config.seed},
                              sort_keys=True).encode())
        return "hmac-sha256:" + mac.hexdigest()
    location = data.path
    if data.source == "omop":
        # A database file or folder by its contents; a server (postgresql://…) or a named
        # test CDM by its identity: the same database touches the same patients.
        location = data.omop.database
        if "://" in location or not Path(location).exists():
            mac.update(location.encode())
            return "hmac-sha256:" + mac.hexdigest()
    root = Path(location)
    files = sorted(p for p in root.rglob("*") if p.is_file()) if root.is_dir() else [root]
    for path in files:
        mac.update(path.relative_to(root).as_posix().encode() + b"\0" if root.is_dir()
                   else b"\0")
        _update_file(mac, path)
    return "hmac-sha256:" + mac.hexdigest()


@contextmanager
def _locked(path: Path) -> Iterator[None]:
    with open(path.with_name(path.name + ".lock"), "a") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(lock, fcntl.LOCK_UN)


def _entries(path: Path) -> tuple[bytes, list[dict], int]:
    """The registry's bytes, its readable entries, and how many lines were unreadable
    (kept as they are: the registry is never rewritten, only appended to)."""
    if not path.exists():
        return b"", [], 0
    raw = path.read_bytes()
    entries, bad = [], 0
    for line in raw.splitlines():
        try:
            entry = json.loads(line)
        except ValueError:
            entry = None
        if isinstance(entry, dict):
            entries.append(entry)
        elif line.strip():
            bad += 1
    return raw, entries, bad


def _summary(path: Path, same: list[dict], bad: int) -> dict[str, Any]:
    epsilons = [e.get("epsilon") for e in same]
    finite = all(isinstance(x, int | float) and math.isfinite(x) for x in epsilons)
    notes = [] if finite else ["a run without a formal guarantee touched this data: the "
                               "summed ε is infinite"]
    if bad:
        notes.append(f"{bad} line(s) of the registry are not readable (edited by hand?) and "
                     "were not counted")
    return {"registry": str(path), "n_runs": len(same),
            "summed_epsilon": float(sum(epsilons)) if finite else None,
            "summed_delta": float(sum(e.get("delta") or 0.0 for e in same)),
            "composition": COMPOSITION, "note": "; ".join(notes) or None}


def record_run(out_dir: str | Path, config: Any, report: dict) -> dict[str, Any]:
    """Append this run to the registry beside ``out_dir`` and return, for the report, how
    many registered runs (this one included) touched the same data and their summed ε."""
    path = registry_path(out_dir)
    path.parent.mkdir(parents=True, exist_ok=True)
    privacy = report.get("privacy") or {}
    with _locked(path):
        fingerprint = data_fingerprint(config, _key(path.parent))
        raw, entries, bad = _entries(path)
        entry = {"time": dt.datetime.now(dt.UTC).strftime("%Y-%m-%dT%H:%M:%SZ"),
                 "run_folder": str(Path(out_dir).absolute()),
                 "data_fingerprint": fingerprint,
                 "epsilon": privacy.get("epsilon"), "delta": privacy.get("delta"),
                 "formal_guarantee": privacy.get("formal_guarantee")}
        line = json.dumps(entry, allow_nan=False).encode() + b"\n"
        if raw and not raw.endswith(b"\n"):
            raw += b"\n"
        tmp = path.with_name(f".{path.name}.tmp-{os.getpid()}")
        with open(tmp, "wb") as handle:
            handle.write(raw + line)
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(tmp, path)
    same = [e for e in entries if e.get("data_fingerprint") == fingerprint] + [entry]
    return _summary(path, same, bad)


def register_into(folder: str | Path, out_dir: str | Path, config: Any, report: dict) -> dict:
    """Register the run about to appear at ``out_dir`` and restate the report files already
    written in its temporary ``folder`` with ``privacy.runs_on_same_data``."""
    from medistill.audit.report import render_html, render_markdown

    folder = Path(folder)
    report.setdefault("privacy", {})["runs_on_same_data"] = record_run(out_dir, config, report)
    (folder / "report.json").write_text(json.dumps(report, indent=2, allow_nan=False))
    (folder / "report.html").write_text(render_html(report), encoding="utf-8")
    (folder / "report.md").write_text(render_markdown(report), encoding="utf-8")
    return report


__all__ = ["COMPOSITION", "KEY_NAME", "REGISTRY_NAME", "data_fingerprint", "record_run",
           "register_into", "registry_path"]
