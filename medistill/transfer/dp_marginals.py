"""Differentially private one-way marginals of the sensitive table on a public grid.

Each patient contributes one row, so one count per column (including a 'missing' bin):
the concatenated histogram has L2 sensitivity √(number of columns) for add/remove of a
patient. Gaussian noise with standard deviation ``noise_multiplier·√d`` is one
``GaussianDpEvent(noise_multiplier)`` in the ledger. The bin edges are fixed in advance
(an asinh-spaced grid over ±10⁶), never read from the data.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import dp_accounting as dpa
import numpy as np
import pandas as pd

from medistill.data.schema import BINARY, CATEGORICAL, TableSchema

GRID_EDGES = np.sinh(np.linspace(math.asinh(-1e6), math.asinh(1e6), 801))


@dataclass(frozen=True)
class NoisyMarginal:
    """A released marginal: bin probabilities (last bin = missing) and what the bins are."""

    column: str
    kind: str
    probabilities: np.ndarray       # sums to 1; last entry is the share of missing values
    categories: tuple[str, ...] = ()

    @property
    def missing_rate(self) -> float:
        return float(self.probabilities[-1])


def _counts(values: pd.Series, kind: str, categories: tuple[str, ...]) -> np.ndarray:
    missing = values.isna().to_numpy()
    if kind == CATEGORICAL:
        codes = pd.Categorical(values, categories=list(categories)).codes
        known = np.bincount(codes[codes >= 0], minlength=len(categories))
        unknown = int((codes < 0).sum())  # missing or outside the public list
        return np.append(known, unknown).astype(float)
    numbers = values.to_numpy(dtype=float)
    if kind == BINARY:
        ones = np.nansum(numbers == 1)
        zeros = np.sum((numbers != 1) & ~missing)
        return np.array([zeros, ones, missing.sum()], dtype=float)
    finite = numbers[~missing]
    bins = np.clip(np.searchsorted(GRID_EDGES, finite, side="right") - 1, 0, len(GRID_EDGES) - 2)
    return np.append(np.bincount(bins, minlength=len(GRID_EDGES) - 1), missing.sum()).astype(float)


def marginals_event(noise_multiplier: float) -> dpa.DpEvent:
    """The ledger event of one release of all marginals."""
    return dpa.GaussianDpEvent(noise_multiplier)


def release_marginals(features: pd.DataFrame, schema: TableSchema, columns: list[str], *,
                      noise_multiplier: float, rng: np.random.Generator) -> dict[str, NoisyMarginal]:
    """Noisy marginals of ``columns`` from one row per patient (the caller guarantees it)."""
    if not columns:
        return {}
    std = noise_multiplier * math.sqrt(len(columns))
    released = {}
    for column in columns:
        spec = schema.feature(column)
        noisy = _counts(features[column], spec.kind, spec.categories)
        noisy = np.clip(noisy + rng.normal(0.0, std, size=noisy.shape), 0.0, None)
        if noisy.sum() <= 0:
            noisy = np.ones_like(noisy)
        released[column] = NoisyMarginal(column, spec.kind, noisy / noisy.sum(), spec.categories)
    return released


def sample_marginal(marginal: NoisyMarginal, n: int, rng: np.random.Generator) -> np.ndarray:
    """Draw ``n`` values from a released marginal (missing values as NaN / None)."""
    probs = marginal.probabilities
    bins = rng.choice(len(probs), size=n, p=probs)
    missing = bins == len(probs) - 1
    if marginal.kind == CATEGORICAL:
        cats = np.array(list(marginal.categories) + [None], dtype=object)
        return cats[bins]
    if marginal.kind == BINARY:
        out = bins.astype(float)
    else:
        lo, hi = GRID_EDGES[np.minimum(bins, len(GRID_EDGES) - 2)], \
            GRID_EDGES[np.minimum(bins + 1, len(GRID_EDGES) - 1)]
        out = rng.uniform(lo, hi)
    out[missing] = np.nan
    return out


__all__ = ["GRID_EDGES", "NoisyMarginal", "marginals_event", "release_marginals",
           "sample_marginal"]
