"""The layout of a Bulk Data export folder, as servers and bulk clients write it.

With an export manifest (the JSON of a completed ``$export`` with ``output`` and ``error``
lists), the files it lists are read: each ``output`` entry by the last segment of its
``url`` or, when the client renamed the downloads, by the files named after its ``type``;
the ``error`` entries are OperationOutcome NDJSON, reported and never ingested. Without a
manifest, NDJSON files named after a resource type are read (``Patient.ndjson``,
``Patient.000.ndjson``, ``Patient-2.ndjson``, ``1.Patient.ndjson``, optionally ``.gz``); an
``OperationOutcome`` file is an error file. Anything else (``log.ndjson``, notes) is skipped
and listed, with a reason, in the ingestion summary.
"""

from __future__ import annotations

import json
import re
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import urlparse

from medistill.errors import DataError

_TYPE_FILE = re.compile(r"^(?:\d+[._-])?(?P<type>[A-Z][A-Za-z]+)(?:[._-]\d+)*"
                        r"\.(?:ndjson|jsonl)(?:\.gz)?$")
ERROR_TYPE = "OperationOutcome"
MAX_ERROR_LINES = 100_000
MANIFEST_MAX_BYTES = 64 << 20
"""The largest export manifest read (an export of 100,000 files has a manifest of ~15 MiB)."""
SMALL_JSON_BYTES = 1 << 20
SNIFF_BYTES = 1 << 16


def resource_type_of(name: str) -> str | None:
    """The resource type a Bulk Data file is named after (``Patient.000.ndjson.gz`` →
    ``Patient``), or None for any other name (``log.ndjson``)."""
    match = _TYPE_FILE.match(name)
    return match.group("type") if match else None


@dataclass(frozen=True)
class Manifest:
    """The parts of a Bulk Data manifest this reader uses."""

    name: str
    outputs: tuple[tuple[str, str], ...]   # (type, url)
    errors: tuple[tuple[str, str], ...]    # (type, url)
    transaction_time: str | None


@dataclass(frozen=True)
class Layout:
    """Which NDJSON files to read, which hold export errors, which were skipped and why."""

    read: tuple[Path, ...]
    errors: tuple[Path, ...]
    skipped: tuple[tuple[str, str], ...]   # (file name, reason)


@dataclass(frozen=True)
class ExportErrors:
    """What the export's error files say, in counts only: OperationOutcome ``diagnostics``
    text may quote record values, so it is never read out."""

    files: tuple[str, ...] = ()
    n_outcomes: int = 0
    issues: dict[str, int] = field(default_factory=dict)   # "severity/code" -> count
    n_unreadable_lines: int = 0

    def to_dict(self) -> dict[str, Any]:
        return {"files": list(self.files), "n_outcomes": self.n_outcomes,
                "issues": dict(self.issues), "n_unreadable_lines": self.n_unreadable_lines}


def _entries(data: dict[str, Any], key: str, name: str) -> tuple[tuple[str, str], ...]:
    items = data.get(key) or []
    if not isinstance(items, list):
        raise DataError(f"{name}: the Bulk Data manifest's '{key}' is not a list.")
    out = []
    for i, item in enumerate(items):
        if not isinstance(item, dict) or not isinstance(item.get("url"), str):
            raise DataError(f"{name}: entry {i + 1} of the manifest's '{key}' list has no "
                            "'url'. Expected {\"type\": \"Patient\", \"url\": \"...\"}.")
        out.append((str(item.get("type") or ""), item["url"]))
    return tuple(out)


def _head(path: Path, n: int = SNIFF_BYTES) -> bytes:
    with open(path, "rb") as f:
        return f.read(n)


def read_manifest(path: Path, max_bytes: int = MANIFEST_MAX_BYTES) -> Manifest | None:
    """The manifest in ``path``, or None when the file is not a Bulk Data manifest.

    Files over 1 MiB whose start names a ``resourceType`` (Bundles) are not parsed; a
    manifest over ``max_bytes`` is an error rather than silently not a manifest.
    """
    size = path.stat().st_size
    if size > SMALL_JSON_BYTES:
        head = _head(path)
        if b'"resourceType"' in head:
            return None
        if size > max_bytes:
            if b'"output"' in head or b'"transactionTime"' in head:
                raise DataError(
                    f"{path.name}: this Bulk Data manifest is {size / (1 << 20):.0f} MiB, over "
                    f"the {max_bytes >> 20} MiB medistill reads.",
                    hint="Check that the file is an export manifest; to read the export "
                         "without it, move it out of the folder (the files named after "
                         "resource types are then read, and the index date must be given).")
            return None
    try:
        data = json.loads(path.read_text(encoding="utf-8-sig"))
    except (ValueError, OSError):
        return None
    if not isinstance(data, dict) or "resourceType" in data or "output" not in data:
        return None
    stamp = data.get("transactionTime")
    return Manifest(path.name, _entries(data, "output", path.name),
                    _entries(data, "error", path.name), str(stamp) if stamp else None)


