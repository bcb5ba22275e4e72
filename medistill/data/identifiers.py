"""Detect columns that look like direct identifiers so they never become features."""

from __future__ import annotations

import re
from dataclasses import dataclass

import pandas as pd

_NAME_HINTS = re.compile(
    r"(^|_)(name|first_?name|last_?name|surname|given|family|full_?name|address|street|city|"
    r"zip|postcode|postal|phone|telephone|mobile|fax|e_?mail|ssn|social_security|nhs_?number|"
    r"mrn|medical_record|record_?(no|num|number|id)|passport|license|insurance_?(no|id))($|_)",
    re.IGNORECASE)
_EMAIL = re.compile(r"^[^@\s]+@[^@\s]+\.[A-Za-z]{2,}$")
_PHONE = re.compile(r"^\+?[\d\s().-]{7,}$")
_ID_LIKE = re.compile(r"(^|_)(id|no|num|number|key|uuid|guid)$", re.IGNORECASE)


@dataclass(frozen=True)
class IdentifierFinding:
    """A column that looks like a direct identifier, and why."""

    column: str
    reason: str


def _sample(series: pd.Series, n: int = 500) -> pd.Series:
    values = series.dropna()
    return values.iloc[:n].astype(str).str.strip()


def detect_identifiers(frame: pd.DataFrame, *, exclude: set[str] | None = None) -> list[IdentifierFinding]:
    """Columns that look like names, addresses, phone numbers, e-mail, record numbers or
    free text with nearly one distinct value per row. ``exclude`` lists columns already
    declared (as identifiers to drop, the id column, the label, or explicit features)."""
    exclude = exclude or set()
    findings: list[IdentifierFinding] = []
    n_rows = len(frame)
    for column in frame.columns:
        if column in exclude:
            continue
        series = frame[column]
        if _NAME_HINTS.search(str(column)):
            findings.append(IdentifierFinding(column, "its name suggests a direct identifier"))
            continue
        sample = _sample(series)
        if sample.empty:
            continue
        is_text = not pd.api.types.is_numeric_dtype(series)
        if is_text and sample.str.match(_EMAIL).mean() > 0.5:
            findings.append(IdentifierFinding(column, "its values look like e-mail addresses"))
        elif is_text and sample.str.match(_PHONE).mean() > 0.8 \
                and sample.str.count(r"\d").mean() >= 7:
            findings.append(IdentifierFinding(column, "its values look like phone numbers"))
        elif is_text and pd.to_numeric(sample, errors="coerce").isna().mean() > 0.5 \
                and series.nunique(dropna=True) > max(0.5 * series.notna().sum(), 20):
            findings.append(IdentifierFinding(
                column, "it is free text with nearly one distinct value per row"))
        elif _ID_LIKE.search(str(column)) and n_rows >= 20 \
                and series.nunique(dropna=True) >= 0.95 * series.notna().sum():
            findings.append(IdentifierFinding(
                column, "it is a record number: named like an id, with a unique value per row"))
    return findings


__all__ = ["IdentifierFinding", "detect_identifiers"]
