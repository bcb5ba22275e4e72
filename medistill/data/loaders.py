"""CSV and Parquet loaders that turn every malformed input into a clear :class:`DataError`."""

from __future__ import annotations

import csv
import re
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import pandas as pd

from medistill.data.checks import check_headers
from medistill.data.delimiters import check_comma_separated
from medistill.errors import DataError

_RAGGED = re.compile(r"Expected (\d+) fields in line (\d+), saw (\d+)")


def _read_csv(path: Path, missing_values: Sequence[str] = ()) -> pd.DataFrame:
    try:  # the codes are added to pandas' default missing spellings
        return pd.read_csv(path, low_memory=False, na_values=list(missing_values) or None,
                           keep_default_na=True)
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
    except UnicodeDecodeError as exc:
        raise DataError(f"'{path}' is not UTF-8 text (byte {exc.start}): save it as UTF-8 "
                        "CSV, or convert it to Parquet.") from None


def _first_line(path: Path) -> str:
    with path.open(encoding="utf-8-sig", errors="replace", newline="") as handle:
        return handle.readline().rstrip("\r\n")


def _csv_header(path: Path) -> list[str]:
    """The header line as written: pandas renames a repeated ``age`` to ``age.1``."""
    with path.open(encoding="utf-8-sig", newline="") as handle:
        return next(csv.reader(handle), [])


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
        check_comma_separated(_first_line(path), source=f"'{path}'")
        frame = _read_csv(path, missing_values)
    elif fmt in ("parquet", "pq"):
        frame = _read_parquet(path)
    else:
        raise DataError(f"'{path}': unknown table format '{fmt}'; expected csv or parquet.")
    if frame.empty:
        raise DataError(f"'{path}' has a header but no rows: expected at least one record.")
    check_headers(_csv_header(path) if fmt in ("csv", "txt") else list(frame.columns),
                  source=f"'{path}'")
    frame.columns = [str(c).strip() for c in frame.columns]
    return blank_missing_codes(frame, missing_values)


__all__ = ["blank_missing_codes", "load_table"]
