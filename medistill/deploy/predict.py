"""Batch scoring: ``predict_file`` reads CSV, Parquet or a FHIR export in chunks, checks each
chunk at the door, scores it with onnxruntime and writes CSV, Parquet or FHIR
RiskAssessment NDJSON atomically (a temporary file renamed into place at the end).

Needs onnxruntime, pyarrow and numpy; FHIR input adds medistill.data.fhir (and pandas),
FHIR output adds fhir.resources. Never imports torch or scikit-learn.
"""

from __future__ import annotations

import os
import secrets
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import numpy as np
import pyarrow as pa

from medistill.deploy.inputs import (
    MAX_LISTED,
    Prepared,
    RawChunk,
    RowProblem,
    check_columns,
    missing_tokens,
    open_table,
    pick_key,
    prepare,
)
from medistill.deploy.model import PATIENT_KEY, DeployedModel, load_model
from medistill.errors import ConfigError, DataError

OnError = Literal["stop", "skip"]
OutputFormat = Literal["csv", "parquet", "fhir"]
FORMATS: dict[str, OutputFormat] = {".csv": "csv", ".parquet": "parquet", ".pq": "parquet",
                                    ".ndjson": "fhir", ".jsonl": "fhir"}
FHIR_INPUT_SUFFIXES = (".ndjson", ".json", ".jsonl", ".ndjson.gz", ".jsonl.gz")
MAPPING_FILE = "mapping.yaml"
_SKIP_HINT = ("Fix the cell (a blank cell is read as missing), or rerun with --on-error skip "
              "to score the other rows and list the bad ones; nothing was written.")


@dataclass(frozen=True)
class PredictSummary:
    """What a batch run read, scored and left out. Holds no cell value."""

    input: str
    output: str
    format: str
    model_sha256: str
    key_column: str | None
    n_rows: int
    n_scored: int
    n_skipped: int
    problems: tuple[RowProblem, ...]
    unseen_categories: dict[str, int]
    seconds: float
    notes: tuple[str, ...] = field(default=())
    # inputs without a value in any scored row: the model imputed them for every patient
    empty_inputs: tuple[str, ...] = field(default=())

    def to_dict(self) -> dict[str, Any]:
        """A JSON-ready dict."""
        return {"input": self.input, "output": self.output, "format": self.format,
                "model_sha256": self.model_sha256, "key_column": self.key_column,
                "n_rows": self.n_rows, "n_scored": self.n_scored, "n_skipped": self.n_skipped,
                "problems": [p.to_dict() for p in self.problems],
                "unseen_categories": self.unseen_categories,
                "empty_inputs": list(self.empty_inputs), "seconds": self.seconds,
                "notes": list(self.notes)}

    def lines(self, limit: int = 20) -> list[str]:
        """A short human-readable account (for stderr)."""
        rate = self.n_scored / self.seconds if self.seconds > 0 else float("inf")
        out = [f"scored {self.n_scored:,} of {self.n_rows:,} rows from {self.input} into "
               f"{self.output} ({self.format}) in {self.seconds:.2f} s ({rate:,.0f} rows/s)"]
        if self.n_skipped:
            out.append(f"skipped {self.n_skipped:,} (not scored):")
            out += [f"  {p}" for p in self.problems[:limit]]
            if len(self.problems) > limit:
                out.append(f"  ... and {len(self.problems) - limit:,} more problem(s) "
                           "(all listed in --summary-json, up to 1,000)")
        for column, count in self.unseen_categories.items():
            out.append(f"warning: column '{column}': {count:,} value(s) the model has not "
                       "seen; scored as an unknown category")
        if self.empty_inputs and self.n_scored:
            out.append(f"warning: {len(self.empty_inputs)} of the model's inputs had no value "
                       "in any scored row, so the model imputed them for every patient: "
                       + ", ".join(f"'{c}'" for c in self.empty_inputs)
                       + ". Check the input's column names, its missing-value codes, or the "
                       "FHIR mapping.")
        out += [f"note: {n}" for n in self.notes]
        return out


