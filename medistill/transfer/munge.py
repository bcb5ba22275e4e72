"""MUNGE-style transfer rows made from sensitive rows (Bucilă, Caruana, Niculescu-Mizil 2006).

Each synthetic row starts from a sensitive row and its nearest neighbour; every attribute
is, with probability ``swap_probability``, taken from the neighbour (categorical and binary)
or drawn from a normal around the neighbour's value with sd ``|a − b| / local_variance``
(numeric). The rows are perturbed copies of real patients: there is **no formal privacy
guarantee** (ε = ∞). It runs only with ``allow_nonprivate=True`` and the ledger then
records a ``NonPrivateDpEvent``.
"""

from __future__ import annotations

import dp_accounting as dpa
import numpy as np
import pandas as pd
from sklearn.neighbors import NearestNeighbors

from medistill.data.schema import CATEGORICAL, TableSchema
from medistill.errors import ConfigError


def privacy_events() -> dpa.DpEvent:
    """MUNGE has no DP guarantee: the ledger records ε = ∞."""
    return dpa.NonPrivateDpEvent()


def _distance_space(features: pd.DataFrame, schema: TableSchema) -> np.ndarray:
    blocks = []
    for spec in schema.features:
        values = features[spec.name]
        if spec.kind == CATEGORICAL:
            codes = pd.Categorical(values, categories=list(spec.categories)).codes
            blocks.append(np.eye(len(spec.categories) + 1)[np.where(codes < 0, len(spec.categories), codes)])
        else:
            x = pd.to_numeric(values, errors="coerce").to_numpy(dtype=float)
            mean = np.nanmean(x) if np.isfinite(x).any() else 0.0
            sd = np.nanstd(x) if np.isfinite(x).any() else 1.0
            x = (np.where(np.isnan(x), mean, x) - mean) / (sd if sd > 0 else 1.0)
            blocks.append(x[:, None])
    return np.hstack(blocks)


def munge(features: pd.DataFrame, schema: TableSchema, *, n: int, swap_probability: float,
          local_variance: float, rng: np.random.Generator, allow_nonprivate: bool) -> pd.DataFrame:
    """``n`` MUNGE rows from sensitive ``features``; refused unless ``allow_nonprivate``."""
    if allow_nonprivate is not True:
        raise ConfigError(
            "MUNGE transfer data is made by perturbing sensitive patients' rows and has no "
            "formal privacy guarantee (ε = ∞); it is refused by default.",
            hint="Set privacy.allow_nonprivate: true to use it anyway; the report will then "
                 "say first that the student has no privacy guarantee.")
    if not 0.0 <= swap_probability <= 1.0:
        raise ValueError("The 'swap_probability' parameter must be a float in the range [0, 1]. "
                         f"Got {swap_probability!r} instead.")
    if not local_variance > 0:
        raise ValueError("The 'local_variance' parameter must be a float in the range (0, inf). "
                         f"Got {local_variance!r} instead.")
    if len(features) < 2:
        raise ValueError(f"MUNGE needs at least 2 rows. Got {len(features)}.")
    frame = features[schema.feature_names].reset_index(drop=True)
    space = _distance_space(frame, schema)
    _, neighbours = NearestNeighbors(n_neighbors=2).fit(space).kneighbors(space)
    nearest = neighbours[:, 1]
    start = rng.integers(0, len(frame), size=int(n))
    partner = nearest[start]
    out = {}
    for spec in schema.features:
        swap = rng.random(len(start)) < swap_probability
        if spec.kind == CATEGORICAL:
            own = frame[spec.name].to_numpy(dtype=object)
            out[spec.name] = np.where(swap, own[partner], own[start])
            continue
        values = pd.to_numeric(frame[spec.name], errors="coerce").to_numpy(dtype=float)
        a, b = values[start], values[partner]
        if spec.kind == "numeric":
            sd = np.abs(a - b) / local_variance
            drawn = rng.normal(np.nan_to_num(b), np.nan_to_num(sd))
            drawn[np.isnan(b)] = np.nan
        else:
            drawn = b
        out[spec.name] = np.where(swap, drawn, a)
    return pd.DataFrame(out)


__all__ = ["munge", "privacy_events"]
