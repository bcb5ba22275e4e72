"""CSV and Parquet loaders that turn every malformed input into a clear :class:`DataError`."""

from __future__ import annotations

import csv
import re
from pathlib import Path

import pandas as pd

from medistill.data.checks import check_headers
from medistill.errors import DataError

_RAGGED = re.compile(r"Expected (\d+) fields in line (\d+), saw (\d+)")


def _read_csv(path: Path) -> pd.DataFrame:
    try:
        return pd.read_csv(path, low_memory=False)
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


def load_table(path: Path | str, fmt: str | None = None) -> pd.DataFrame:
    """Read a CSV or Parquet table; ``fmt`` defaults to the file's extension."""
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
        frame = _read_csv(path)
    elif fmt in ("parquet", "pq"):
        frame = _read_parquet(path)
    else:
        raise DataError(f"'{path}': unknown table format '{fmt}'; expected csv or parquet.")
    if frame.empty:
        raise DataError(f"'{path}' has a header but no rows: expected at least one record.")
    check_headers(_csv_header(path) if fmt in ("csv", "txt") else list(frame.columns),
                  source=f"'{path}'")
    frame.columns = [str(c).strip() for c in frame.columns]
    return frame


__all__ = ["load_table"]