def infer_format(path: Path, explicit: str | None = None) -> OutputFormat:
    """``csv``, ``parquet`` or ``fhir`` from ``explicit`` or the output's extension."""
    if explicit is not None:
        if explicit not in ("csv", "parquet", "fhir"):
            raise ConfigError(f"--format must be csv, parquet or fhir. Got {explicit!r}.")
        return explicit  # type: ignore[return-value]
    fmt = FORMATS.get(Path(path).suffix.lower())
    if fmt is None:
        raise ConfigError(f"cannot tell the output format of '{Path(path).name}' from its "
                          "extension.", hint="Use .csv, .parquet or .ndjson (FHIR "
                                             "RiskAssessment), or pass --format.")
    return fmt


def probability_columns(model: DeployedModel) -> list[str]:
    """``probability`` (of the last class) for a binary task, else one column per class."""
    if model.binary:
        return ["probability"]
    return [f"probability_{c}" for c in model.schema.classes]


def score(model: DeployedModel, prepared: Prepared) -> np.ndarray:
    """Class probabilities ``[n_valid, n_classes]`` of a prepared chunk's valid rows."""
    if prepared.n_valid == 0:
        return np.empty((0, len(model.schema.classes)), dtype=np.float32)
    return model.predict_proba(prepared.feeds)


# --------------------------------------------------------------------------- writers

class _TableWriter:
    """CSV or Parquet output: key, probabilities, prediction."""

    def __init__(self, path: Path, fmt: OutputFormat, model: DeployedModel,
                 key_column: str | None) -> None:
        fields = [pa.field(key_column, pa.string())] if key_column else []
        fields += [pa.field(c, pa.float32()) for c in probability_columns(model)]
        fields.append(pa.field("prediction", pa.string()))
        self.schema = pa.schema(fields)
        self.model = model
        self.classes = np.array(model.schema.classes, dtype=object)
        if fmt == "csv":
            import pyarrow.csv as pacsv

            self.writer: Any = pacsv.CSVWriter(str(path), self.schema)
        else:
            import pyarrow.parquet as pq

            self.writer = pq.ParquetWriter(str(path), self.schema, compression="zstd")

    def write(self, keys: np.ndarray | None, subjects: Any, probs: np.ndarray) -> None:
        columns = [pa.array(keys, pa.string())] if keys is not None else []
        if self.model.binary:
            columns.append(pa.array(probs[:, -1], pa.float32()))
        else:
            columns += [pa.array(probs[:, i], pa.float32()) for i in range(probs.shape[1])]
        columns.append(pa.array(self.classes[probs.argmax(axis=1)], pa.string()))
        self.writer.write_table(pa.Table.from_arrays(columns, schema=self.schema))

    def close(self) -> None:
        self.writer.close()


class _FhirWriter:
    """RiskAssessment NDJSON output."""

    def __init__(self, path: Path, model: DeployedModel) -> None:
        from medistill.deploy.fhir_output import RiskAssessmentWriter

        self.handle = path.open("w", encoding="utf-8", newline="\n")
        self.writer = RiskAssessmentWriter(self.handle, model)

    def write(self, keys: np.ndarray | None, subjects: Any, probs: np.ndarray) -> None:
        self.writer.write(subjects, probs)

    def close(self) -> None:
        self.handle.close()


# --------------------------------------------------------------------------- inputs

@dataclass
class _Input:
    """Chunks to score, where their patient keys are, and how FHIR subjects are made."""

    name: str
    unit: str
    key_column: str | None
    chunks: Iterator[RawChunk]
    subjects: Any  # (chunk, prepared) -> list of FHIR subject references
    problems: list[RowProblem] = field(default_factory=list)
    n_dropped: int = 0

    @property
    def from_fhir(self) -> bool:
        return self.unit == "patient"


