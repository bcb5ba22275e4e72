"""CSV and Parquet loaders that turn every malformed input into a clear :class:`DataError`."""

from __future__ import annotations

import csv
import re
import warnings
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import pandas as pd

from medistill.data.checks import check_headers
from medistill.data.delimiters import check_comma_separated
from medistill.data.text_encoding import check_not_utf16, not_utf8_error
from medistill.errors import DataError

_RAGGED = re.compile(r"Expected (\d+) fields in line (\d+), saw (\d+)")


def _longer_than_header(path: Path) -> tuple[int, int, int] | None:
    """The first line (as a text editor numbers it) with more fields than the header whose
    extra fields are not all blank, with both field counts; None when only trailing empty
    fields (a comma at the end of each line) are extra."""
    with path.open(encoding="utf-8-sig", newline="") as handle:
        reader = csv.reader(handle)
        header = next(reader, [])
        for row in reader:
            if len(row) > len(header) and any(f.strip() for f in row[len(header):]):
                return reader.line_num, len(row), len(header)
    return None


def _read_csv(path: Path, missing_values: Sequence[str] = ()) -> pd.DataFrame:
    try:  # the codes are added to pandas' default missing spellings
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always", pd.errors.ParserWarning)
            # index_col=False: a line longer than the header never turns the first
            # columns into an index (pandas' default), which shifted every column by one
            frame = pd.read_csv(path, low_memory=False, index_col=False,
                                na_values=list(missing_values) or None, keep_default_na=True)
    except pd.errors.EmptyDataError:
        raise DataError(f"'{path}' is empty: expected a header line with column names and "
                        "at least one row of records.") from None
    except pd.errors.ParserError as exc:
        match = _RAGGED.search(str(exc))
        if match:
            want, line, got = match.groups()
            raise DataError(
                f"'{path}' line {line}: expected {want} fields like the header, found {got}.",
                hint="A field may contain an unquoted comma; quote such fields with double "
                     "quotes, or fix the row.") from None
        raise DataError(f"'{path}' is not a well-formed CSV file: {exc}") from None
    except UnicodeDecodeError:
        raise not_utf8_error(path, source=f"'{path}'") from None
    if any(issubclass(w.category, pd.errors.ParserWarning) for w in caught):
        longer = _longer_than_header(path)
        if longer is not None:
            raise _longer_line_error(path, *longer)
    return frame


def _longer_line_error(path: Path, line: int, fields: int, header: int) -> DataError:
    first = _first_line(path)
    if first.lower().startswith("sep="):
        cause = "The first line is Excel's 'sep=' instruction, not the header."
        fix = "Delete the 'sep=' line so that the column names come first."
    elif header == 1:
        cause = "The first line has a single field: a title or note above the header?"
        fix = "Delete any lines above the header line of column names."
    else:
        cause = "A field may contain an unquoted comma, or the header misses column names."
        fix = "Quote fields that contain commas, or name every column in the header line."
    return DataError(f"'{path}' line {line} has {fields} fields but the header line has "
                     f"{header}; the values would not line up with the column names. {cause}",
                     hint=fix)


def _first_line(path: Path) -> str:
    with path.open(encoding="utf-8-sig", errors="replace", newline="") as handle:
        return handle.readline().rstrip("\r\n")


def _csv_header(path: Path) -> list[str]:
    """The header line as written: pandas renames a repeated ``age`` to ``age.1``."""
    with path.open(encoding="utf-8-sig", newline="") as handle:
        return next(csv.reader(handle), [])


def _without_empty_unnamed(frame: pd.DataFrame, names: list[str]
                           ) -> tuple[pd.DataFrame, list[str]]:
    """Drop columns with no name in the header and no value in any row: the empty columns a
    spreadsheet adds when each line ends with separators."""
    if len(names) != frame.shape[1]:
        return frame, names
    drop = [i for i, name in enumerate(names)
            if not name.strip() and frame.iloc[:, i].isna().all()]
    if not drop:
        return frame, names
    keep = [i for i in range(len(names)) if i not in drop]
    return frame.iloc[:, keep], [names[i] for i in keep]


def _read_parquet(path: Path) -> pd.DataFrame:
    import pyarrow as pa
    import pyarrow.parquet as pq

    try:
        return pq.read_table(path).to_pandas()
    except (pa.ArrowInvalid, OSError) as exc:
        raise DataError(f"'{path}' is not a readable Parquet file: {exc}",
                        hint="Check that the file was written completely.") from None


def _number(code: str) -> float | None:
    try:
        value = float(code)
    except ValueError:
        return None
    return value if np.isfinite(value) else None


def blank_missing_codes(frame: pd.DataFrame, missing_values: Sequence[str]) -> pd.DataFrame:
    """``frame`` with every cell equal to a missing-value code set missing: text cells whose
    trimmed text is a code, and numbers equal to a code that is a number (``-99``)."""
    codes = {str(c).strip() for c in missing_values}
    if not codes:
        return frame
    numbers = [n for n in map(_number, codes) if n is not None]
    out = frame.copy()
    for column in out.columns:
        series = out[column]
        if pd.api.types.is_bool_dtype(series):
            continue
        if pd.api.types.is_numeric_dtype(series):
            hit = series.isin(numbers).to_numpy(dtype=bool, na_value=False)
        else:
            hit = series.astype("string").str.strip().isin(codes).to_numpy(dtype=bool,
                                                                            na_value=False)
        if hit.any():
            out[column] = series.mask(hit)
    return out


def load_table(path: Path | str, fmt: str | None = None,
               missing_values: Sequence[str] = ()) -> pd.DataFrame:
    """Read a CSV or Parquet table; ``fmt`` defaults to the file's extension.

    Cells equal to one of ``missing_values`` (``data.missing_values``: export codes such as
    ``.`` or ``-99``, compared after trimming spaces) are read as missing, on top of
    pandas' default missing spellings.
    """
    path = Path(path)
    if not path.exists():
        raise DataError(f"Input file '{path}' does not exist.",
                        hint="Check data.path in the pipeline file; relative paths are read "
                             "from the pipeline file's folder.")
    if path.is_dir():
        raise DataError(f"'{path}' is a folder; expected a CSV or Parquet file.")
    if path.stat().st_size == 0:
        raise DataError(f"'{path}' is empty (0 bytes): expected a table of records.")
    fmt = (fmt or path.suffix.lstrip(".")).lower()
    if fmt in ("csv", "txt"):
        check_not_utf16(path, source=f"'{path}'")
        check_comma_separated(_first_line(path), source=f"'{path}'")
        frame = _read_csv(path, missing_values)
    elif fmt in ("parquet", "pq"):
        frame = _read_parquet(path)
    else:
        raise DataError(f"'{path}': unknown table format '{fmt}'; expected csv or parquet.")
    if frame.empty:
        raise DataError(f"'{path}' has a header but no rows: expected at least one record.")
    names = list(frame.columns)
    if fmt in ("csv", "txt"):
        names = _csv_header(path)
        frame, names = _without_empty_unnamed(frame, names)
    check_headers(names, source=f"'{path}'")
    frame.columns = [str(c).strip() for c in frame.columns]
    return blank_missing_codes(frame, missing_values)


__all__ = ["blank_missing_codes", "load_table"]
