"""``ingest_fhir``: a FHIR export in, one row per patient out.

Files are split into chunks that are read in the calling process (``n_jobs=1``), in
worker processes (joblib), or as tasks on the run's Dask cluster (:mod:`medistill.compute`;
its workers must see the export's path); results are merged in file order, so errors, line
numbers and the table do not depend on ``n_jobs``. The merger also reads each resource once
(:mod:`medistill.data.fhir.dedup`) and resolves medication references. The table holds a
salted key per patient (HMAC-SHA-256 of the FHIR id with ``salt``) and the mapping's
columns, nothing else.
"""

from __future__ import annotations

import hashlib
import hmac
import time
import warnings
from collections.abc import Iterator
from dataclasses import asdict, dataclass, field
from datetime import date
from functools import partial
from pathlib import Path
from typing import Any, NamedTuple

import numpy as np
import pandas as pd

from medistill.compute import current_backend
from medistill.data.fhir.aggregate import (
    EventBuffer,
    Events,
    final_values,
    in_window,
    reduce_events,
)
from medistill.data.fhir.bulk import ExportErrors, summarize_errors
from medistill.data.fhir.dedup import DIFFERENT, NEW, SAME, SeenResources, unpack_where
from medistill.data.fhir.extract import PatientRecord
from medistill.data.fhir.labels import deceased_label
from medistill.data.fhir.mapping import FhirMapping, default_mapping
from medistill.data.fhir.medications import MedicationReferences, unresolved_medication
from medistill.data.fhir.plan import MEDICATION_TYPES, Plan, compile_mapping
from medistill.data.fhir.reader import Export, discover, ndjson_ranges, open_binary
from medistill.data.fhir.version import VERSION_OPTIONS, VersionOption
from medistill.data.fhir.worker import (
    NO_PATIENT,
    ChunkResult,
    OnError,
    Options,
    Task,
    Validate,
    run_task,
)
from medistill.errors import ConfigError, DataError

MAX_SKIPPED_LISTED = 1000
COMPACT_EVENTS = 1_000_000
"""Buffered events (about 40 bytes each) beyond which they are reduced while reading."""
MAX_AGE_YEARS = 120
IMPOSSIBLE_AGE = (f"age: birthDate after the index date or more than {MAX_AGE_YEARS} years "
                  "before it")
LATE_EXPORT_DATE_DAYS = 365
"""An inferred export date more days than this after 99 % of the events gets a note."""
_SKIP_HINT = "Fix the line, or skip bad lines with --on-error skip (on_error='skip')."
MAX_NAMES_IN_NOTE = 20
_JOBLIB_EARLY_EXIT = r".*(executed\s+but not used|have been cancelled)"
"""joblib's warning when its generator is closed early, as after the first bad line."""


class SkippedLine(NamedTuple):
    """A line left out with ``on_error="skip"``; ``reason`` never holds values or ids."""

    file: str
    line: int
    reason: str


@dataclass(frozen=True)
class IngestSummary:
    """What was read, skipped and left out. Holds no identifier and no record value."""

    source: str
    files: tuple[str, ...]
    n_patients: int
    resource_counts: dict[str, int]
    fhir_versions: dict[str, int]
    n_skipped: int
    skipped: tuple[SkippedLine, ...]
    excluded_patients: dict[str, int]
    dropped_values: dict[str, int]
    n_without_patient: int
    index_date: date | None
    validate: str
    seconds: float
    skipped_files: tuple[tuple[str, str], ...] = ()   # (file name, why it was not read)
    export_errors: ExportErrors = field(default_factory=ExportErrors)
    unresolved_references: dict[str, int] = field(default_factory=dict)  # field -> count
    notes: tuple[str, ...] = ()   # warnings about the result; never hold record values

    @property
    def n_resources(self) -> int:
        return sum(self.resource_counts.values())

    def to_dict(self) -> dict[str, Any]:
        """A JSON-ready dict."""
        out = asdict(self)
        out["skipped"] = [list(s) for s in self.skipped]
        out["index_date"] = self.index_date.isoformat() if self.index_date else None
        out["skipped_files"] = [list(s) for s in self.skipped_files]
        out["export_errors"] = self.export_errors.to_dict()
        out["n_resources"] = self.n_resources
        return out


