"""Process one chunk of an export (a byte range of an NDJSON file, or one Bundle file).

A chunk is handled the same way in the calling process (``n_jobs=1``) or in a worker
process: parse each line, check the resource type, validate (fully with ``fhir.resources``,
or only the fields the mapping reads), extract events, and return compact arrays. A Bundle
found on a line or in an entry is read entry by entry. Each resource read is logged with its
id and content hashes and its contributions, so the merger can take duplicates back out.
Line numbers of NDJSON chunks are relative to the chunk; the caller makes them absolute.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass, field
from typing import Any, Literal

import numpy as np

from medistill.data.fhir.aggregate import Events
from medistill.data.fhir.dedup import resource_hashes
from medistill.data.fhir.extract import (
    BadResource,
    Event,
    Extractor,
    PatientRecord,
    not_happened,
    subject_key,
)
from medistill.data.fhir.plan import Plan
from medistill.data.fhir.reader import BundleSyntaxError, ExportFile, iter_bundle, iter_ndjson
from medistill.data.fhir.version import (
    ResourceValidator,
    VersionOption,
    detect_version,
    is_resource_type,
)

MAX_BUNDLE_DEPTH = 8
_TYPE_NAME = re.compile(r"^[A-Z][A-Za-z]{0,39}$")
OnError = Literal["stop", "skip"]
Validate = Literal["full", "mapped"]


@dataclass(frozen=True)
class Task:
    """A chunk: ``part`` numbers the chunks of one file in order."""

    file_index: int
    file: ExportFile
    part: int
    start: int = 0
    end: int | None = None


@dataclass(frozen=True)
class Options:
    on_error: OnError = "stop"
    fhir_version: VersionOption = "auto"
    validate: Validate = "full"


NO_PATIENT = -1   # ResourceLog.ref of a resource whose subject is not a Patient
IS_PATIENT = -2   # ResourceLog.ref of a Patient
IS_MEDICATION = -3  # ResourceLog.ref of a Medication


@dataclass
class ResourceLog:
    """Each resource a chunk read for the mapping, in reading order, with what it
    contributed, so that the merger can take a duplicate back out."""

    key: list[int] = field(default_factory=list)       # hash of type/id; 0: no id
    content: list[int] = field(default_factory=list)   # hash of the content without meta
    line: list[int] = field(default_factory=list)
    rtype: list[str] = field(default_factory=list)
    version: list[str] = field(default_factory=list)
    ref: list[int] = field(default_factory=list)       # index in refs, or NO_PATIENT, IS_…
    dropped: dict[int, list[str]] = field(default_factory=dict)  # resource -> dropped keys

    def __len__(self) -> int:
        return len(self.key)


@dataclass
class ChunkResult:
    """What one chunk contributes; ``events.owner`` indexes ``refs``, ``event_resource``
    indexes ``resources`` and ``patient_resource`` maps ``patients`` to it."""

    task: Task
    n_lines: int = 0
    refs: list[str] = field(default_factory=list)
    ref_first_line: list[int] = field(default_factory=list)
    ref_count: list[int] = field(default_factory=list)
    events: Events = field(default_factory=Events.empty)
    event_resource: np.ndarray = field(default_factory=lambda: np.empty(0, np.int64))
    patients: list[PatientRecord] = field(default_factory=list)
    patient_resource: list[int] = field(default_factory=list)
    resources: ResourceLog = field(default_factory=ResourceLog)
    medications: list[tuple[str, str, tuple[int, ...]]] = field(default_factory=list)
    """Medication resources read: (referring type, key, coded slots of that type)."""
    pending: list[tuple[int, int, str, str, int, float]] = field(default_factory=list)
    """Medication references to resolve: (ref, resource number, referring type, Medication
    key, day, ts)."""
    matched: set[int] = field(default_factory=set)  # slots that matched some resource
    patients_rejected: int = 0   # Patient resources that were bad input
    first_patient_rejection: tuple[int, str] | None = None  # (line, reason)
    counts: dict[str, int] = field(default_factory=dict)
    versions: dict[str, int] = field(default_factory=dict)
    skipped: list[tuple[int, str]] = field(default_factory=list)
    dropped: dict[str, int] = field(default_factory=dict)
    units: dict[int, set[str]] = field(default_factory=dict)  # unitless slot -> units seen
    n_without_patient: int = 0
    max_day: int = -1
    stopped: bool = False


class _Collector:
    def __init__(self, task: Task, plan: Plan, options: Options) -> None:
        self.plan = plan
        self.options = options
        self.types = plan.resource_types
        self.extractor = Extractor(plan)
        self.validator = ResourceValidator(options.fhir_version)
        self.result = ChunkResult(task)
        self._ref_index: dict[str, int] = {}
        self._events: list[tuple[int, int, int, float, float]] = []
        self._event_resource: list[int] = []

    def bad(self, line: int, reason: str, rtype: str | None = None) -> None:
        self.result.skipped.append((line, reason))
        if rtype == "Patient":
            self.result.patients_rejected += 1
            if self.result.first_patient_rejection is None:
                self.result.first_patient_rejection = (line, reason)
        if self.options.on_error == "stop":
            self.result.stopped = True

    def _count(self, table: dict[str, int], key: str) -> None:
        table[key] = table.get(key, 0) + 1

    def bundle(self, bundle: dict[str, Any], line: int, depth: int) -> None:
        """Read the entries of a Bundle held in a file line or in another Bundle's entry."""
        if depth > MAX_BUNDLE_DEPTH:
            self.bad(line, f"Bundles nested more than {MAX_BUNDLE_DEPTH} deep")
            return
        entries = bundle.get("entry") or []
        if not isinstance(entries, list):
            self.bad(line, "Bundle.entry: expected a list")
            return
        for entry in entries:
            if not isinstance(entry, dict):
                self.bad(line, "Bundle entry: expected a JSON object")
            elif entry.get("resource") is not None:
                self.item(entry["resource"], line, entry.get("fullUrl"), depth + 1)
            if self.result.stopped:
                return

    def item(self, obj: Any, line: int, full_url: Any = None, depth: int = 0) -> None:
        if not isinstance(obj, dict):
            kind = {list: "a list", str: "a string"}.get(type(obj), type(obj).__name__)
            self.bad(line, f"expected a JSON object (a FHIR resource), got {kind}")
            return
        rtype = obj.get("resourceType")
        if not isinstance(rtype, str) or not rtype:
            self.bad(line, "has no resourceType; expected a FHIR resource")
            return
        if rtype == "Bundle":
            self.bundle(obj, line, depth)
            return
        if rtype not in self.types:
            if is_resource_type(rtype):
                self._count(self.result.counts, rtype)  # a resource the mapping does not read
            else:
                shown = repr(rtype) if _TYPE_NAME.match(rtype) else "(not a type name)"
                self.bad(line, f"unknown resource type {shown}; expected a FHIR R4, R4B or R5 "
                               f"resource type")
            return
        if self.options.validate == "full":
            version, reason = self.validator.validate(obj)
            if reason is not None:
                self.bad(line, reason, rtype)
                return
        elif self.options.fhir_version != "auto":
            version = self.options.fhir_version
        else:
            version = detect_version(obj) or "unknown"
        self.extractor.recent.clear()
        self.extractor.pending.clear()
        try:
            ref = self._extract(obj, rtype, line, full_url)
        except BadResource as exc:
            self.bad(line, exc.reason, rtype)
            return
        self._count(self.result.counts, rtype)
        self._count(self.result.versions, str(version))
        self._log(obj, rtype, str(version), line, ref)

    def _log(self, obj: dict[str, Any], rtype: str, version: str, line: int, ref: int) -> None:
        log = self.result.resources
        if self.extractor.recent:
            log.dropped[len(log)] = list(self.extractor.recent)
        key, content = resource_hashes(obj)
        log.key.append(key)
        log.content.append(content)
        log.line.append(line)
        log.rtype.append(rtype)
        log.version.append(version)
        log.ref.append(ref)

    def _extract(self, obj: dict[str, Any], rtype: str, line: int, full_url: Any) -> int:
        """Extract one resource; return its ``ResourceLog.ref``."""
        if rtype == "Patient":
            self.result.patients.append(self.extractor.patient(obj, full_url, line))
            self.result.patient_resource.append(len(self.result.resources))
            return IS_PATIENT
        if rtype == "Medication":
            keys, per_type = self.extractor.medication(obj, full_url)
            self.result.medications += [(t, k, tuple(sorted(slots)))
                                        for t, slots in per_type.items() for k in keys]
            return IS_MEDICATION
        key = subject_key(obj, rtype)
        if key is None:
            self.result.n_without_patient += 1
            return NO_PATIENT
        events: list[Event] = self.extractor.events(obj, rtype)
        ref = self._ref_index.get(key)
        if ref is None:
            ref = self._ref_index[key] = len(self.result.refs)
            self.result.refs.append(key)
            self.result.ref_first_line.append(line)
            self.result.ref_count.append(0)
        self.result.ref_count[ref] += 1
        number = len(self.result.resources)
        dates_export = not not_happened(obj, rtype)
        for e in events:
            self._events.append((ref, e.slot, e.day, e.ts, e.value))
            self._event_resource.append(number)
            if dates_export and e.day > self.result.max_day:
                self.result.max_day = e.day
        for referrer, medication, day, ts in self.extractor.pending:
            self.result.pending.append((ref, number, referrer, medication, day, ts))
            if dates_export and day > self.result.max_day:
                self.result.max_day = day
        return ref

    def finish(self) -> ChunkResult:
        rows = self._events
        if rows:
            cols = list(zip(*rows, strict=True))
            self.result.events = Events(
                np.asarray(cols[0], np.int64), np.asarray(cols[1], np.int16),
                np.asarray(cols[2], np.int32), np.asarray(cols[3], np.float64),
                np.asarray(cols[4], np.float64), np.ones(len(rows)))
            self.result.event_resource = np.asarray(self._event_resource, np.int64)
        self.result.dropped = dict(self.extractor.dropped)
        self.result.units = self.extractor.units
        self.result.matched = self.extractor.matched
        return self.result


