"""Reading inputs in chunks and checking them at the door.

CSV and Parquet are streamed with pyarrow (``open_csv`` / ``iter_batches``); JSON rows (the
HTTP service) go through the same checks. Problems are reported by line (CSV, header =
line 1), row (Parquet, from 1) or ``rows[i]`` (JSON, from 0) and column, never with the
cell's value, which may be sensitive. No pandas: scoring a table needs pyarrow and numpy.
"""

from __future__ import annotations

import csv
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from medistill.data.delimiters import check_comma_separated
from medistill.data.number_text import number_format
from medistill.data.text_encoding import check_not_utf16, not_utf8_error
from medistill.deploy.model import BINARY, CATEGORICAL, ModelSchema
from medistill.errors import DataError

NUMBER = r"^[+-]?(\d+\.?\d*|\.\d+)([eE][+-]?\d+)?$"
MISSING_TOKENS = ("", "#N/A", "#N/A N/A", "#NA", "-1.#IND", "-1.#QNAN", "-NaN", "-nan",
                  "1.#IND", "1.#QNAN", "<NA>", "N/A", "NA", "NULL", "NaN", "None", "n/a",
                  "nan", "null")
"""Cells read as missing (pandas' defaults, as when the training table was read)."""
_BLOCK_BYTES = 8 << 20
"""Bytes pyarrow reads at a time; one record (a free-text note included) must fit in it."""
MAX_LISTED = 1000
"""Problems listed per column and chunk (and in a summary); all of them are counted."""


@dataclass(frozen=True, order=True)
class RowProblem:
    """A bad row: where (``line`` in a CSV, ``row`` in Parquet, ``rows[]`` in JSON, or a
    FHIR file's line), which column, and why. Holds no cell value."""

    line: int
    column: str | None
    reason: str
    unit: str = "line"
    file: str | None = None

    def where(self) -> str:
        place = f"rows[{self.line}]" if self.unit == "rows[]" else f"{self.unit} {self.line}"
        return f"{self.file} {place}" if self.file else place

    def __str__(self) -> str:
        column = f", column '{self.column}'" if self.column else ""
        return f"{self.where()}{column}: {self.reason}"

    def to_dict(self) -> dict[str, Any]:
        return {"file": self.file, "line" if self.unit == "line" else "row": self.line,
                "column": self.column, "reason": self.reason}


@dataclass
class Prepared:
    """One checked chunk: feeds and keys of its valid rows, its problems, unseen categories."""

    feeds: dict[str, np.ndarray]
    valid: np.ndarray
    keys: np.ndarray | None
    problems: list[RowProblem] = field(default_factory=list)
    unseen: dict[str, int] = field(default_factory=dict)
    n_dropped: int = 0
    # per feature, how many valid rows have a value (not missing, so not imputed)
    filled: dict[str, int] = field(default_factory=dict)

    @property
    def n_rows(self) -> int:
        """Rows read, including rows the reader dropped."""
        return len(self.valid) + self.n_dropped

    @property
    def n_valid(self) -> int:
        return int(self.valid.sum())

    @property
    def n_bad(self) -> int:
        return self.n_rows - self.n_valid


@dataclass
class RawChunk:
    """Columns of up to ``chunk_rows`` input rows, their positions, and rows the reader
    already dropped (ragged CSV lines)."""

    columns: dict[str, pa.Array]
    positions: np.ndarray
    dropped: list[RowProblem] = field(default_factory=list)
    n_dropped: int = 0


def check_columns(names: Sequence[str], schema: ModelSchema, source: str) -> None:
    """Raise one DataError naming every model feature the input lacks."""
    present = set(names)
    missing = [f for f in schema.feature_names if f not in present]
    if missing:
        listed = ", ".join(f"'{m}'" for m in missing)
        raise DataError(f"{source}: missing {len(missing)} column(s) the model needs: {listed}.",
                        hint=f"The model reads {len(schema.features)} columns: "
                             f"{', '.join(schema.feature_names)}. Column names are "
                             "case-sensitive; extra columns are ignored.")


