"""How close synthetic (or public) transfer rows are to a reference table.

Per column: total variation distance for categorical and binary columns (missing counted
as its own value, unknown categories as one value), Kolmogorov–Smirnov statistic for
numeric columns (non-missing values). Overall: pairwise-correlation error, the mean absolute
difference between the correlation matrices (upper triangle, off-diagonal) of the numeric,
binary and one-hot categorical columns, with missing numbers filled by the column mean and
constant columns given zero correlation.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
from scipy.stats import ks_2samp

from medistill.data.schema import BINARY, CATEGORICAL, TableSchema

_MISSING = "<missing>"
_UNKNOWN = "<unknown>"


def _labels(values: pd.Series, kind: str, categories: tuple[str, ...]) -> pd.Series:
    if kind == BINARY:
        numbers = pd.to_numeric(values, errors="coerce")
        return numbers.map(lambda v: _MISSING if pd.isna(v) else str(float(v))).astype(object)
    known = set(categories)
    return values.map(lambda v: _MISSING if v is None or (isinstance(v, float) and np.isnan(v))
                      else (str(v) if str(v) in known else _UNKNOWN)).astype(object)


def total_variation(a: pd.Series, b: pd.Series) -> float:
    """½·Σ|p − q| over the values of two label series."""
    p = a.value_counts(normalize=True)
    q = b.value_counts(normalize=True)
    index = p.index.union(q.index)
    return float(0.5 * np.abs(p.reindex(index, fill_value=0) - q.reindex(index, fill_value=0)).sum())


def ks_statistic(a: pd.Series, b: pd.Series) -> float:
    """Two-sample Kolmogorov–Smirnov statistic of the non-missing values (1.0 if one is empty)."""
    x = pd.to_numeric(a, errors="coerce").dropna().to_numpy(dtype=float)
    y = pd.to_numeric(b, errors="coerce").dropna().to_numpy(dtype=float)
    if len(x) == 0 or len(y) == 0:
        return 0.0 if len(x) == len(y) else 1.0
    return float(ks_2samp(x, y).statistic)


def _design(frame: pd.DataFrame, schema: TableSchema) -> np.ndarray:
    blocks = []
    for spec in schema.features:
        if spec.kind == CATEGORICAL:
            values = frame[spec.name].astype(object)
            blocks.extend((values == c).to_numpy(dtype=float) for c in spec.categories)
        else:
            x = pd.to_numeric(frame[spec.name], errors="coerce").to_numpy(dtype=float)
            fill = np.nanmean(x) if np.isfinite(x).any() else 0.0
            blocks.append(np.where(np.isnan(x), fill, x))
    return np.column_stack(blocks)


def _correlation(x: np.ndarray) -> np.ndarray:
    centred = x - x.mean(0)
    scale = np.sqrt((centred ** 2).sum(0))
    safe = np.where(scale > 0, scale, 1.0)
    corr = (centred.T @ centred) / np.outer(safe, safe)
    constant = scale == 0
    corr[constant, :] = 0.0
    corr[:, constant] = 0.0
    return corr


def correlation_error(real: pd.DataFrame, synthetic: pd.DataFrame, schema: TableSchema) -> float:
    """Mean |corr_real − corr_synthetic| over the off-diagonal upper triangle."""
    a, b = _correlation(_design(real, schema)), _correlation(_design(synthetic, schema))
    upper = np.triu_indices(a.shape[0], k=1)
    return float(np.mean(np.abs(a[upper] - b[upper]))) if len(upper[0]) else 0.0


def fidelity_report(real: pd.DataFrame, synthetic: pd.DataFrame, schema: TableSchema) -> dict:
    """``{"columns": {name: {"metric", "value"}}, "mean_tv", "mean_ks", "max_ks",
    "correlation_error"}``; ``mean_*``/``max_*`` are ``None`` when no column has the metric."""
    columns: dict[str, dict] = {}
    for spec in schema.features:
        if spec.kind == "numeric":
            columns[spec.name] = {"metric": "ks",
                                  "value": ks_statistic(real[spec.name], synthetic[spec.name])}
        else:
            columns[spec.name] = {"metric": "tv", "value": total_variation(
                _labels(real[spec.name], spec.kind, spec.categories),
                _labels(synthetic[spec.name], spec.kind, spec.categories))}
    tv = [c["value"] for c in columns.values() if c["metric"] == "tv"]
    ks = [c["value"] for c in columns.values() if c["metric"] == "ks"]
    return {"columns": columns,
            "mean_tv": float(np.mean(tv)) if tv else None,
            "mean_ks": float(np.mean(ks)) if ks else None,
            "max_ks": float(np.max(ks)) if ks else None,
            "correlation_error": correlation_error(real, synthetic, schema)}


def fidelity_summary(real: pd.DataFrame, synthetic: pd.DataFrame, schema: TableSchema, *,
                     max_rows: int = 5000) -> dict:
    """:func:`fidelity_report` on at most ``max_rows`` leading rows of each table (both come
    in random order), rounded for the report, with the worst column named."""
    full = fidelity_report(real.head(max_rows), synthetic.head(max_rows), schema)
    columns = {name: {"metric": c["metric"], "value": round(c["value"], 4)}
               for name, c in full["columns"].items()}
    worst = max(columns, key=lambda name: columns[name]["value"]) if columns else None
    return {**{k: (round(v, 4) if isinstance(v, float) else v) for k, v in full.items()
               if k != "columns"},
            "columns": columns, "worst_column": worst}


__all__ = ["correlation_error", "fidelity_report", "fidelity_summary", "ks_statistic",
           "total_variation"]