@dataclass(frozen=True)
class IngestResult:
    """``table``: one row per patient (``patient_key``, features, label); ``label``: the
    label column or None. ``patient_ids`` (FHIR ids aligned with the rows) is filled only
    when asked for with ``keep_patient_ids=True``, e.g. to write RiskAssessments back."""

    table: pd.DataFrame
    summary: IngestSummary
    label: str | None
    patient_ids: tuple[str, ...] | None = field(default=None, repr=False)


def patient_key(patient_id: str, salt: str) -> str:
    """The salted key of a FHIR Patient id: HMAC-SHA-256 hex digest keyed with ``salt``."""
    return hmac.new(salt.encode(), patient_id.encode(), hashlib.sha256).hexdigest()


def _check_options(on_error: str, fhir_version: str, validate: str, salt: str,
                   n_jobs: int) -> None:
    if on_error not in ("stop", "skip"):
        raise ConfigError(f"on_error must be 'stop' or 'skip'. Got {on_error!r}.")
    if fhir_version not in VERSION_OPTIONS:
        raise ConfigError(f"fhir_version must be one of {', '.join(VERSION_OPTIONS)}. "
                          f"Got {fhir_version!r}.")
    if validate not in ("full", "mapped"):
        raise ConfigError(f"validate must be 'full' or 'mapped'. Got {validate!r}.")
    if not isinstance(salt, str) or not salt:
        raise ConfigError("salt must be a non-empty secret string: the patient key is a "
                          "salted hash of the FHIR id, and an empty salt makes it reversible "
                          "by hashing candidate ids.")
    if not isinstance(n_jobs, int) or n_jobs == 0:
        raise ConfigError(f"n_jobs must be a positive integer or -1 (all cores). Got {n_jobs!r}.")


def _tasks(export: Export, chunk_bytes: int) -> Iterator[Task]:
    for i, f in enumerate(export.files):
        if f.kind == "json":
            yield Task(i, f, 0)
            continue
        for part, (start, end) in enumerate(ndjson_ranges(f.path, chunk_bytes)):
            yield Task(i, f, part, start, end)


def _run(tasks: list[Task], plan: Plan, options: Options, n_jobs: int
         ) -> Iterator[ChunkResult]:
    backend = current_backend()
    if backend.distributed and len(tasks) > 1:
        # Each chunk is a medistill-fhir-chunk-<i> task; workers read the files themselves.
        yield from backend.map(partial(_run_chunk, plan, options), tasks, label="fhir-chunk")
        return
    if n_jobs == 1 or len(tasks) == 1:
        for task in tasks:
            yield run_task(task, plan, options)
        return
    from joblib import Parallel, delayed

    parallel = Parallel(n_jobs=n_jobs, return_as="generator", pre_dispatch="2*n_jobs",
                        batch_size=1)
    yield from parallel(delayed(run_task)(t, plan, options) for t in tasks)


def _run_chunk(plan: Plan, options: Options, task: Task) -> ChunkResult:
    return run_task(task, plan, options)


