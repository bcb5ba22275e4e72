"""Align a public table (another hospital's release, a registry) to the sensitive schema.

The public table is not sensitive for *this* guarantee, but its individuals get their own
DP-SGD guarantee downstream. Alignment reads only the public table and the schema (column
names, kinds, public category lists); it never reads sensitive rows.
"""

from __future__ import annotations

import difflib
from typing import Literal

import numpy as np
import pandas as pd

from medistill.data.schema import BINARY, CATEGORICAL, TableSchema, coerce_numeric
from medistill.errors import DataError

_TRUE = {"true", "yes", "y", "t"}
_FALSE = {"false", "no", "n", "f"}


def _rename(public: pd.DataFrame, column_map: dict[str, str], schema: TableSchema,
            source: str) -> pd.DataFrame:
    unknown_keys = [k for k in column_map if k not in public.columns]
    if unknown_keys:
        raise DataError(f"{source}: transfer.column_map names public columns "
                        f"{unknown_keys} that the public table does not have.",
                        hint=f"Its columns are {list(public.columns)[:20]}.")
    unknown_values = [v for v in column_map.values() if v not in schema.feature_names]
    if unknown_values:
        raise DataError(f"{source}: transfer.column_map maps to {unknown_values}, which are "
                        "not feature columns of the sensitive schema.",
                        hint=f"The features are {schema.feature_names}.")
    renamed = public.rename(columns=column_map)
    duplicated = sorted({c for c in renamed.columns if list(renamed.columns).count(c) > 1})
    if duplicated:
        raise DataError(f"{source}: after applying transfer.column_map, columns {duplicated} "
                        "appear more than once.",
                        hint="Map each schema column from exactly one public column.")
    return renamed


def _binary(series: pd.Series, name: str, source: str) -> tuple[pd.Series, int]:
    if series.dtype == object or pd.api.types.is_string_dtype(series):
        text = series.astype("string").str.strip().str.lower()
        mapped = text.where(~text.isin(_TRUE), "1").where(~text.isin(_FALSE), "0")
        series = mapped.astype(object).where(series.notna(), None)
    values = coerce_numeric(series.to_frame(name), name, source=source)
    bad = values.notna() & ~values.isin([0.0, 1.0])
    return values.where(~bad, np.nan).astype(float), int(bad.sum())


def _categorical(series: pd.Series, categories: tuple[str, ...]) -> tuple[pd.Series, dict[str, int]]:
    present = series.notna()
    text = series.astype("string").str.strip()
    exact = set(categories)
    folded = {c.lower(): c for c in categories}
    out, unseen = [], {}
    for value, ok in zip(text.to_numpy(dtype=object), present.to_numpy()):
        if not ok or value is pd.NA or value == "":
            out.append(None)
        elif value in exact:
            out.append(value)
        elif value.lower() in folded:
            out.append(folded[value.lower()])
        else:
            out.append(None)
            unseen[value] = unseen.get(value, 0) + 1
    return pd.Series(out, index=series.index, dtype=object), unseen


def align_public_table(public: pd.DataFrame, schema: TableSchema, *,
                       column_map: dict[str, str] | None = None,
                       missing: Literal["impute", "refuse"] = "refuse",
                       source: str) -> tuple[pd.DataFrame, list[str]]:
    """Return ``public`` with exactly the schema's feature columns, and notes on what changed.

    ``column_map`` renames public columns to schema names (``{public_name: schema_name}``).
    Numeric and binary columns become float (a non-number raises :class:`DataError` naming
    the cell; binary values other than 0/1 become missing and are counted). Categorical
    values are matched to the schema's public category list (exactly, then ignoring case);
    unseen categories become ``None`` (unknown) and are counted. Schema columns the public
    table lacks are refused (``missing="refuse"``) or added all-missing for the student's
    imputer (``missing="impute"``). Extra public columns (labels, identifiers) are dropped.
    """
    if missing not in ("impute", "refuse"):
        raise ValueError(f"The 'missing' parameter must be 'impute' or 'refuse'. Got {missing!r} instead.")
    if public.shape[0] == 0:
        raise DataError(f"{source}: the public table has no rows.",
                        hint="Point transfer.path at a non-empty table.")
    frame = _rename(public, dict(column_map or {}), schema, source)
    notes: list[str] = []
    absent = [name for name in schema.feature_names if name not in frame.columns]
    if absent and missing == "refuse":
        unused = [c for c in frame.columns if c not in schema.feature_names]
        guesses = {a: difflib.get_close_matches(a, [str(u) for u in unused], n=1, cutoff=0.5)
                   for a in absent}
        suggestion = {g[0]: a for a, g in guesses.items() if g}
        example = suggestion or {"<public column>": absent[0]}
        raise DataError(
            f"{source}: the public table lacks the feature columns {absent} of the sensitive "
            f"schema (its unused columns are {unused[:20]}).",
            hint=f"Map them with transfer.column_map, e.g. {example}, or set "
                 "transfer.missing: impute to add them as all-missing columns for the "
                 "student's imputer.")
    extra = [str(c) for c in frame.columns if c not in schema.feature_names]
    if extra:
        notes.append(f"{source}: dropped {len(extra)} column(s) not in the schema: "
                     f"{', '.join(extra[:10])}{' …' if len(extra) > 10 else ''}.")
    columns: dict[str, pd.Series] = {}
    for spec in schema.features:
        name = spec.name
        if name in absent:
            columns[name] = pd.Series([None] * len(frame), dtype=object) if spec.kind == CATEGORICAL \
                else pd.Series(np.full(len(frame), np.nan))
            notes.append(f"{source}: column '{name}' is missing; added as all-missing "
                         "(the student's imputer fills it).")
            continue
        series = frame[name].reset_index(drop=True)
        if spec.kind == CATEGORICAL:
            values, unseen = _categorical(series, spec.categories)
            if unseen:
                shown = ", ".join(f"'{k}' ({v})" for k, v in sorted(unseen.items())[:8])
                notes.append(f"{source}: column '{name}': {sum(unseen.values())} row(s) hold "
                             f"categories not in the schema, now unknown: {shown}.")
            never = [c for c in spec.categories if c not in set(values.dropna())]
            if never:
                notes.append(f"{source}: column '{name}': schema categories absent from the "
                             f"public table: {', '.join(never)}.")
        elif spec.kind == BINARY:
            values, bad = _binary(series, name, source)
            if bad:
                notes.append(f"{source}: column '{name}' is binary; {bad} value(s) other than "
                             "0/1 became missing.")
        else:
            values = coerce_numeric(series.to_frame(name), name, source=source).astype(float)
        columns[name] = values
    aligned = pd.DataFrame(columns)
    return aligned, notes


__all__ = ["align_public_table"]
