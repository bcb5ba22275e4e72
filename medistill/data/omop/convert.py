"""One rule for reading CDM values that arrive as text (CSV files, text columns of a database).

Every value is converted in the in-process DuckDB, strictly: a value that is present but
cannot be read as its CDM type is an error naming the table, the column and the expected
format — never a silent NULL. Dates stored as text must be ISO ``YYYY-MM-DD`` (the OMOP CDM
convention; a time part after it is ignored) unless ``data.omop.date_format`` declares
another strptime format, which then applies to every text date. Values already stored with a
date or number type are cast as they are. Blank text counts as missing.
"""

from __future__ import annotations

ISO_DATE = r"\d{4}-\d{2}-\d{2}([ T][0-9:.]*)?"
"""An ISO date, optionally followed by a time of day (ignored)."""

EXPECTED = {
    "BIGINT": "a whole number (an id or a concept id, e.g. 8532)",
    "INTEGER": "a whole number (e.g. 1960)",
    "DOUBLE": "a number with a decimal point and no thousands separator (e.g. 7.5)",
    "VARCHAR": "text",
}

_NUMBERS = ("TINYINT", "SMALLINT", "INTEGER", "BIGINT", "HUGEINT", "UTINYINT", "USMALLINT",
            "UINTEGER", "UBIGINT", "FLOAT", "DOUBLE", "DECIMAL")


def _native(raw_type: str, cdm_type: str) -> bool:
    """Whether a value stored as ``raw_type`` is cast as it is (else it is read as text)."""
    if cdm_type == "DATE":
        return raw_type.startswith(("DATE", "TIMESTAMP"))
    if cdm_type == "VARCHAR":
        return True
    return raw_type.startswith(_NUMBERS)


def expected(cdm_type: str, date_format: str | None) -> str:
    """The format a text value of ``cdm_type`` must have, in words."""
    if cdm_type == "DATE":
        return f"a date written as {date_format!r}" if date_format else \
            "an ISO date, YYYY-MM-DD (the OMOP CDM convention)"
    return EXPECTED[cdm_type]


def present_sql(raw: str, raw_type: str, cdm_type: str) -> str:
    """DuckDB predicate: ``raw`` holds a value (blank text counts as missing)."""
    if _native(raw_type, cdm_type):
        return f"{raw} IS NOT NULL"
    return f"nullif(trim(CAST({raw} AS VARCHAR)), '') IS NOT NULL"


def value_sql(raw: str, raw_type: str, cdm_type: str, date_format: str | None) -> str:
    """DuckDB expression: ``raw`` (of DuckDB type ``raw_type``) as ``cdm_type``; NULL when it
    is missing or unreadable."""
    if _native(raw_type, cdm_type):
        return f"TRY_CAST({raw} AS {cdm_type})"
    text = f"nullif(trim(CAST({raw} AS VARCHAR)), '')"
    if cdm_type != "DATE":
        return f"TRY_CAST({text} AS {cdm_type})"
    if date_format:
        escaped = date_format.replace("'", "''")
        return f"CAST(TRY_STRPTIME({text}, '{escaped}') AS DATE)"
    return (f"CASE WHEN regexp_full_match({text}, '{ISO_DATE}') "
            f"THEN TRY_CAST(left({text}, 10) AS DATE) END")


def unreadable_sql(raw: str, raw_type: str, cdm_type: str, date_format: str | None) -> str:
    """DuckDB predicate: ``raw`` holds a value that cannot be read as ``cdm_type``."""
    return (f"({present_sql(raw, raw_type, cdm_type)} AND "
            f"{value_sql(raw, raw_type, cdm_type, date_format)} IS NULL)")


__all__ = ["EXPECTED", "ISO_DATE", "expected", "present_sql", "unreadable_sql", "value_sql"]