class _Merger:
    """Merges chunk results in file order and builds the table."""

    def __init__(self, plan: Plan, export: Export, options: Options, index_day: int | None
                 ) -> None:
        self.plan = plan
        self.export = export
        self.options = options
        self.source = export.root.name if len(export.files) > 1 else export.files[0].name
        self.agg = np.array([s.agg_code for s in plan.slots], np.int64)
        self.lo = np.array([s.lo for s in plan.slots], np.float64)
        self.hi = np.array([s.hi for s in plan.slots], np.float64)
        self.index_day = index_day
        self.buffer = EventBuffer(self.agg, self.lo, self.hi, index_day, COMPACT_EVENTS)
        self.ref_ids: dict[str, int] = {}
        self.ref_where: list[tuple[int, int]] = []
        self.ref_count: list[int] = []
        self.patients: dict[int, PatientRecord] = {}  # reference number -> record
        self.seen = SeenResources()
        self.medications = {t: MedicationReferences() for t in MEDICATION_TYPES}
        self.matched: set[int] = set()   # slots that matched at least one resource
        self.patients_rejected = 0
        self.first_patient_rejection: tuple[int, int, str] | None = None  # file, line, reason
        self.unresolved: dict[str, int] = {}
        self.notes: list[str] = []
        self.aliases: list[tuple[str, str]] = []  # (fullUrl key, id) of merged Patient copies
        self.line_offset: dict[int, int] = {}
        self.counts: dict[str, int] = {}
        self.versions: dict[str, int] = {}
        self.dropped: dict[str, int] = {}
        self.units: dict[int, set[str]] = {}
        self.skipped: list[SkippedLine] = []
        self.n_skipped = 0
        self.n_without_patient = 0
        self.max_day = -1

    def _skip(self, file_index: int, line: int, reason: str, count: int = 1) -> None:
        name = self.export.files[file_index].name
        if self.options.on_error == "stop":
            raise DataError(f"{name} line {line}: {reason}.", hint=_SKIP_HINT)
        self.n_skipped += count
        if len(self.skipped) < MAX_SKIPPED_LISTED:
            self.skipped.append(SkippedLine(name, line, reason))

    def _ref(self, key: str, file_index: int, line: int) -> int:
        gid = self.ref_ids.get(key)
        if gid is None:
            gid = self.ref_ids[key] = len(self.ref_where)
            self.ref_where.append((file_index, line))
            self.ref_count.append(0)
        return gid

    def add(self, r: ChunkResult) -> None:
        fi = r.task.file_index
        offset = self.line_offset.get(fi, 0)
        self.line_offset[fi] = offset + r.n_lines
        self._note_patient_rejections(r, fi, offset)
        for line, reason in r.skipped:
            self._skip(fi, offset + line, reason)
        self._take_out_duplicates(r, fi, offset)
        gids = np.array([self._ref(k, fi, offset + line)
                         for k, line in zip(r.refs, r.ref_first_line, strict=True)], np.int64)
        for gid, n in zip(gids.tolist(), r.ref_count, strict=True):
            self.ref_count[gid] += n
        if len(r.events):
            r.events.owner = gids[r.events.owner]
            self.buffer.add(r.events)
        self._add_medications(r, gids)
        for rec in r.patients:
            line = offset + rec.line
            gid = self._ref(rec.fhir_id, fi, line)
            if gid in self.patients:
                self._skip(fi, line, "a second Patient with the same id; each Patient must "
                                     "appear once")
                continue
            self.patients[gid] = rec
        for table, more in ((self.counts, r.counts), (self.versions, r.versions),
                            (self.dropped, r.dropped)):
            for k, v in more.items():
                table[k] = table.get(k, 0) + v
        self.n_without_patient += r.n_without_patient
        for slot, units in r.units.items():
            self.units.setdefault(slot, set()).update(units)
            if len(self.units[slot]) > 1:
                self._mixed_units(slot)
        self.max_day = max(self.max_day, r.max_day)
        self.matched |= r.matched

    def _note_patient_rejections(self, r: ChunkResult, fi: int, offset: int) -> None:
        """Count the Patients that were bad input and keep the first one's reason, to explain
        an export whose every Patient was rejected."""
        self.patients_rejected += r.patients_rejected
        if self.first_patient_rejection is None and r.first_patient_rejection is not None:
            line, reason = r.first_patient_rejection
            self.first_patient_rejection = (fi, offset + line, reason)

    def _add_medications(self, r: ChunkResult, gids: np.ndarray) -> None:
        for rtype, key, slots in r.medications:
            self.medications[rtype].add_medications([(key, slots)])
        for rtype, table in self.medications.items():
            mine = [p for p in r.pending if p[2] == rtype]
            if mine:
                ref, _, _, keys, day, ts = zip(*mine, strict=True)
                table.add_references(gids[np.asarray(ref, np.int64)], list(keys),
                                     np.asarray(day), np.asarray(ts))

    def _resolve_medications(self) -> None:
        """Events of the medication references, through the Medication resources read."""
        for rtype, table in self.medications.items():
            events, unresolved = table.resolve()
            self.buffer.add(events)
            self.matched.update(np.unique(events.slot).tolist())
            if unresolved:
                self.unresolved[unresolved_medication(rtype)] = unresolved

    def _note_unmatched(self) -> None:
        """A note naming the features (and label) that matched no resource of the export:
        a code list in another spelling than the export's would otherwise go unnoticed."""
        names = [s.name for i, s in enumerate(self.plan.slots)
                 if s.role != "index" and i not in self.matched]
        if not names:
            return
        shown = ", ".join(names[:MAX_NAMES_IN_NOTE])
        more = f" and {len(names) - MAX_NAMES_IN_NOTE} more" if len(names) > MAX_NAMES_IN_NOTE \
            else ""
        self.notes.append(
            f"{len(names)} feature(s) of the mapping matched no resource of the export: "
            f"{shown}{more}. Their columns are 0 or missing for every patient; check their "
            "codes and code systems against the export (see docs/fhir.md, Codes).")

    def _no_patient(self) -> DataError:
        """The error of an export without a valid Patient, with the first rejection's
        reason when Patients were there but every one was bad input."""
        if self.first_patient_rejection is None:
            return DataError(f"{self.source}: no valid Patient resource was found, so there "
                             "is no patient to make a row for.",
                             hint="A Bulk Data export needs its Patient file(s).")
        fi, line, reason = self.first_patient_rejection
        return DataError(
            f"{self.source}: no valid Patient resource was found: all "
            f"{self.patients_rejected} Patient resource(s) read were rejected as bad input; "
            f"the first, at {self.export.files[fi].name} line {line}: {reason}.",
            hint="Fix the Patient resources. validate='full' applies the FHIR rules of "
                 "fhir.resources (e.g. ids of letters, digits, '-' and '.' only); "
                 "validate='mapped' (--validate mapped) checks only the fields the mapping "
                 "reads (see docs/fhir.md, Validation).")

    def _mixed_units(self, slot: int) -> None:
        name = self.plan.slots[slot].name
        units = sorted(self.units[slot])
        raise DataError(
            f"{self.source}: the observation '{name}' of the mapping declares no unit, but its "
            f"values come in {len(units)} units ({', '.join(units)}), which would be mixed in "
            "one column.",
            hint=f"Declare the unit of '{name}' in the mapping (e.g. 'unit: {units[0]}'), and "
                 "'analyte:' to convert between mass and molar concentration: every value is "
                 "then converted to it, and those that do not convert are counted in "
                 "summary.dropped_values (see docs/fhir.md, Observations).")

    def _take_out_duplicates(self, r: ChunkResult, fi: int, offset: int) -> None:
        """Read a resource seen before (same type and id) once: an identical copy is taken
        out of the chunk's result, a different one is bad input (stop, or skip it)."""
        log = r.resources
        if not len(log):
            return
        lines = np.asarray(log.line, np.int64) + offset
        wheres = (np.uint64(fi) << np.uint64(40)) | lines.astype(np.uint64)
        verdict = self.seen.check(np.array(log.key, np.uint64),
                                  np.array(log.content, np.uint64), wheres)
        for i in np.flatnonzero(verdict.status == DIFFERENT).tolist():
            first_file, first_line = unpack_where(int(verdict.first[i]))
            self._skip(fi, int(lines[i]),
                       f"a second {log.rtype[i]} with the same id and different content (the "
                       f"first is at {self.export.files[first_file].name} line {first_line}); "
                       "each resource must appear once (identical copies are read once)")
        drop = np.flatnonzero(verdict.status != NEW)
        if len(drop):
            _take_out(r, drop, verdict.status == SAME, self.aliases)

    def _rows_of_refs(self) -> np.ndarray:
        row_of_ref = np.full(len(self.ref_where), -1, np.int64)
        for row, gid in enumerate(self.patients):
            row_of_ref[gid] = row
        for row, rec in enumerate(self.patients.values()):
            alias = self.ref_ids.get(rec.alias) if rec.alias else None
            if alias is not None and row_of_ref[alias] < 0:
                row_of_ref[alias] = row
        for alias_key, fhir_id in self.aliases:
            alias, gid = self.ref_ids.get(alias_key), self.ref_ids.get(fhir_id)
            if alias is not None and gid is not None and row_of_ref[alias] < 0:
                row_of_ref[alias] = row_of_ref[gid]
        missing = [g for g in np.flatnonzero(row_of_ref < 0).tolist() if self.ref_count[g]]
        for g in sorted(missing, key=lambda g: self.ref_where[g]):
            fi, line = self.ref_where[g]
            n = self.ref_count[g]
            self._skip(fi, line, "the subject refers to a Patient that is not in the export "
                                 f"(no valid Patient resource with that id or fullUrl; {n} "
                                 f"resource(s) of that patient left out)", count=n)
        return row_of_ref

    def _check_inferred_date(self, events: Events) -> None:
        """A note when the inferred export date lies far after nearly all the data."""
        days = events.day[events.owner >= 0]
        if not len(days):
            return
        gap = self.max_day - int(np.percentile(days, 99, method="lower"))
        if gap > LATE_EXPORT_DATE_DAYS:
            self.notes.append(
                f"the export date was inferred as the latest date read, which is {gap} days "
                "after 99% of the dated events: a mistyped or future date may have moved "
                "everyone's index date. Check the summary's index_date, or give it with "
                "'index: {kind: fixed, date: YYYY-MM-DD}' or a Bulk Data manifest.")

    def _index_days(self, events: Events, n_rows: int) -> tuple[np.ndarray, date | None]:
        spec = self.plan.mapping.index
        if self.index_day is not None:
            return np.full(n_rows, self.index_day, np.int64), date.fromordinal(self.index_day)
        if spec.kind == "export_date":
            if self.max_day < 0:
                raise DataError(f"{self.source}: the mapping's index is the export "
                                "date, but the export has no Bulk Data manifest and no dated "
                                "resource the mapping reads.",
                                hint="Use 'index: {kind: fixed, date: YYYY-MM-DD}'.")
            self._check_inferred_date(events)
            day = self.max_day + spec.offset_days
            return np.full(n_rows, day, np.int64), date.fromordinal(day)
        (slot,) = self.plan.slot_index("index")
        mine = (events.slot == slot) & (events.owner >= 0)
        first = reduce_events(events.take(np.flatnonzero(mine)), self.agg)
        idx = np.full(n_rows, -1, np.int64)
        idx[first.owner] = first.day.astype(np.int64) + spec.offset_days
        return idx, None

    def finish(self, salt: str, keep_patient_ids: bool, started: float,
               export_errors: ExportErrors) -> IngestResult:
        if not self.patients:
            raise self._no_patient()
        records = list(self.patients.values())
        n = len(records)
        row_of_ref = self._rows_of_refs()
        self._resolve_medications()
        self._note_unmatched()
        events = self.buffer.drain()
        events.owner = row_of_ref[events.owner]  # -1: a patient not in the export
        index_day, index_date = self._index_days(events, n)
        known = events.owner >= 0
        events.owner[~known] = 0  # placeholder row, masked out below
        kept = known & in_window(events, index_day, self.lo, self.hi)
        reduced = reduce_events(events.take(np.flatnonzero(kept)), self.agg)
        del events, kept, known
        values = final_values(reduced, self.agg)

        columns, keep, excluded = self._columns(records, index_day, reduced, values)
        ids = [r.fhir_id for r in records]
        table = pd.DataFrame({"patient_key": [patient_key(i, salt) for i in ids], **columns})
        table = table.loc[keep]
        order = np.argsort(table["patient_key"].to_numpy(), kind="stable")
        table = table.iloc[order].reset_index(drop=True)
        kept_ids = tuple(np.asarray(ids, dtype=object)[keep][order].tolist()) \
            if keep_patient_ids else None
        label = self.plan.mapping.label.name if self.plan.mapping.label else None
        summary = IngestSummary(
            source=self.source, files=tuple(f.name for f in self.export.files),
            n_patients=len(table),
            resource_counts=dict(sorted(self.counts.items())),
            fhir_versions=dict(sorted(self.versions.items())), n_skipped=self.n_skipped,
            skipped=tuple(self.skipped), excluded_patients=excluded,
            dropped_values=dict(sorted(self.dropped.items())),
            n_without_patient=self.n_without_patient, index_date=index_date,
            validate=self.options.validate, seconds=round(time.perf_counter() - started, 3),
            skipped_files=self.export.skipped_files, export_errors=export_errors,
            unresolved_references=dict(self.unresolved), notes=tuple(self.notes))
        if len(table) == 0:
            raise DataError(f"{summary.source}: every patient was left out "
                            f"({', '.join(f'{k}: {v}' for k, v in excluded.items())}), so the "
                            "table would be empty.", hint="Check the mapping's index and label.")
        return IngestResult(table, summary, label, kept_ids)

    def _ages(self, birth: np.ndarray, index_day: np.ndarray, keep: np.ndarray) -> np.ndarray:
        """Years from birth to the index date; an impossible age (birth after the index
        date, or more than MAX_AGE_YEARS before it) is missing and counted as dropped."""
        age = np.round((index_day - birth) / 365.25, 2)
        known = (birth >= 0) & keep
        impossible = known & ((age < 0) | (age > MAX_AGE_YEARS))
        if impossible.any():
            self.dropped[IMPOSSIBLE_AGE] = int(impossible.sum())
        return np.where(known & ~impossible, age, np.nan)

    def _columns(self, records: list[PatientRecord], index_day: np.ndarray, reduced: Events,
                 values: np.ndarray) -> tuple[dict[str, Any], np.ndarray, dict[str, int]]:
        mapping = self.plan.mapping
        n = len(records)
        keep = index_day >= 0
        excluded: dict[str, int] = {}
        if (~keep).any():
            excluded["no index date (no qualifying encounter)"] = int((~keep).sum())
        birth = np.array([r.birth_day for r in records], np.int64)
        deceased = np.array([r.deceased for r in records], bool)
        deceased_day = np.array([r.deceased_day for r in records], np.int64)
        cols: dict[str, Any] = {}
        demo = mapping.demographics
        if demo.age:
            cols["age"] = self._ages(birth, index_day, keep)
        if demo.sex:
            cols["sex"] = [r.gender for r in records]
        if demo.deceased:
            cols["deceased"] = (deceased & ((deceased_day < 0) | (deceased_day <= index_day))
                                ).astype(np.int64)
        if demo.race:
            cols["race"] = [r.race for r in records]
        if demo.ethnicity:
            cols["ethnicity"] = [r.ethnicity for r in records]
        for i, slot in enumerate(self.plan.slots):
            if slot.role == "index":
                continue
            mine = reduced.slot == i
            owners, vals = reduced.owner[mine], values[mine]
            if slot.agg in ("count", "flag"):
                col = np.zeros(n, np.int64)
                col[owners] = vals.astype(np.int64)
                cols[slot.name] = col
            elif slot.value == "coded":
                col_obj = np.full(n, None, dtype=object)
                col_obj[owners] = np.asarray(slot.categories, dtype=object)[vals.astype(int)]
                cols[slot.name] = col_obj
            else:
                col_f = np.full(n, np.nan)
                col_f[owners] = vals
                cols[slot.name] = col_f
        label = mapping.label
        if label is not None and label.kind == "deceased":
            values_, labelable = deceased_label(deceased, deceased_day, index_day,
                                                label.horizon_days)
            gone = keep & ~labelable
            if gone.any():
                excluded["deceased on/before the index date, or without a date"] = \
                    int(gone.sum())
            keep &= labelable
            cols[label.name] = values_
        if label is not None:  # the label column goes last
            cols[label.name] = cols.pop(label.name)
        return cols, keep, excluded


