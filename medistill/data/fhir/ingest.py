"""``ingest_fhir``: a FHIR export in, one row per patient out.

Files are split into chunks that are read in the calling process (``n_jobs=1``), in
worker processes (joblib), or as tasks on the run's Dask cluster (:mod:`medistill.compute`;
its workers must see the export's path); results are merged in file order, so errors, line numbers and
the table do not depend on ``n_jobs``. The table holds a salted key per patient
(HMAC-SHA-256 of the FHIR id with ``salt``) and the mapping's columns, nothing else.
"""

from __future__ import annotations

import hashlib
import hmac
import time
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
from medistill.data.fhir.extract import PatientRecord
from medistill.data.fhir.labels import deceased_label
from medistill.data.fhir.mapping import FhirMapping, default_mapping
from medistill.data.fhir.plan import Plan, compile_mapping
from medistill.data.fhir.reader import Export, discover, ndjson_ranges, open_binary
from medistill.data.fhir.version import VERSION_OPTIONS, VersionOption
from medistill.data.fhir.worker import ChunkResult, OnError, Options, Task, Validate, run_task
from medistill.errors import ConfigError, DataError

MAX_SKIPPED_LISTED = 1000
COMPACT_EVENTS = 1_000_000
"""Buffered events (about 40 bytes each) beyond which they are reduced while reading."""
_SKIP_HINT = "Fix the line, or skip bad lines with --on-error skip (on_error='skip')."


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
        self.line_offset: dict[int, int] = {}
        self.counts: dict[str, int] = {}
        self.versions: dict[str, int] = {}
        self.dropped: dict[str, int] = {}
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
        for line, reason in r.skipped:
            self._skip(fi, offset + line, reason)
        gids = np.array([self._ref(k, fi, offset + line)
                         for k, line in zip(r.refs, r.ref_first_line, strict=True)], np.int64)
        for gid, n in zip(gids.tolist(), r.ref_count, strict=True):
            self.ref_count[gid] += n
        if len(r.events):
            r.events.owner = gids[r.events.owner]
            self.buffer.add(r.events)
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
        self.max_day = max(self.max_day, r.max_day)

    def _rows_of_refs(self) -> np.ndarray:
        row_of_ref = np.full(len(self.ref_where), -1, np.int64)
        for row, gid in enumerate(self.patients):
            row_of_ref[gid] = row
        for row, rec in enumerate(self.patients.values()):
            alias = self.ref_ids.get(rec.alias) if rec.alias else None
            if alias is not None and row_of_ref[alias] < 0:
                row_of_ref[alias] = row
        missing = [g for g in np.flatnonzero(row_of_ref < 0).tolist() if self.ref_count[g]]
        for g in sorted(missing, key=lambda g: self.ref_where[g]):
            fi, line = self.ref_where[g]
            n = self.ref_count[g]
            self._skip(fi, line, "the subject refers to a Patient that is not in the export "
                                 f"(no valid Patient resource with that id or fullUrl; {n} "
                                 f"resource(s) of that patient left out)", count=n)
        return row_of_ref

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
            raise DataError(f"{self.source}: no valid Patient resource was found, so there "
                            "is no patient to make a row for.",
                            hint="A Bulk Data export needs its Patient file(s).")
        records = list(self.patients.values())
        n = len(records)
        row_of_ref = self._rows_of_refs()
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
            skipped_files=self.export.skipped_files, export_errors=export_errors)
        if len(table) == 0:
            raise DataError(f"{summary.source}: every patient was left out "
                            f"({', '.join(f'{k}: {v}' for k, v in excluded.items())}), so the "
                            "table would be empty.", hint="Check the mapping's index and label.")
        return IngestResult(table, summary, label, kept_ids)

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
            age = (index_day - birth) / 365.25
            cols["age"] = np.where((birth >= 0) & keep, np.round(age, 2), np.nan)
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
        close = getattr(results, "close", None)
        if close is not None:
            close()
    errors = summarize_errors(export.error_files, open_binary)
    return merger.finish(salt, keep_patient_ids, started, errors)


__all__ = ["IngestResult", "IngestSummary", "SkippedLine", "ingest_fhir", "patient_key"]