def json_error(exc: json.JSONDecodeError) -> str:
    """``exc``'s message and column, without the value it quotes (Python's messages hold
    none) and without a doubled "at" ("Unterminated string starting at column 12")."""
    return f"{exc.msg.removesuffix(' at')} at column {exc.colno}"


def run_task(task: Task, plan: Plan, options: Options) -> ChunkResult:
    """Read one chunk; with ``on_error="stop"`` stop at its first bad line."""
    c = _Collector(task, plan, options)
    path = task.file.path
    if task.file.kind == "ndjson":
        try:
            for number, raw in iter_ndjson(path, task.start, task.end):
                c.result.n_lines = number
                if not raw.strip():
                    continue
                try:
                    obj = json.loads(raw.rstrip(b"\r\n"))
                except json.JSONDecodeError as exc:
                    c.bad(number, f"not valid JSON ({json_error(exc)})")
                except UnicodeDecodeError:
                    c.bad(number, "not valid UTF-8 text")
                else:
                    c.item(obj, number)
                if c.result.stopped:
                    break
        except (OSError, EOFError) as exc:  # e.g. a truncated .gz file
            c.bad(c.result.n_lines + 1, "the file cannot be read from this line on "
                                        f"({type(exc).__name__}: damaged or cut short)")
    else:
        try:
            for line, entry in iter_bundle(path):
                if not isinstance(entry, dict):
                    c.bad(line, "Bundle entry: expected a JSON object")
                elif entry.get("resource") is not None:
                    c.item(entry["resource"], line, entry.get("fullUrl"))
                if c.result.stopped:
                    break
        except BundleSyntaxError as exc:
            c.bad(exc.line, f"{exc.reason}; the rest of this file cannot be read")
    return c.finish()


__all__ = ["IS_MEDICATION", "IS_PATIENT", "NO_PATIENT", "ChunkResult", "OnError", "Options",
           "ResourceLog", "Task", "Validate", "run_task"]