def _decrement(table: dict[str, int], key: str) -> None:
    table[key] -= 1
    if not table[key]:
        del table[key]


def _take_out(r: ChunkResult, drop: np.ndarray, same: np.ndarray,
              aliases: list[tuple[str, str]]) -> None:
    """Remove the resources ``drop`` (numbers in ``r.resources``) from a chunk's result; the
    fullUrl of an identical Patient copy is kept in ``aliases`` as another name for it."""
    log = r.resources
    for i in drop.tolist():
        _decrement(r.counts, log.rtype[i])
        _decrement(r.versions, log.version[i])
        for key in log.dropped.get(i, ()):
            _decrement(r.dropped, key)
        if log.ref[i] >= 0:
            r.ref_count[log.ref[i]] -= 1
        elif log.ref[i] == NO_PATIENT:
            r.n_without_patient -= 1
    if len(r.events):
        keep = np.flatnonzero(~np.isin(r.event_resource, drop))
        r.events = r.events.take(keep)
        r.event_resource = r.event_resource[keep]
    gone = set(drop.tolist())
    aliases += [(rec.alias, rec.fhir_id) for rec, i in zip(r.patients, r.patient_resource,
                                                           strict=True)
                if i in gone and same[i] and rec.alias]
    r.pending = [p for p in r.pending if p[1] not in gone]
    kept = [k for k, i in enumerate(r.patient_resource) if i not in gone]
    r.patients = [r.patients[k] for k in kept]
    r.patient_resource = [r.patient_resource[k] for k in kept]