def is_fhir_input(path: Path) -> bool:
    """A Bulk Data folder, an NDJSON file (optionally gzipped) or a Bundle (.json) file."""
    return path.is_dir() or path.name.lower().endswith(FHIR_INPUT_SUFFIXES)


def _table_input(model: DeployedModel, path: Path, chunk_rows: int) -> _Input:
    from medistill.deploy.fhir_output import key_subject

    source = open_table(path, missing_tokens(model.schema))
    check_columns(source.names, model.schema, path.name)
    key = pick_key(source.names, model.id_columns)
    columns = model.schema.feature_names + ([key] if key else [])

    def subjects(chunk: RawChunk, prepared: Prepared) -> list[dict]:
        return [key_subject(key, str(k)) for k in prepared.keys] if key else []

    return _Input(path.name, source.unit, key, source.chunks(columns, chunk_rows), subjects)


def _fhir_input(model: DeployedModel, path: Path, chunk_rows: int, *, on_error: OnError,
                salt: str) -> _Input:
    if not path.exists():
        raise DataError(f"input '{path}' does not exist.")
    try:
        from medistill.data.fhir import default_mapping, ingest_fhir, load_mapping
    except ImportError:
        raise DataError(f"input '{path.name}' is a FHIR export, but the FHIR ingestion "
                        "package (medistill.data.fhir) is not available.") from None
    from medistill.deploy.fhir_output import patient_subject

    mapping_path = model.folder / MAPPING_FILE
    own = mapping_path.is_file()
    mapping = load_mapping(mapping_path) if own else default_mapping()
    result = ingest_fhir(path, mapping, on_error=on_error, salt=salt, keep_patient_ids=True)
    table = pa.Table.from_pandas(result.table, preserve_index=False)
    source = f"{path.name} (mapped with {mapping_path if own else 'the default mapping'})"
    check_columns(table.column_names, model.schema, source)
    key = PATIENT_KEY if PATIENT_KEY in table.column_names else None
    columns = model.schema.feature_names + ([key] if key else [])
    ids = np.asarray(result.patient_ids or [], dtype=object)

    def chunks() -> Iterator[RawChunk]:
        for start in range(0, table.num_rows, chunk_rows):
            part = table.slice(start, chunk_rows)
            yield RawChunk({c: part.column(c) for c in columns},
                           np.arange(start + 1, start + 1 + part.num_rows, dtype=np.int64))

    def subjects(chunk: RawChunk, prepared: Prepared) -> list[dict]:
        rows = chunk.positions[prepared.valid] - 1
        return [patient_subject(str(i)) for i in ids[rows]]

    skipped = [RowProblem(s.line, None, s.reason, "line", s.file)
               for s in result.summary.skipped]
    return _Input(source, "patient", key, chunks(), subjects, skipped,
                  result.summary.n_skipped)


# --------------------------------------------------------------------------- predict

def _temporary(output: Path) -> Path:
    """A hidden temporary path beside ``output`` (checked by :func:`check_output_path`)."""
    output.parent.mkdir(parents=True, exist_ok=True)
    return output.with_name(f".{output.name}.tmp-{uuid.uuid4().hex[:8]}")


def _inside(path: Path, folder: Path) -> bool:
    return path.resolve().is_relative_to(folder.resolve())


def check_output_path(path: Path, *, source: Path, model_folder: Path, overwrite: bool,
                      option: str = "--out") -> None:
    """Refuse to write ``path`` over the input, inside the model's folder (its model,
    manifest and reports), or over an existing file unless ``overwrite`` (medistill does
    not replace a file it cannot tell it wrote); and a folder, or a parent that is a file."""
    if path.is_dir():
        raise DataError(f"{option} '{path}' is a folder; expected a file path.")
    if source.exists() and path.exists() and source.resolve() == path.resolve():
        raise DataError(f"{option} '{path}' is the input file; choose another output path.")
    if _inside(path, model_folder):
        raise DataError(f"{option} '{path}' is inside the model's folder '{model_folder}', "
                        "which holds the model, its manifest and its reports.",
                        hint="Write the scores outside the model's folder.")
    if path.exists() and not overwrite:
        raise DataError(f"{option} '{path}' already exists; medistill does not replace a "
                        "file it cannot tell it wrote.",
                        hint="Choose a new path, or pass --overwrite to replace it.")
    parent = next((p for p in path.parents if p.exists()), None)
    if parent is not None and not parent.is_dir():
        raise DataError(f"{option} '{path}': '{parent}' is a file, not a folder.")


