"""Public numeric ranges for the DP teachers, bought with noisy histograms that zoom in.

A DP teacher needs a range for every numeric feature and may not read it off the data
(min/max would name the most extreme patients). Where the user declared none, the range is
estimated in three Gaussian releases on the training patients (ledger stage
``dp_teacher_ranges``):

1. **Locate** — a noisy histogram of every column on a fixed grid of 29 bins, evenly
   spaced in asinh(value) over ±10⁶ (a bin is a factor of e wide above 1), public and
   chosen before seeing data;
2. **Zoom**, twice — each later round spreads 64 bins (``zoom_bins``), equal in asinh(value),
   over the range the round before found (widened by ``ZOOM_MARGIN`` each side) and counts
   the values again, those outside clipped into the end bins. A calendar year near 1985 is
   a 2,500-year bin in round 1, a 47-year one in round 2 and about a 1-year one in round 3.

Each round every patient adds 1 to one bin of each of the d histograms (missing values
count nowhere): L2 sensitivity √d, noise std ``z_k·√d`` per bin, one
``GaussianDpEvent(z_k)`` per round. Round k takes the part w_k of the budget
(``RangeSettings.weights``, summing to 1): z_k = z/√w_k, so the rounds compose to exactly one
Gaussian of multiplier z (round k is √w_k/z-GDP, together √(Σ w_k)/z = 1/z-GDP; Dong, Roth &
Su 2022, Cor. 3.3) — the event the plan budgeted. The locating round takes half: it must
see every column, while a zoom that sees nothing only keeps the range before it.

Why coarse, and why half to the first round (measured on breast cancer at ε = 1: 342
patients, 30 columns, z ≈ 6.3, so a noise std of ≈ 49 per first-round bin): the old first
round of 232 bins and two equal rounds found nothing in 39 % of the columns and fell back to
a noise bin far from the data (23 % of the ranges held less than 90 % of their column), and
the DP-EBM teacher lost 0.057 AUROC to it (paired over 24 splits). A column's few hundred
values then spread over 5–10 fine bins, none above the noise, where one coarse bin holds
them all.

A zoom replaces the range before it only when the bins it keeps hold at least
half (``zoom_kept_mass``) the mass the range before it kept, and zooms keep a noise-only bin
10 times less often than the locating round (``zoom_stray_bins``): a zoom of a spread-out
column at high noise may see only its peak, or only a stray noise bin, and would shrink the
range around it.

Reading a range off a noisy histogram is post-processing: only bins that stand out of the
noise are kept (:func:`~medistill.transfer.dp_marginals.clean_numeric_histogram`, which
merges neighbours when single bins are too weak), and the range runs between the ``lower``
and ``upper`` quantiles of the kept mass. A range a zoom set is then widened by
``RANGE_MARGIN`` of its asinh width each side, because keeping only bins above the noise
cuts thin tails (a normal column's kept bins can end near ±1 standard deviation at 600
patients). A range the locating round set is not widened: its bins are a factor of e wide
and hold the tails already, and widening them again made the DP-EBM's bins coarse (Pima at
ε = 1: median range 3.4 times the data's central 98 % instead of 1.4; the pbc teacher −0.08
AUROC; ``benchmarks/dp_ranges.py``, docs/design.md). Releasing the coarse grid directly,
rather than a fine grid merged after the fact, keeps the noise of a coarse bin at one noise
draw instead of the sum of the many it would merge.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, replace

import dp_accounting as dpa
import numpy as np
import pandas as pd

from medistill.transfer.dp_marginals import clean_numeric_histogram

ZOOM_MARGIN = 0.25      # each side, in parts of the located range's asinh width
RANGE_MARGIN = 0.5      # a zoomed range's widening, each side, in the same parts


def _checked(weights: Sequence[float]) -> tuple[float, ...]:
    weights = tuple(float(w) for w in weights)
    if not weights or any(not w > 0 for w in weights) or not math.isclose(sum(weights), 1.0):
        raise ValueError(f"The round weights must be positive and sum to 1. Got {weights} "
                         "instead.")
    return weights


@dataclass(frozen=True)
class RangeSettings:
    """How :func:`release_ranges` reads the data (public, chosen before seeing it).

    ``weights``: each round's part of the budget (one round per weight, summing to 1).
    ``zoom_kept_mass``: a zoom replaces the range before it only when the bins it keeps
    above the noise hold at least this part of the mass the range before it kept (else they
    are the peak of a spread-out column, and the range would shrink around the mode).
    ``locate_stray_bins`` / ``zoom_stray_bins``: expected noise-only bins kept per column
    and merge level (a stray bin would stretch or move a range: ten times fewer than the
    transfer marginals ask for, and ten times fewer again in a zoom, which may see nothing
    but noise). ``widen_located``: whether a range the locating round set is widened too.
    """

    locate_bins: int = 29
    weights: tuple[float, ...] = (0.5, 0.25, 0.25)
    zoom_bins: int = 64
    zoom_kept_mass: float = 0.5
    locate_stray_bins: float = 0.005
    zoom_stray_bins: float = 0.0005
    widen_located: bool = False

    def __post_init__(self) -> None:
        _checked(self.weights)
        if self.locate_bins < 2 or self.zoom_bins < 2:
            raise ValueError(f"locate_bins and zoom_bins must be at least 2. Got "
                             f"{self.locate_bins}, {self.zoom_bins} instead.")
        if not 0 <= self.zoom_kept_mass <= 1:
            raise ValueError(f"zoom_kept_mass must be in [0, 1]. Got {self.zoom_kept_mass} "
                             "instead.")

    @property
    def locate_edges(self) -> np.ndarray:
        """The locating grid: ``locate_bins`` bins equal in asinh(value) over ±10⁶."""
        return np.sinh(np.linspace(math.asinh(-1e6), math.asinh(1e6), self.locate_bins + 1))


PUBLISHED = RangeSettings()
ROUND_WEIGHTS = PUBLISHED.weights


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


def round_multipliers(noise_multiplier: float,
                      weights: Sequence[float] = ROUND_WEIGHTS) -> tuple[float, ...]:
    """Each round's noise multiplier z/√w: round k is (√w_k/z)-GDP, and the rounds compose
    to exactly 1/z-GDP because the weights sum to 1."""
    weights = _checked(weights)
    return tuple(noise_multiplier / math.sqrt(w) for w in weights)


def equal_rounds(rounds: int) -> tuple[float, ...]:
    """``rounds`` rounds with equal parts of the budget."""
    if rounds < 1:
        raise ValueError(f"rounds must be at least 1. Got {rounds} instead.")
    return (1.0 / rounds,) * rounds


def ranges_event(noise_multiplier: float,
                 weights: Sequence[float] = ROUND_WEIGHTS) -> dpa.DpEvent:
    """The ledger event of one :func:`release_ranges` call: one Gaussian per round, of
    multiplier z/√w (together exactly one Gaussian of multiplier z)."""
    return dpa.ComposedDpEvent([dpa.GaussianDpEvent(m)
                                for m in round_multipliers(noise_multiplier, weights)])


def _quantile_range(edges: np.ndarray, weights: np.ndarray, lower: float,
                    upper: float) -> tuple[float, float]:
    """The bin edges around the ``lower`` and ``upper`` quantiles of the kept mass."""
    cdf = np.cumsum(weights) / weights.sum()
    lo_bin = int(np.searchsorted(cdf, lower, side="right"))
    hi_bin = int(np.searchsorted(cdf, upper, side="left"))
    hi_bin = min(max(hi_bin, lo_bin), len(weights) - 1)
    return float(edges[lo_bin]), float(edges[hi_bin + 1])


def _zoom_edges(low: float, high: float, bins: int) -> np.ndarray:
    """``bins`` bins over [low, high] widened by ``ZOOM_MARGIN`` each side, equal in
    asinh (nearly linear over a narrow range like calendar years; geometric over a heavy
    tail, whose sparse far bins would otherwise each drown in the noise). The margin lets
    the zoom find tails the locating round's cleaning cut."""
    a, b = math.asinh(low), math.asinh(high)
    margin = ZOOM_MARGIN * (b - a)
    return np.sinh(np.linspace(a - margin, b + margin, bins + 1))


