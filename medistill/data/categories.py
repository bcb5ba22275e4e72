"""Category lists that reach the student: declared, or chosen by a charged DP threshold.

A category list read from the sensitive table is a channel: one patient with a rare
diagnosis would put that diagnosis into the model, its metadata and the model card. So a
data-derived category is kept only when its **noisy count of distinct training patients**
clears a threshold (Gaussian partition selection; Korolova et al. 2009, Gopi et al. 2020):

- each training patient contributes one row (the DP stages' keyed choice), so adding a
  patient adds 1 to one category of each of the d categorical columns: L2 sensitivity √d;
  Gaussian noise of std σ·√d per count makes the released counts ``GaussianDpEvent(σ)``;
- a category held only by the added patient (count 1) is released with probability
  Φ̄((τ − 1)/(σ√d)) per column; τ is set so that the d columns together add at most
  ``delta_share · δ`` to δ (the ledger carries it as ``threshold_delta``).

Declared lists (``transfer.categories``) override the data everywhere (teachers,
preprocessing, ONNX) and cost nothing.
"""

from __future__ import annotations

from dataclasses import dataclass, replace

import dp_accounting as dpa
import numpy as np
import pandas as pd
from scipy.stats import norm

from medistill.data.schema import CATEGORICAL, FeatureSpec, TableSchema

# Noise multiplier of the category counts: a Gaussian with σ = 8 adds μ = 1/8 to the
# Gaussian part of the composition (a few hundredths of ε at ε = 3).
CATEGORY_NOISE = 8.0
DELTA_SHARE = 0.01


@dataclass(frozen=True)
class CategorySelection:
    """The kept categories per column, what the selection cost, and which were declared."""

    categories: dict[str, tuple[str, ...]]
    declared: tuple[str, ...]
    event: dpa.DpEvent | None
    threshold: float
    threshold_delta: float


def threshold_for(n_columns: int, noise: float, delta: float, share: float = DELTA_SHARE) -> float:
    """The count threshold τ at which a category held by one patient is released, over all
    ``n_columns`` columns together, with probability at most ``share · delta``."""
    std = noise * np.sqrt(n_columns)
    return 1.0 + std * float(norm.isf(share * delta / n_columns))


def select_categories(features: pd.DataFrame, schema: TableSchema, *,
                      declared: dict[str, tuple[str, ...]], delta: float,
                      rng: np.random.Generator, noise: float = CATEGORY_NOISE,
                      floor: int = 1) -> CategorySelection:
    """Choose each categorical column's categories from ``features`` (one row per training
    patient). Declared columns take their declared list; the others keep the categories whose
    noisy patient count reaches the threshold (at least ``floor``)."""
    columns = [f.name for f in schema.features if f.kind == CATEGORICAL]
    derived = [c for c in columns if c not in declared]
    chosen = {c: tuple(str(v) for v in declared[c]) for c in columns if c in declared}
    if not derived:
        return CategorySelection(chosen, tuple(chosen), None, 0.0, 0.0)
    tau = max(float(floor), threshold_for(len(derived), noise, delta))
    std = noise * np.sqrt(len(derived))
    for column in derived:
        counts = features[column].dropna().astype(str).value_counts()
        noisy = counts.to_numpy(float) + rng.normal(0.0, std, size=len(counts))
        chosen[column] = tuple(sorted(counts.index[noisy >= tau]))
    leak = len(derived) * float(norm.sf((tau - 1.0) / std))
    return CategorySelection(chosen, tuple(c for c in columns if c in declared),
                             dpa.GaussianDpEvent(noise), tau, leak)


def apply_categories(features: pd.DataFrame, schema: TableSchema,
                     categories: dict[str, tuple[str, ...]]) -> tuple[pd.DataFrame, TableSchema]:
    """The table and schema with each categorical column restricted to ``categories``
    (other values become missing, which the models treat as unknown); a column left with no
    category is dropped."""
    out = features.copy()
    specs = []
    for spec in schema.features:
        if spec.kind == CATEGORICAL and spec.name in categories:
            kept = categories[spec.name]
            if not kept:          # nothing passed the threshold: the column carries nothing
                out = out.drop(columns=[spec.name])
                continue
            values = out[spec.name]
            out[spec.name] = values.where(values.astype(str).isin(kept) & values.notna(), None)
            spec = FeatureSpec(spec.name, CATEGORICAL, kept)
        specs.append(spec)
    return out, replace(schema, features=tuple(specs))


__all__ = ["CATEGORY_NOISE", "CategorySelection", "apply_categories", "select_categories",
           "threshold_for"]