def check_summary_path(path: Path, *, source: Path, out: Path, model: Path,
                       overwrite: bool) -> None:
    """``--summary-json`` may not be ``--out``, the input, a file inside the model's folder
    or an existing file (unless ``overwrite``): checked before anything is scored."""
    if path.resolve() == out.resolve():
        raise DataError(f"--summary-json '{path}' is the same file as --out.",
                        hint="Give the summary its own path, e.g. scores.summary.json.")
    check_output_path(path, source=source, model_folder=model if model.is_dir() else model.parent,
                      overwrite=overwrite, option="--summary-json")


def predict_file(model_path: str | Path | DeployedModel, input_path: str | Path,
                 output_path: str | Path, *, on_error: OnError = "stop",
                 chunk_rows: int = 100_000, output_format: str | None = None,
                 salt: str | None = None, verify: bool = True,
                 overwrite: bool = False) -> PredictSummary:
    """Score every row of ``input_path`` and write ``output_path`` atomically.

    ``verify`` (default): refuse a model whose sha256 does not match the manifest beside it;
    ``False`` is the explicit, logged ``--allow-unverified-model`` opt-out.

    ``on_error="stop"``: the first bad row raises :class:`DataError` naming its line and
    column, and nothing is written. ``"skip"``: bad rows are left out and listed in the
    summary. ``salt`` keys the patient hash of FHIR input (as in ``ingest-fhir``; give the
    same secret salt to link the output with other tables; None: a random one).
    ``overwrite``: replace an existing ``output_path`` (refused by default).
    """
    started = time.perf_counter()
    if on_error not in ("stop", "skip"):
        raise ConfigError(f"--on-error must be 'stop' or 'skip'. Got {on_error!r}.")
    if chunk_rows < 1:
        raise ConfigError(f"chunk_rows must be a positive integer. Got {chunk_rows}.")
    model = (model_path if isinstance(model_path, DeployedModel)
             else load_model(model_path, verify=verify))
    source, output = Path(input_path), Path(output_path)
    if source.exists() and not (source.is_file() or source.is_dir()):
        raise DataError(f"'{source}' is not a regular file (a pipe or a device?); medistill "
                        "reads the input in blocks and needs a file it can seek in.",
                        hint="Save the input to a file first.")
    fmt = infer_format(output, output_format)
    check_output_path(output, source=source, model_folder=model.folder,
                      overwrite=overwrite)
    notes: list[str] = []
    if is_fhir_input(source):
        if salt is None and fmt != "fhir":
            notes.append("no --salt (or MEDISTILL_SALT) given: a random one was used, so "
                         "patient_key values will not match another table")
        data = _fhir_input(model, source, chunk_rows, on_error=on_error,
                           salt=salt or secrets.token_hex(16))
    else:
        data = _table_input(model, source, chunk_rows)
    if fmt == "fhir" and data.key_column is None and not data.from_fhir:
        raise DataError(f"{data.name}: FHIR RiskAssessment output needs a patient key column "
                        f"({' or '.join(repr(c) for c in model.id_columns)}); the input has none.",
                        hint="Add the key column, or write .csv / .parquet instead.")
    tmp = _temporary(output)
    try:
        counts = _score_all(model, data, tmp, fmt, on_error)
        if counts["rows"] == 0:
            raise DataError(f"{data.name}: the input has no data rows; nothing was written.")
        if counts["scored"] == 0:
            first = counts["problems"][0] if counts["problems"] else "unknown"
            raise DataError(f"{data.name}: none of the {counts['rows']:,} rows could be scored "
                            f"(first problem: {first}); nothing was written.")
        os.replace(tmp, output)
    finally:
        tmp.unlink(missing_ok=True)
    if not model.integrity.startswith("ok"):
        notes.append(f"model integrity: {model.integrity}")
    if model.binary:
        notes.append(f"'probability' is of {model.schema.label} = "
                     f"{model.schema.classes[-1]} (the model's positive class)")
    return PredictSummary(
        input=str(source), output=str(output), format=fmt, model_sha256=model.sha256,
        key_column=data.key_column, n_rows=counts["rows"], n_scored=counts["scored"],
        n_skipped=counts["rows"] - counts["scored"] + data.n_dropped,
        problems=tuple(counts["problems"]), unseen_categories=counts["unseen"],
        empty_inputs=tuple(counts["empty"]),
        seconds=time.perf_counter() - started, notes=tuple(notes))