def _close(results: Iterator[ChunkResult]) -> None:
    """Close the chunk generator; stopping early at a bad line is not worth joblib's
    warning about the chunks read ahead and not used."""
    close = getattr(results, "close", None)
    if close is None:
        return
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message=_JOBLIB_EARLY_EXIT, category=UserWarning)
        close()


def ingest_fhir(source: str | Path, mapping: FhirMapping | None = None, *,
                on_error: OnError = "stop", fhir_version: VersionOption = "auto", salt: str,
                n_jobs: int = 1, validate: Validate = "full", keep_patient_ids: bool = False,
                chunk_bytes: int = 4 << 20) -> IngestResult:
    """Read a FHIR export (Bulk Data folder, NDJSON file or Bundle file) into one row per
    patient, as ``mapping`` says (:func:`default_mapping` when None).

    ``on_error="stop"`` raises :class:`DataError` at the first bad line, naming file and
    line; ``"skip"`` leaves bad lines out and lists them in the summary. ``validate="full"``
    validates every resource of a type the mapping reads with ``fhir.resources``;
    ``"mapped"`` checks only the fields the mapping reads (much faster). ``salt`` keys the
    patient hash; keep it secret and fixed to link tables. ``n_jobs`` worker processes read
    chunks of ``chunk_bytes`` (1: no extra process).
    """
    started = time.perf_counter()
    _check_options(on_error, fhir_version, validate, salt, n_jobs)
    mapping = mapping if mapping is not None else default_mapping()
    export = discover(Path(source))  # a standard Bulk Data folder needs no option
    plan = compile_mapping(mapping)
    spec = mapping.index
    index_day: int | None = None
    if spec.kind == "fixed" and spec.date is not None:
        index_day = spec.date.toordinal() + spec.offset_days
    elif spec.kind == "export_date" and export.transaction_time is not None:
        index_day = export.transaction_time.toordinal() + spec.offset_days
    options = Options(on_error, fhir_version, validate)
    merger = _Merger(plan, export, options, index_day)
    results = _run(list(_tasks(export, chunk_bytes)), plan, options, n_jobs)
    try:
        for result in results:
            merger.add(result)
    finally:
        _close(results)
    errors = summarize_errors(export.error_files, open_binary)
    return merger.finish(salt, keep_patient_ids, started, errors)


__all__ = ["IngestResult", "IngestSummary", "SkippedLine", "ingest_fhir", "patient_key"]
