"""Public numeric ranges for the DP teachers, bought with noisy histograms that zoom in.

A DP teacher needs a range for every numeric feature and may not read it off the data
(min/max would name the most extreme patients). Where the user declared none, the range is
estimated in ``rounds`` Gaussian releases on the training patients (ledger stage
``dp_teacher_ranges``):

1. **Locate** — a noisy histogram of every column on a fixed grid of 232 bins, evenly
   spaced in asinh(value) over ±10⁶ (a bin is a factor of ≈1.13 wide above 1), public and
   chosen before seeing data;
2. **Zoom** — each later round spreads ``ZOOM_BINS`` bins, equal in asinh(value), over the
   range the previous round found (widened by one of its bins each side) and counts the
   values again, those outside clipped into the end bins. A calendar year near 1985 is one
   250-year bin in round 1 and a 6-year one in round 2.

Each round every patient adds 1 to one bin of each of the d histograms (missing values
count nowhere): L2 sensitivity √d, noise std ``z·√d`` per bin, one ``GaussianDpEvent(z)``
per round. With ``noise_multiplier`` z for the whole release, each of k rounds uses z·√k,
so the rounds compose to exactly one Gaussian of multiplier z (each round is
1/(z√k)-GDP, k of them √k/(z√k) = 1/z-GDP; Dong, Roth & Su 2022, Cor. 3.3) — the event
the plan budgeted.

Reading a range off a noisy histogram is post-processing: only bins that stand out of the
noise are kept (:func:`~medistill.transfer.dp_marginals.clean_numeric_histogram`, which
merges neighbours when single bins are too weak), the range runs between the ``lower`` and
``upper`` quantiles of the kept mass, and is then widened by ``RANGE_MARGIN`` of its asinh
width each side, because keeping only bins above the noise cuts thin tails (a normal
column's kept bins can end near ±1 standard deviation at 600 patients; widened, its range
held the central 90 % of the unit test's normal columns in all of 300 fresh draws). Releasing the coarse grid directly,
rather than an 800-bin grid merged after the fact, keeps the noise of a coarse bin at one
noise draw instead of the sum of the many it would merge (√64 = 8 times less for a factor
of ten): at 400 patients and 30 columns the old release missed whole columns.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass, field, replace

import dp_accounting as dpa
import numpy as np
import pandas as pd

from medistill.transfer.dp_marginals import clean_numeric_histogram

LOCATE_EDGES = np.sinh(np.linspace(math.asinh(-1e6), math.asinh(1e6), 233))
ZOOM_BINS = 64
DEFAULT_ROUNDS = 2
ZOOM_MARGIN = 0.25      # each side, in parts of the located range's asinh width
RANGE_MARGIN = 0.5     # the released range's widening, each side, in the same parts
# Expected noise-only bins kept per column and merge level: a stray bin far from the data
# would stretch a range, so ranges ask for 10 times fewer than the transfer marginals.
STRAY_BINS = 0.005


@dataclass(frozen=True)
class ColumnRange:
    """One column's released range and whether any bin stood above the noise; ``edges`` and
    ``weights`` are the cleaned noisy histogram of the round that set it (post-processing of
    the release, so sampling from it is free)."""

    low: float
    high: float
    informative: bool
    rounds_used: int
    edges: np.ndarray | None = field(default=None, repr=False, compare=False)
    weights: np.ndarray | None = field(default=None, repr=False, compare=False)


def ranges_event(noise_multiplier: float, rounds: int = DEFAULT_ROUNDS) -> dpa.DpEvent:
    """The ledger event of one :func:`release_ranges` call: ``rounds`` Gaussians of
    multiplier z·√rounds (together exactly one Gaussian of multiplier z)."""
    per_round = noise_multiplier * math.sqrt(rounds)
    return dpa.ComposedDpEvent([dpa.GaussianDpEvent(per_round)] * rounds)


def _quantile_range(edges: np.ndarray, weights: np.ndarray, lower: float,
                    upper: float) -> tuple[float, float]:
    """The bin edges around the ``lower`` and ``upper`` quantiles of the kept mass."""
    cdf = np.cumsum(weights) / weights.sum()
    lo_bin = int(np.searchsorted(cdf, lower, side="right"))
    hi_bin = int(np.searchsorted(cdf, upper, side="left"))
    hi_bin = min(max(hi_bin, lo_bin), len(weights) - 1)
    return float(edges[lo_bin]), float(edges[hi_bin + 1])


def _zoom_edges(low: float, high: float) -> np.ndarray:
    """``ZOOM_BINS`` bins over [low, high] widened by ``ZOOM_MARGIN`` each side, equal in
    asinh (nearly linear over a narrow range like calendar years; geometric over a heavy
    tail, whose sparse far bins would otherwise each drown in the noise). The margin lets
    the zoom find tails the locating round's cleaning cut."""
    a, b = math.asinh(low), math.asinh(high)
    margin = ZOOM_MARGIN * (b - a)
    return np.sinh(np.linspace(a - margin, b + margin, ZOOM_BINS + 1))


