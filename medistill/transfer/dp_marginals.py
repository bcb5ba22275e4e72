"""Differentially private one-way marginals of the sensitive table on a public grid.

Each patient contributes one row, so one count per column (including a 'missing' bin):
the concatenated histogram has L2 sensitivity √(number of columns) for add/remove of a
patient. Gaussian noise with standard deviation ``noise_multiplier·√d`` is one
``GaussianDpEvent(noise_multiplier)`` in the ledger. The bin edges are fixed in advance
(an asinh-spaced grid over ±10⁶), never read from the data.

Cleaning a numeric histogram is post-processing of the noisy counts: of 800 bins almost
all are empty, and clipping their noise at zero would spread a few hundred noise-standard-
deviations of spurious mass over ±10⁶ (transfer values far outside any clinical range).
So only bins that stand out of the noise are kept; when those hold too
little of what a coarser view finds — a small table under strong noise — neighbouring bins
are merged (a merged bin's signal grows with its width, its noise only with the square
root); see :func:`clean_numeric_histogram`.
"""

from __future__ import annotations

import math
from statistics import NormalDist
from dataclasses import dataclass

import dp_accounting as dpa
import numpy as np
import pandas as pd

from medistill.data.schema import BINARY, CATEGORICAL, TableSchema

GRID_EDGES = np.sinh(np.linspace(math.asinh(-1e6), math.asinh(1e6), 801))
_STRAY_BINS = 0.05   # expected noise-only bins kept per column and merge level
_MIN_KEPT = 0.8
_MAX_MERGE = 64     # 64 fine bins ≈ a factor of 10 in value near 100


@dataclass(frozen=True)
class NoisyMarginal:
    """A released marginal: bin probabilities (last bin = missing) and what the bins are."""

    column: str
    kind: str
    probabilities: np.ndarray       # sums to 1; last entry is the share of missing values
    categories: tuple[str, ...] = ()
    informative: bool = True        # False: no bin stood above the noise (see the cleaning)

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
        counts = _counts(features[column], spec.kind, spec.categories)
        noisy = counts + rng.normal(0.0, std, size=counts.shape)
        informative = True
        if spec.kind in (BINARY, CATEGORICAL):
            noisy = np.clip(noisy, 0.0, None)
        else:
            weights, informative = clean_numeric_histogram(noisy[:-1], std)
            noisy = np.append(weights, max(noisy[-1], 0.0))
        if noisy.sum() <= 0:
            noisy = np.ones_like(noisy)
        released[column] = NoisyMarginal(column, spec.kind, noisy / noisy.sum(), spec.categories,
                                         informative)
    return released


def clean_numeric_histogram(noisy: np.ndarray, std: float, *,
                            stray_bins: float = _STRAY_BINS) -> tuple[np.ndarray, bool]:
    """Non-negative bin weights on the fine grid from unclipped noisy counts (post-processing).

    At each merge level (neighbouring fine bins summed in groups of 1, 2, 4, … ``_MAX_MERGE``;
    noise std grows by √width) the bins above z noise standard deviations are kept, z chosen
    so that a level keeps a noise-only bin with probability about ``stray_bins``.
    The finest level whose kept count reaches ``_MIN_KEPT`` of the best level's is used; a kept
    merged bin spreads its count evenly over its fine bins. When no bin stands out at any
    level, the largest coarsest bin is kept alone, so a column is never empty or spread
    over the whole ±10⁶ grid; the second value returned is then ``False`` (uninformative).
    """
    n_fine = len(noisy)
    levels = []
    width = 1
    while width <= _MAX_MERGE:
        groups = -(-n_fine // width)
        padded = np.zeros(groups * width)
        padded[:n_fine] = noisy
        merged = padded.reshape(groups, width).sum(axis=1)
        # Bonferroni over this level's bins: z ≈ 3.8 for 800 bins, 2.7 for 13.
        z = NormalDist().inv_cdf(1.0 - stray_bins / groups)
        keep = merged > z * std * math.sqrt(width)
        levels.append((width, merged, keep, float(merged[keep].sum())))
        width *= 2
    best = max(kept for *_, kept in levels)
    informative = best > 0
    if informative:
        width, merged, keep, _ = next(level for level in levels if level[3] >= _MIN_KEPT * best)
    else:
        width, merged, keep, _ = levels[-1]
        keep = np.zeros_like(keep)
        keep[int(np.argmax(merged))] = True
    weights = np.where(keep, np.maximum(merged, 1e-12), 0.0) / width
    return np.repeat(weights, width)[:n_fine], informative


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


__all__ = ["GRID_EDGES", "NoisyMarginal", "clean_numeric_histogram", "marginals_event",
           "release_marginals", "sample_marginal"]