def predict_fhir_resources(model: DeployedModel, source: str | Path, *,
                           on_error: OnError = "stop", salt: str | None = None
                           ) -> tuple[list[dict[str, Any]], list[RowProblem]]:
    """RiskAssessments (as dicts) for every patient of a FHIR export or Bundle, and the
    problems met (with ``on_error="stop"`` the first bad line raises instead)."""
    from medistill.deploy.fhir_output import RiskAssessmentBuilder

    data = _fhir_input(model, Path(source), 10_000, on_error=on_error,
                       salt=salt or secrets.token_hex(16))
    builder = RiskAssessmentBuilder(model)
    resources: list[dict[str, Any]] = []
    problems = list(data.problems)
    for chunk in data.chunks:
        prepared = prepare(chunk, model.schema, key_column=data.key_column, source=data.name,
                           unit=data.unit)
        problems.extend(prepared.problems)
        if prepared.n_valid:
            subjects = data.subjects(chunk, prepared)
            resources += [builder.resource(s, p) for s, p in
                          zip(subjects, score(model, prepared).tolist(), strict=True)]
    return resources, problems


def _score_all(model: DeployedModel, data: _Input, tmp: Path, fmt: OutputFormat,
               on_error: OnError) -> dict[str, Any]:
    problems: list[RowProblem] = list(data.problems[:MAX_LISTED])
    unseen: dict[str, int] = {}
    filled = dict.fromkeys(model.schema.feature_names, 0)
    rows = scored = 0
    writer = (_FhirWriter(tmp, model) if fmt == "fhir"
              else _TableWriter(tmp, fmt, model, data.key_column))
    try:
        for chunk in data.chunks:
            prepared = prepare(chunk, model.schema, key_column=data.key_column,
                               source=data.name, unit=data.unit,
                               require_key=fmt == "fhir" and not data.from_fhir)
            if prepared.problems and on_error == "stop":
                raise DataError(f"{data.name}: {prepared.problems[0]}.", hint=_SKIP_HINT)
            problems.extend(prepared.problems[:MAX_LISTED - len(problems)])
            for column, count in prepared.unseen.items():
                unseen[column] = unseen.get(column, 0) + count
            for column, count in prepared.filled.items():
                filled[column] = filled.get(column, 0) + count
            rows += prepared.n_rows
            if prepared.n_valid:
                probs = score(model, prepared)
                subjects = data.subjects(chunk, prepared) if fmt == "fhir" else None
                writer.write(prepared.keys, subjects, probs)
                scored += prepared.n_valid
    finally:
        writer.close()
    return {"rows": rows, "scored": scored, "problems": problems, "unseen": unseen,
            "empty": [c for c, n in filled.items() if n == 0]}


__all__ = ["FORMATS", "OnError", "PredictSummary", "infer_format", "is_fhir_input",
           "predict_fhir_resources", "predict_file", "probability_columns", "score"]
