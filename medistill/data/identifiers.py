"""Detect columns that look like direct identifiers so they never become features.

A column is flagged by its name (``name``, ``mrn``, ``phone``, ...) or, under any name, by
its content: e-mail addresses, phone numbers, person-name-like values, long free text,
record-number-like strings. A finding names the column and the kind of pattern, never a
value.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

import numpy as np
import pandas as pd

from medistill.data.checks import holds_dates

_NAME_HINTS = re.compile(
    r"(^|_)(name|first_?name|last_?name|surname|given|family|full_?name|address|street|city|"
    r"zip|postcode|postal|phone|telephone|mobile|fax|e_?mail|ssn|social_security|nhs_?number|"
    r"mrn|medical_record|record_?(no|num|number|id)|passport|license|insurance_?(no|id))($|_)",
    re.IGNORECASE)
_ID_LIKE = re.compile(r"(^|_)(id|no|num|number|key|uuid|guid)$", re.IGNORECASE)
_EMAIL = re.compile(r"[^@\s<>()]+@[^@\s<>()]+\.[A-Za-z]{2,}")
_PHONE = re.compile(r"\+?\(?\d[\d\s().-]{6,}\d")
_DATE = re.compile(r"\d{4}-\d{2}-\d{2}|\d{1,2}[/.]\d{1,2}[/.]\d{2,4}")
_PERSON_NAME = re.compile(
    r"^(?:(?:Mr|Mrs|Ms|Miss|Dr|Prof)\.?\s+)?"
    r"(?:[A-Z][A-Za-z'’-]+,?\s+(?:[A-Z]\.?\s+)?[A-Z][A-Za-z'’-]+(?:\s+[A-Z][A-Za-z'’-]+)?)$")
_LETTER = re.compile(r"[^\W\d_]")
_RECORD_NUMBER = re.compile(r"^(?=.*\d{4})[A-Za-z]{0,5}[-_/#: ]?[0-9][0-9A-Za-z-]{4,}$")

SAMPLE = 500
"""Filled cells read per column (the first ones) to judge its content."""
EMAIL_SHARE, PHONE_SHARE, NAME_SHARE, RECORD_SHARE = 0.3, 0.3, 0.5, 0.8
LONG_TEXT_WORDS, LONG_TEXT_CHARS = 6, 50
"""Median words or characters from which a text column is long free text."""
ROW_INDEX_MIN_ROWS = 50
"""Fewest rows from which distinct consecutive whole numbers are taken for a row index."""


@dataclass(frozen=True)
class IdentifierFinding:
    """A column that looks like a direct identifier, and why."""

    column: str
    reason: str


def _sample(series: pd.Series, n: int = SAMPLE) -> pd.Series:
    values = series.dropna()
    values = values.iloc[:n].astype(str).str.strip()
    return values[values != ""]


def _share(values: pd.Series, pattern: re.Pattern[str]) -> float:
    return float(values.map(lambda v: pattern.search(v) is not None).mean())


def _has_phone(value: str) -> bool:
    for match in _PHONE.finditer(_DATE.sub(" ", value)):
        digits = sum(c.isdigit() for c in match.group())
        if 9 <= digits <= 15:
            return True
    return False


def _many_distinct(series: pd.Series, share: float) -> bool:
    filled = int(series.notna().sum())
    return series.nunique(dropna=True) > max(share * filled, 20)


def _consecutive_whole_numbers(series: pd.Series) -> bool:
    """Every row filled with a different whole number, together a run k, k+1, …, k+n-1 (in
    any order): a row index (R's ``rownames``, pandas' ``Unnamed: 0``) or a sequential id."""
    values = series.to_numpy()
    if len(values) < ROW_INDEX_MIN_ROWS or series.isna().any():
        return False
    if not pd.api.types.is_integer_dtype(series):
        if not np.all(np.isfinite(values)) or not np.all(np.mod(values, 1) == 0):
            return False
    unique = np.unique(values)
    return len(unique) == len(values) and int(unique[-1] - unique[0]) + 1 == len(values)


def content_reason(series: pd.Series) -> str | None:
    """Why the values of ``series`` look like a direct identifier, or ``None``."""
    sample = _sample(series)
    if sample.empty or holds_dates(series):     # dates have their own rule: dropped, noted
        return None
    if pd.api.types.is_numeric_dtype(series) and not pd.api.types.is_bool_dtype(series):
        values = series.dropna()
        if pd.api.types.is_integer_dtype(series) and len(values) >= 50 \
                and values.nunique() == len(values) and int(values.abs().min()) >= 100_000:
            return "its values look like record numbers: whole numbers of six or more " \
                   "digits, a different one in every row"
        if _consecutive_whole_numbers(series):
            return "its values are consecutive whole numbers, a different one in every row: " \
                   "a row number or a sequential record number written by the export"
        return None
    numeric_share = pd.to_numeric(sample, errors="coerce").notna().mean()
    if _share(sample, _EMAIL) > EMAIL_SHARE:
        return "its values contain e-mail addresses"
    if sample.map(_has_phone).mean() > PHONE_SHARE:
        return "its values contain phone numbers"
    if numeric_share > 0.5:
        return None
    if _share(sample, _PERSON_NAME) > NAME_SHARE and _many_distinct(series, 0.2):
        return "its values look like person names"
    words = sample.str.split().str.len()
    if (words.median() >= LONG_TEXT_WORDS or sample.str.len().median() >= LONG_TEXT_CHARS) \
            and series.nunique(dropna=True) > 20:
        return "it holds long free text (clinical notes can name patients and staff)"
    if _share(sample, _RECORD_NUMBER) > RECORD_SHARE and _many_distinct(series, 0.9):
        return "its values look like record numbers, a different one in nearly every row"
    if _many_distinct(series, 0.5) and _share(sample, _LETTER) > 0.5:
        return "it is free text with nearly one distinct value per row"
    return None


def detect_identifiers(frame: pd.DataFrame, *, exclude: set[str] | None = None) -> list[IdentifierFinding]:
    """Columns that look like names, addresses, phone numbers, e-mail, record numbers or
    free text, by their name or their content. ``exclude`` lists columns already declared
    (as identifiers to drop, the id column, the label, or explicit features)."""
    exclude = exclude or set()
    findings: list[IdentifierFinding] = []
    for column in frame.columns:
        if column in exclude:
            continue
        series = frame[column]
        if _NAME_HINTS.search(str(column)):
            findings.append(IdentifierFinding(column, "its name suggests a direct identifier"))
            continue
        reason = content_reason(series)
        filled = int(series.notna().sum())    # an empty column holds no record number
        if reason is None and _ID_LIKE.search(str(column)) and len(frame) >= 20 \
                and filled and series.nunique(dropna=True) >= 0.95 * filled:
            reason = "it is a record number: named like an id, with a unique value per row"
        if reason is not None:
            findings.append(IdentifierFinding(column, reason))
    return findings


__all__ = ["IdentifierFinding", "content_reason", "detect_identifiers"]