def missing_tokens(schema: ModelSchema) -> tuple[str, ...]:
    """Cells this model reads as missing: :data:`MISSING_TOKENS` and the codes its run
    declared in ``data.missing_values`` (compared after trimming spaces)."""
    return MISSING_TOKENS + tuple(c for c in schema.missing_values if c not in MISSING_TOKENS)


def pick_key(names: Sequence[str], candidates: Sequence[str]) -> str | None:
    """The first patient-key column of ``candidates`` present in the input."""
    return next((c for c in candidates if c in set(names)), None)


# --------------------------------------------------------------------------- conversion

def _decode(arr: pa.Array) -> pa.Array:
    if isinstance(arr, pa.ChunkedArray):
        arr = arr.combine_chunks()
    return arr.dictionary_decode() if pa.types.is_dictionary(arr.type) else arr


def _type_error(column: str, arr: pa.Array, expected: str, source: str) -> DataError:
    return DataError(f"{source}: column '{column}' has type {arr.type}; the model expects "
                     f"{expected}.", hint="Convert the column, or blank it to mark it missing.")


def _numeric(arr: pa.Array, *, binary: bool, column: str, source: str,
             missing: Sequence[str] = MISSING_TOKENS
             ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """float32 values (NaN = missing: a ``missing`` token, or a number equal to one such as
    -99), and masks of non-numbers and non-finite numbers."""
    arr = _decode(arr)
    n = len(arr)
    not_number = np.zeros(n, dtype=bool)
    if pa.types.is_null(arr.type):
        return np.full(n, np.nan, dtype=np.float32), not_number, not_number
    if pa.types.is_string(arr.type) or pa.types.is_large_string(arr.type):
        try:  # fast path: every cell is a plain number or a missing token
            coded = pc.is_in(arr, value_set=pa.array(list(missing), arr.type))
            numbers = pc.cast(pc.if_else(coded, pa.scalar(None, arr.type), arr), pa.float64())
            return _finite(_without_codes(numbers, missing), not_number)
        except pa.ArrowInvalid:
            pass
        text = pc.utf8_trim_whitespace(arr)
        if binary:
            lower = pc.utf8_lower(text)
            text = pc.if_else(pc.equal(lower, "true"), "1",
                              pc.if_else(pc.equal(lower, "false"), "0", text))
        blank = pc.is_in(text, value_set=pa.array(list(missing), text.type))
        ok = pc.and_(pc.match_substring_regex(text, NUMBER), pc.invert(blank))
        not_number = pc.fill_null(pc.and_(pc.invert(ok), pc.invert(blank)), False
                                  ).to_numpy(zero_copy_only=False)
        arr = pc.cast(pc.if_else(ok, text, pa.scalar(None, text.type)), pa.float64())
    elif pa.types.is_boolean(arr.type) and not binary:
        # true/false stand for 1/0 only in a binary column; in a measurement they are not
        # numbers (as the text 'true' is not)
        not_number = pc.fill_null(pc.is_valid(arr), False).to_numpy(zero_copy_only=False)
        arr = pa.nulls(n, pa.float64())
    elif (pa.types.is_integer(arr.type) or pa.types.is_floating(arr.type)
          or pa.types.is_boolean(arr.type) or pa.types.is_decimal(arr.type)):
        arr = pc.cast(arr, pa.float64())
    else:
        raise _type_error(column, arr, "numbers", source)
    return _finite(_without_codes(arr, missing), not_number)


def _not_number_reasons(raw: pa.Array, not_number: np.ndarray
                        ) -> list[tuple[str, np.ndarray]]:
    """The first :data:`MAX_LISTED` rows of ``not_number`` (those a summary lists) grouped by
    reason: "not a number", or the spreadsheet format the cell is written in (``1,234``,
    ``12%``, ``<0.5``; the value is not shown)."""
    if not not_number.any():
        return []
    text = _decode(raw)
    reasons: dict[str, np.ndarray] = {}
    for i in np.flatnonzero(not_number)[:MAX_LISTED]:
        written = number_format(str(text[int(i)].as_py()))
        reason = "not a number" if written is None else f"a number written with {written}"
        reasons.setdefault(reason, np.zeros_like(not_number))[i] = True
    return list(reasons.items())


def _without_codes(arr: pa.Array, missing: Sequence[str]) -> pa.Array:
    """A float64 array with the numbers equal to a numeric ``missing`` code set null."""
    numbers = []
    for code in missing:
        try:
            value = float(code)
        except ValueError:
            continue
        if np.isfinite(value):
            numbers.append(value)
    if not numbers:
        return arr
    coded = pc.is_in(arr, value_set=pa.array(numbers, pa.float64()))
    return pc.if_else(coded, pa.scalar(None, pa.float64()), arr)


def _finite(arr: pa.Array, not_number: np.ndarray
            ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """float32 values of a float64 array, and which of them are infinite (or overflow)."""
    with np.errstate(over="ignore", invalid="ignore"):
        values = arr.to_numpy(zero_copy_only=False).astype(np.float32)
    return values, not_number, np.isinf(values)


def _categorical(arr: pa.Array, categories: tuple[str, ...], *, column: str, source: str,
                 missing: Sequence[str] = MISSING_TOKENS) -> tuple[np.ndarray, int]:
    """Category strings, trimmed ('' = missing, as are ``missing`` tokens that are not
    categories) and how many non-missing values the model has not seen (the model encodes them as
    'unknown': all one-hot columns zero)."""
    arr = _decode(arr)
    if pa.types.is_null(arr.type):
        return np.full(len(arr), "", dtype=object), 0
    if not (pa.types.is_string(arr.type) or pa.types.is_large_string(arr.type)):
        try:
            arr = pc.cast(arr, pa.string())
        except (pa.ArrowInvalid, pa.ArrowNotImplementedError):
            raise _type_error(column, arr, "text categories", source) from None
    # Trimmed as when the training table was read (``medistill.data.table``): an export's
    # padded "No " is the category "No" the model learned.
    filled = pc.utf8_trim_whitespace(pc.fill_null(arr, ""))
    tokens = pa.array([t for t in missing if t not in categories], type=filled.type)
    coded = pc.is_in(filled, value_set=tokens)
    filled = pc.if_else(coded, pa.scalar("", filled.type), filled)
    known = pc.is_in(filled, value_set=pa.array([*categories, ""], type=filled.type))
    unseen = len(filled) - int(pc.sum(known).as_py() or 0)
    return filled.to_numpy(zero_copy_only=False).astype(object), unseen


def prepare(chunk: RawChunk, schema: ModelSchema, *, key_column: str | None, source: str,
            unit: str, file: str | None = None, require_key: bool = False) -> Prepared:
    """Check and convert one chunk into onnxruntime feeds (``[N, 1]`` per feature).

    Bad cells (non-numbers and non-finite numbers in numeric columns, an empty patient key
    when ``require_key``) make their row invalid; unseen categories are only counted.
    """
    n = len(chunk.positions)
    missing = missing_tokens(schema)
    bad = np.zeros(n, dtype=bool)
    problems: list[RowProblem] = list(chunk.dropped)
    feeds: dict[str, np.ndarray] = {}
    unseen: dict[str, int] = {}

    def flag(mask: np.ndarray, column: str, reason: str) -> None:
        if not mask.any():
            return
        for i in np.flatnonzero(mask)[:MAX_LISTED]:
            problems.append(RowProblem(int(chunk.positions[i]), column, reason, unit, file))
        bad[mask] = True

    for spec in schema.features:
        arr = chunk.columns[spec.name]
        if spec.kind == CATEGORICAL:
            feeds[spec.name], count = _categorical(arr, spec.categories, column=spec.name,
                                                   source=source, missing=missing)
            if count:
                unseen[spec.name] = count
        else:
            values, not_number, infinite = _numeric(arr, binary=spec.kind == BINARY,
                                                    column=spec.name, source=source,
                                                    missing=missing)
            for reason, rows in _not_number_reasons(chunk.columns[spec.name], not_number):
                flag(rows, spec.name, reason)
            bad |= not_number
            flag(infinite, spec.name, "not a finite number")
            feeds[spec.name] = values
    keys = None
    if key_column is not None:
        key_arr = _decode(chunk.columns[key_column])
        if not (pa.types.is_string(key_arr.type) or pa.types.is_large_string(key_arr.type)):
            try:
                key_arr = pc.cast(key_arr, pa.string())
            except (pa.ArrowInvalid, pa.ArrowNotImplementedError):
                raise _type_error(key_column, key_arr, "patient keys as text or whole numbers",
                                  source) from None
        keys = key_arr.to_numpy(zero_copy_only=False)
        if require_key:
            empty = pc.or_(pc.is_null(key_arr),
                           pc.equal(pc.utf8_trim_whitespace(key_arr), ""))
            flag(np.asarray(pc.fill_null(empty, True).to_numpy(zero_copy_only=False)),
                 key_column, "the patient key is empty")
    valid = ~bad
    if not valid.all():
        feeds = {k: v[valid] for k, v in feeds.items()}
        keys = keys[valid] if keys is not None else None
    filled = {k: int(np.count_nonzero(v != "") if v.dtype == object
                     else np.count_nonzero(~np.isnan(v))) for k, v in feeds.items()}
    feeds = {k: v.reshape(-1, 1) for k, v in feeds.items()}
    problems.sort()
    return Prepared(feeds, valid, keys, problems, unseen, chunk.n_dropped, filled)


# --------------------------------------------------------------------------- sources

def _refuse_repeated(names: Sequence[str], source: str) -> None:
    """A column name that appears twice: which one holds the model's input is a guess."""
    seen: set[str] = set()
    for name in names:
        if not name.strip():      # a spreadsheet's empty unnamed columns: never read
            continue
        if name in seen:
            raise DataError(f"{source}: column '{name}' appears twice; every column needs a "
                            "distinct name.", hint="Rename or remove one of them.")
        seen.add(name)


class CsvSource:
    """A CSV file read in blocks. Lines are numbered from the header (line 1) without
    counting blank lines (which are skipped), so they are exact for files without blank
    lines or quoted values that span lines (which are read as one value). Cells stay text:
    :func:`prepare` reads the ``missing`` tokens as missing in the model's columns, never in
    the patient key."""

    unit = "line"

    def __init__(self, path: Path, missing: Sequence[str] = MISSING_TOKENS) -> None:
        self.path = path
        self.missing = tuple(missing)
        self.header = self._header()
        # Spaces around a header are dropped, as when the training table was read.
        self.names = [name.strip() for name in self.header]
        if self.names != self.header and len(set(self.names)) < len(self.names):
            raise DataError(f"{path.name}: two columns of the header line differ only in "
                            "surrounding spaces.", hint="Rename or remove one of them.")
        _refuse_repeated(self.names, path.name)

    def _header(self) -> list[str]:
        with self.path.open("rb") as handle:
            first = handle.readline()
        check_not_utf16(self.path, source=self.path.name)
        try:
            line = first.decode("utf-8-sig")
        except UnicodeDecodeError:
            raise not_utf8_error(self.path, source=self.path.name) from None
        if "\r" in line.rstrip("\r\n"):
            raise DataError(f"{self.path.name}: lines end in a carriage return alone (the "
                            "classic Mac OS 'CSV (Macintosh)' format); medistill reads lines "
                            "that end in a line feed (Unix) or CR LF (Windows).",
                            hint="Save the file again as 'CSV UTF-8', or convert the line ends: "
                                 "tr '\\r' '\\n' < old.csv > new.csv.")
        check_comma_separated(line.rstrip("\r\n"), source=self.path.name)
        header = next(csv.reader([line]), None)
        if not header or not any(h.strip() for h in header):
            raise DataError(f"{self.path.name}: the file is empty (no header line).",
                            hint="Export the table with a header row of column names.")
        return header

    def chunks(self, columns: Sequence[str], chunk_rows: int) -> Iterator[RawChunk]:
        import pyarrow.csv as pacsv

        skipped: list[int] = []
        dropped: list[RowProblem] = []

        def invalid(row: Any) -> str:
            skipped.append(int(row.number))
            if len(dropped) < MAX_LISTED:
                dropped.append(RowProblem(int(row.number), None,
                                          f"expected {row.expected_columns} fields, found "
                                          f"{row.actual_columns}", "line"))
            return "skip"

        try:
            reader = pacsv.open_csv(
                self.path,
                read_options=pacsv.ReadOptions(
                    use_threads=False, block_size=_BLOCK_BYTES,
                    **({} if self.names == self.header else
                       {"column_names": self.names, "skip_rows": 1})),
                # quoted values may hold line breaks (a free-text note): without this a
                # block boundary inside one split it into rows of their own
                parse_options=pacsv.ParseOptions(invalid_row_handler=invalid,
                                                 newlines_in_values=True),
                convert_options=pacsv.ConvertOptions(
                    include_columns=list(columns),
                    # cells stay text: the feature readers treat missing tokens as missing,
                    # and a patient key spelled like one ("NA") is kept as it is
                    column_types={c: pa.string() for c in columns},
                    strings_can_be_null=False, quoted_strings_can_be_null=False))
        except pa.ArrowInvalid as error:
            raise _unreadable(self.path, error) from None
        parsed = reported = 0
        with reader:
            for batch in _read_all(reader, self.path):
                lines = _line_numbers(parsed, batch.num_rows, skipped)
                parsed += batch.num_rows
                for start in range(0, batch.num_rows, chunk_rows):
                    part = batch.slice(start, chunk_rows)
                    yield RawChunk({c: part.column(c) for c in columns},
                                   lines[start:start + chunk_rows], dropped[:],
                                   len(skipped) - reported)
                    dropped.clear()
                    reported = len(skipped)
        if len(skipped) > reported:
            yield RawChunk({c: pa.array([], pa.string()) for c in columns},
                           np.empty(0, np.int64), dropped[:], len(skipped) - reported)


def _line_numbers(parsed: int, n: int, skipped: list[int]) -> np.ndarray:
    """Lines of data rows ``parsed .. parsed + n - 1`` (from 0) when the sorted lines
    ``skipped`` were dropped: row r sits on line r + 2 + #{skipped lines before it}."""
    rows = np.arange(parsed, parsed + n, dtype=np.int64) + 2
    if not skipped:
        return rows
    ranks = np.asarray(skipped, dtype=np.int64) - np.arange(len(skipped))
    return rows + np.searchsorted(ranks, rows, side="right")


def _read_all(reader: Any, path: Path) -> Iterator[pa.RecordBatch]:
    while True:
        try:
            batch = reader.read_next_batch()
        except StopIteration:
            return
        except pa.ArrowInvalid as error:
            raise _unreadable(path, error) from None
        yield batch


def _unreadable(path: Path, error: Exception) -> DataError:
    reason = str(error).splitlines()[0][:160]
    if "invalid UTF8" in reason:
        return not_utf8_error(path, source=path.name)
    if "straddl" in reason:
        return DataError(f"{path.name}: a record is longer than {_BLOCK_BYTES >> 20} MiB (a "
                         "very long free-text cell?), which the reader cannot hold at once.",
                         hint="Remove or shorten the long text column (medistill reads only "
                              "the model's columns and the patient key), or convert the file "
                              "to Parquet.")
    return DataError(f"{path.name}: cannot be read as CSV ({reason}).",
                     hint="Check that it is UTF-8 CSV with one record per line.")


class ParquetSource:
    """A Parquet file read in row batches. Rows are numbered from 1."""

    unit = "row"

    def __init__(self, path: Path) -> None:
        import pyarrow.parquet as pq

        self.path = path
        try:
            # No pre-buffering: column chunks are read as needed, so memory stays flat.
            self.file = pq.ParquetFile(path, pre_buffer=False)
        except (pa.ArrowInvalid, OSError) as error:
            reason = str(error).splitlines()[0][:160]
            raise DataError(f"{path.name}: not a readable Parquet file ({reason}).") from None
        self.names = list(self.file.schema_arrow.names)
        _refuse_repeated(self.names, path.name)
        if self.file.metadata.num_rows == 0:
            raise DataError(f"{path.name}: the file is empty (no rows).")

    def chunks(self, columns: Sequence[str], chunk_rows: int) -> Iterator[RawChunk]:
        start = 1
        for batch in self.file.iter_batches(batch_size=chunk_rows, columns=list(columns)):
            positions = np.arange(start, start + batch.num_rows, dtype=np.int64)
            start += batch.num_rows
            yield RawChunk({c: batch.column(c) for c in columns}, positions)


def open_table(path: Path, missing: Sequence[str] = MISSING_TOKENS) -> CsvSource | ParquetSource:
    """A CSV or Parquet source by extension (``.csv``, ``.tsv`` is not supported); a CSV's
    cells equal to a ``missing`` token are read as null (:func:`prepare` handles the rest)."""
    if not path.exists():
        raise DataError(f"input '{path}' does not exist.")
    if path.is_dir():
        raise DataError(f"input '{path}' is a folder; a FHIR export folder needs the FHIR "
                        "ingestion package (medistill.data.fhir).")
    suffix = path.suffix.lower()
    if suffix in (".parquet", ".pq"):
        return ParquetSource(path)
    if suffix in (".csv", ".txt", ""):
        return CsvSource(path, missing)
    if suffix in (".gz", ".bz2", ".zst") and path.stem.lower().endswith(".csv"):
        raise DataError(f"{path.name}: compressed CSV is not supported; decompress it first.")
    raise DataError(f"input '{path.name}': unknown format '{suffix}'.",
                    hint="Use a .csv, .parquet or .pq file, or a FHIR export (.ndjson, "
                         ".json Bundle, or a Bulk Data folder).")


# --------------------------------------------------------------------------- JSON rows

_NUMBER_TYPES = (int, float)
"""JSON values sent straight to float64 (exact types: a boolean is not one of them)."""


def _as_text(value: Any, where: str, missing: Sequence[str] = MISSING_TOKENS) -> str | None:
    if value is None:
        return None
    if isinstance(value, bool):      # 1/0 in a binary column; not a number in a measurement
        return "true" if value else "false"
    if isinstance(value, int):
        return str(value)
    if isinstance(value, float):
        return None if value != value else repr(value)
    if isinstance(value, str):
        return None if value.strip() in missing else value
    raise DataError(f"{where} is a {type(value).__name__}; expected a number, a string "
                    "or null.")


def rows_chunk(rows: Sequence[Mapping[str, Any]], columns: Sequence[str],
               missing: Sequence[str] = MISSING_TOKENS) -> RawChunk:
    """JSON rows (``[{column: value}, ...]``) as a chunk of text columns; a column absent
    from every row is missing, absent from some rows means missing values there, and so
    does a string equal to a ``missing`` token (after trimming spaces)."""
    data: dict[str, pa.Array] = {}
    for column in columns:
        values = [r.get(column) for r in rows]
        if all(v is None or type(v) in _NUMBER_TYPES for v in values):
            # JSON numbers straight to float64; NaN is missing.
            data[column] = pa.array([None if v is None or v != v else float(v)
                                     for v in values], type=pa.float64())
        else:
            data[column] = pa.array([_as_text(v, f"rows[{i}].{column}", missing)
                                     for i, v in enumerate(values)], type=pa.string())
    return RawChunk(data, np.arange(len(rows), dtype=np.int64))


def columns_of_rows(rows: Sequence[Mapping[str, Any]]) -> list[str]:
    """Every key that appears in at least one row."""
    seen: dict[str, None] = {}
    for row in rows:
        seen.update(dict.fromkeys(row))
    return list(seen)


__all__ = ["MAX_LISTED", "MISSING_TOKENS", "CsvSource", "ParquetSource", "Prepared", "RawChunk",
           "RowProblem", "check_columns", "columns_of_rows", "missing_tokens", "open_table",
           "pick_key", "prepare", "rows_chunk"]