def _basename(url: str) -> str:
    return Path(urlparse(url).path).name


def _resolve(entries: tuple[tuple[str, str], ...], candidates: dict[str, Path],
             manifest: str, what: str) -> list[Path]:
    """Local files of manifest entries: by URL file name, else by resource type."""
    by_name = [candidates.get(_basename(url)) for _, url in entries]
    if all(p is not None for p in by_name):
        return [p for p in by_name if p is not None]
    wanted = Counter(t for t, _ in entries)
    by_type: dict[str, list[Path]] = {}
    for name, path in candidates.items():
        rtype = resource_type_of(name)
        if rtype is not None:
            by_type.setdefault(rtype, []).append(path)
    found: list[Path] = []
    for rtype, n in sorted(wanted.items()):
        local = sorted(by_type.get(rtype, []))
        if len(local) != n:
            raise DataError(
                f"{manifest}: the manifest lists {n} {what} file(s) of type {rtype or '?'}, "
                f"but the folder holds {len(local)} such file(s) (neither the URL file names "
                "nor files named after the type match).",
                hint="Download every file the manifest lists (an incomplete download would "
                     "silently lose patients), or remove the manifest to read the files "
                     "named after resource types.")
        found.extend(local)
    return found


def plan_layout(ndjson: list[Path], manifest: Manifest | None) -> Layout:
    """Decide which of a folder's NDJSON files (sorted by name) are read, errors, skipped."""
    candidates = {p.name: p for p in ndjson}
    if manifest is not None:
        read = _resolve(manifest.outputs, candidates, manifest.name, "output")
        errors = _resolve(manifest.errors, candidates, manifest.name, "error")
        listed = set(read) | set(errors)
        skipped = [(p.name, f"not listed in the export manifest {manifest.name}")
                   for p in ndjson if p not in listed]
        return Layout(tuple(sorted(read)), tuple(sorted(errors)), tuple(skipped))
    read, errors, skipped = [], [], []
    for path in ndjson:
        rtype = resource_type_of(path.name)
        if rtype is None:
            skipped.append((path.name, "not named after a FHIR resource type (e.g. "
                                       "Patient.000.ndjson), so not part of the export"))
        elif rtype == ERROR_TYPE:
            errors.append(path)
        else:
            read.append(path)
    return Layout(tuple(read), tuple(errors), tuple(skipped))


def summarize_errors(paths: tuple[Path, ...], open_binary: Any) -> ExportErrors:
    """Count the OperationOutcome issues of the export's error files by severity and code."""
    issues: Counter[str] = Counter()
    outcomes = unreadable = 0
    for path in paths:
        with open_binary(path) as f:
            for number, raw in enumerate(f, 1):
                if number > MAX_ERROR_LINES:
                    break
                if not raw.strip():
                    continue
                try:
                    res = json.loads(raw)
                except ValueError:
                    unreadable += 1
                    continue
                if not isinstance(res, dict) or res.get("resourceType") != ERROR_TYPE:
                    unreadable += 1
                    continue
                outcomes += 1
                for issue in res.get("issue") or []:
                    if isinstance(issue, dict):
                        severity = _token(issue.get("severity"))
                        code = _token(issue.get("code"))
                        issues[f"{severity}/{code}"] += 1
    return ExportErrors(tuple(p.name for p in paths), outcomes, dict(sorted(issues.items())),
                        unreadable)


def _token(value: Any) -> str:
    """A FHIR code (severity, IssueType) or '?': never free text."""
    if isinstance(value, str) and re.fullmatch(r"[a-z][a-z-]{0,39}", value):
        return value
    return "?"


__all__ = ["MANIFEST_MAX_BYTES", "ExportErrors", "Layout", "Manifest", "plan_layout",
           "read_manifest", "resource_type_of", "summarize_errors"]