def _counts(values: np.ndarray, edges: np.ndarray) -> np.ndarray:
    """One count per value; values outside the grid go to its end bins."""
    bins = np.searchsorted(edges, values, side="right") - 1
    return np.bincount(np.clip(bins, 0, len(edges) - 2), minlength=len(edges) - 1).astype(float)


def release_ranges(features: pd.DataFrame, columns: list[str], *, noise_multiplier: float,
                   rng: np.random.Generator, settings: RangeSettings = PUBLISHED,
                   lower: float = 0.01, upper: float = 0.99) -> dict[str, ColumnRange]:
    """Noisy ranges of the numeric ``columns`` from one row per patient (the caller
    guarantees it), costing :func:`ranges_event` (``noise_multiplier``,
    ``settings.weights``: one round per weight).

    ``rng`` must be the run's fresh-entropy privacy generator. A column whose first round
    shows no bin above the noise keeps the largest coarse bin (``informative`` False);
    a later round that shows nothing, or keeps less than ``settings.zoom_kept_mass`` of the
    mass the range before it kept, keeps that range. The ledger event is
    ``ranges_event(noise_multiplier, settings.weights)``.
    """
    multipliers = round_multipliers(noise_multiplier, settings.weights)
    if not 0 <= lower < upper <= 1:
        raise ValueError(f"lower and upper must satisfy 0 <= lower < upper <= 1. Got {lower}, "
                         f"{upper} instead.")
    if not columns:
        return {}
    values = {c: pd.to_numeric(features[c], errors="coerce").to_numpy(dtype=float)
              for c in columns}
    values = {c: v[np.isfinite(v)] for c, v in values.items()}
    found: dict[str, ColumnRange] = {}
    grids = {c: settings.locate_edges for c in columns}
    for round_, multiplier in enumerate(multipliers):
        # Every column is counted in every round (the noise is drawn whatever was found),
        # so the release is the same k Gaussians on any data.
        std = multiplier * math.sqrt(len(columns))
        for column in columns:
            edges = grids[column]
            noisy = _counts(values[column], edges) + rng.normal(0.0, std, len(edges) - 1)
            weights, informative = clean_numeric_histogram(
                noisy, std, stray_bins=(settings.locate_stray_bins if round_ == 0
                                        else settings.zoom_stray_bins))
            previous = found.get(column)
            if round_ == 0:
                low, high = _quantile_range(edges, weights, lower, upper)
                found[column] = ColumnRange(low, high, informative, 1, edges, weights)
            elif (informative and previous.informative
                  and weights.sum() >= settings.zoom_kept_mass * previous.weights.sum()):
                low, high = _quantile_range(edges, weights, lower, upper)
                found[column] = ColumnRange(low, high, True, round_ + 1, edges, weights)
            current = found[column]
            grids[column] = _zoom_edges(current.low, current.high, settings.zoom_bins)
    return {name: _widened(r, settings.widen_located) for name, r in found.items()}


def _widened(found: ColumnRange, widen_located: bool) -> ColumnRange:
    """A zoomed range widened by ``RANGE_MARGIN`` each side; a range the locating round
    set is its coarse bins' edges (a factor of e wide: they hold the tails) and stays,
    unless ``widen_located``."""
    a, b = math.asinh(found.low), math.asinh(found.high)
    margin = RANGE_MARGIN * (b - a) if found.rounds_used > 1 or widen_located else 0.0
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


__all__ = ["PUBLISHED", "ColumnRange", "ROUND_WEIGHTS", "RangeSettings", "bounds_of",
           "equal_rounds", "ranges_event", "release_ranges", "round_multipliers", "sample_range"]
