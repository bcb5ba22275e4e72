"""Numbers a spreadsheet wrote as text: ``1,234``, ``3,5``, ``12%``, ``<0.5``, ``120 mmHg``.

Read as they are, such a column is text: if most of its cells are plain numbers the run stops
at the first other cell; if not, it becomes a categorical feature whose every value is rare,
so the charged category threshold drops it — a clinical measurement lost with a caveat deep
in the report. Both cases are refused before any work, naming the column and the format
(never a cell's value) and how to convert it. A column declared in ``data.feature_types`` as
categorical is taken as the user says.
"""

from __future__ import annotations

import re
from typing import TYPE_CHECKING

from medistill.errors import DataError

if TYPE_CHECKING:      # pandas only where a table is read: the deployment's reader is pandas-free
    import pandas as pd

SAMPLE = 2000
"""Filled cells read per column (the first ones), as for the date check."""
SHARE = 0.95
"""Part of the sampled cells that are plain numbers or numbers in one of :data:`FORMATS` for
the column to count as numbers written as text."""
MIN_DISTINCT = 10
"""Distinct values among them, at least: fewer (a 1–5 scale written ``1 Never`` … ``5
Always``, three percent steps) are kept as categories, which the category threshold can
keep."""

_NUMBER = r"[+-]?(?:\d+(?:\.\d*)?|\.\d+)"
FORMATS: tuple[tuple[str, re.Pattern[str]], ...] = (
    ("a comma inside the number (a thousands separator as in 1,234, or a decimal comma as "
     "in 3,5)", re.compile(r"[+-]?\d{1,3}(?:,\d{3})+(?:\.\d+)?|[+-]?\d+,\d+")),
    ("a percent sign (12%)", re.compile(_NUMBER + r"\s*%")),
    ("a comparison sign, as for a result beyond a detection limit (<0.5, >1000)",
     re.compile(r"(?:<=?|>=?|≤|≥)\s*" + _NUMBER)),
    ("a unit after the number (120 mmHg, 5.4 mmol/L)",
     re.compile(_NUMBER + r"\s+[A-Za-zµμ°][^\s]*")),
)


SPREADSHEET_ERRORS = ("#DIV/0!", "#N/A", "#NAME?", "#NULL!", "#NUM!", "#REF!", "#VALUE!",
                      "#SPILL!", "#CALC!")
"""Excel's (and LibreOffice's) error values: what a formula cell exports when it fails."""


def is_spreadsheet_error(text: str) -> bool:
    """Whether ``text`` is one of :data:`SPREADSHEET_ERRORS` (any case)."""
    return text.strip().upper() in SPREADSHEET_ERRORS


def number_format(text: str) -> str | None:
    """The description of the format in :data:`FORMATS` that ``text`` is written in, or
    None (plain numbers and other text)."""
    text = text.strip()
    for description, pattern in FORMATS:
        if pattern.fullmatch(text):
            return description
    return None


def numbers_as_text(series: pd.Series) -> tuple[int, str] | None:
    """For a text column whose first :data:`SAMPLE` filled cells are, in at least
    :data:`SHARE` of them, plain numbers or numbers in a spreadsheet format (at least one
    of them) and :data:`MIN_DISTINCT` distinct values: the row position of the first
    formatted cell and the formats found."""
    import pandas as pd

    if pd.api.types.is_numeric_dtype(series) or pd.api.types.is_bool_dtype(series):
        return None
    values = series.dropna().head(SAMPLE).astype(str).str.strip()
    values = values[values != ""]
    if values.empty:
        return None
    formats = values.map(number_format)
    formatted = formats.notna()
    if not formatted.any():
        return None
    plain = pd.to_numeric(values, errors="coerce").notna()   # as infer_kind reads numbers
    if float((plain | formatted).mean()) < SHARE or values.nunique() < MIN_DISTINCT:
        return None
    first = int(series.index.get_loc(formats[formatted].index[0]))
    found = list(dict.fromkeys(formats[formatted]))
    return first, "; ".join(found)


def conversion_hint(column: str) -> str:
    """How to turn the column into plain numbers, or keep it as categories."""
    return (f"Write the column '{column}' as plain numbers ('.' as the decimal mark; no "
            "thousands separator, % sign, unit or comparison sign) — for a result beyond a "
            "detection limit, the limit itself or a value you choose, or a blank cell — or, "
            f"to use its values as categories, declare data.feature_types.{column}: "
            "categorical.")


def check_numbers_as_text(columns: dict[str, pd.Series], *, source: str) -> None:
    """Refuse text columns that hold numbers in a spreadsheet's format, all named at once."""
    found = {name: hit for name, series in columns.items()
             if (hit := numbers_as_text(series)) is not None}
    if not found:
        return
    listed = "; ".join(f"'{name}' with {formats}, first in row {row + 2}"
                       for name, (row, formats) in found.items())
    names = list(found)
    hint = conversion_hint(names[0])
    if len(names) > 1:
        hint += " The same for " + ", ".join(f"'{n}'" for n in names[1:]) + "."
    raise DataError(f"{source}: {'columns hold' if len(names) > 1 else 'a column holds'} "
                    f"numbers written as text: {listed} (rows as lines of a CSV with a "
                    "header). Read as text, such a column would be dropped as categories too "
                    "rare to keep.", hint=hint)


__all__ = ["FORMATS", "SPREADSHEET_ERRORS", "check_numbers_as_text", "is_spreadsheet_error", "conversion_hint", "number_format",
           "numbers_as_text"]