def _counts(values: np.ndarray, edges: np.ndarray) -> np.ndarray:
    """One count per value; values outside the grid go to its end bins."""
    bins = np.searchsorted(edges, values, side="right") - 1
    return np.bincount(np.clip(bins, 0, len(edges) - 2), minlength=len(edges) - 1).astype(float)


def release_ranges(features: pd.DataFrame, columns: list[str], *, noise_multiplier: float,
                   rng: np.random.Generator, rounds: int = DEFAULT_ROUNDS,
                   lower: float = 0.01, upper: float = 0.99) -> dict[str, ColumnRange]:
    """Noisy ranges of the numeric ``columns`` from one row per patient (the caller
    guarantees it), costing :func:`ranges_event` (``noise_multiplier``, ``rounds``).

    ``rng`` must be the run's fresh-entropy privacy generator. A column whose first round
    shows no bin above the noise keeps the largest coarse bin (``informative`` False);
    a later round that shows nothing keeps the previous round's range.
    """
    if rounds < 1:
        raise ValueError(f"rounds must be at least 1. Got {rounds} instead.")
    if not 0 <= lower < upper <= 1:
        raise ValueError(f"lower and upper must satisfy 0 <= lower < upper <= 1. Got {lower}, "
                         f"{upper} instead.")
    if not columns:
        return {}
    std = noise_multiplier * math.sqrt(rounds) * math.sqrt(len(columns))
    values = {c: pd.to_numeric(features[c], errors="coerce").to_numpy(dtype=float)
              for c in columns}
    values = {c: v[np.isfinite(v)] for c, v in values.items()}
    found: dict[str, ColumnRange] = {}
    grids = {c: LOCATE_EDGES for c in columns}
    for round_ in range(rounds):
        # Every column is counted in every round (the noise is drawn whatever was found),
        # so the release is the same k Gaussians on any data.
        for column in columns:
            edges = grids[column]
            noisy = _counts(values[column], edges) + rng.normal(0.0, std, len(edges) - 1)
            weights, informative = clean_numeric_histogram(noisy, std, stray_bins=STRAY_BINS)
            previous = found.get(column)
            if round_ == 0:
                low, high = _quantile_range(edges, weights, lower, upper)
                found[column] = ColumnRange(low, high, informative, 1, edges, weights)
            elif informative and previous.informative:
                low, high = _quantile_range(edges, weights, lower, upper)
                found[column] = ColumnRange(low, high, True, round_ + 1, edges, weights)
            current = found[column]
            grids[column] = _zoom_edges(current.low, current.high)
    return {name: _widened(r) for name, r in found.items()}


def _widened(found: ColumnRange) -> ColumnRange:
    a, b = math.asinh(found.low), math.asinh(found.high)
    margin = RANGE_MARGIN * (b - a)
    return replace(found, low=math.sinh(a - margin), high=math.sinh(b + margin))


def sample_range(found: ColumnRange, n: int, rng: np.random.Generator) -> np.ndarray:
    """``n`` values drawn from a released range's noisy histogram (a bin by its cleaned
    weight, then uniformly within it), or uniformly over the range when no bin stood above
    the noise or no histogram is kept. Post-processing: ``rng`` may be seeded."""
    if not found.informative or found.weights is None or found.weights.sum() <= 0:
        return rng.uniform(found.low, found.high, n)
    bins = rng.choice(len(found.weights), size=n, p=found.weights / found.weights.sum())
    return rng.uniform(found.edges[bins], found.edges[bins + 1])


def bounds_of(ranges: Mapping[str, ColumnRange]) -> dict[str, tuple[float, float]]:
    """``{column: (low, high)}`` of released ranges."""
    return {name: (r.low, r.high) for name, r in ranges.items()}


__all__ = ["ColumnRange", "DEFAULT_ROUNDS", "LOCATE_EDGES", "ZOOM_BINS", "bounds_of",
           "ranges_event", "release_ranges", "sample_range"]
