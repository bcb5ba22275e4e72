"""DP recalibration of a binary student from one noisy reliability histogram.

A distilled DP teacher passes its shrunken risks to the student (calibration slope 1.6–1.9
measured on DP-EBM teachers). Platt scaling fixes a slope and an intercept on the logit, a
two-parameter problem that needs very little from the sensitive patients: how many
positives and negatives fall into each of a few bins of the student's logit.

Mechanism. Bin edges are quantiles of the student's logit on the *transfer* rows (synthetic:
no sensitive value), so they are fixed before any patient is read, and so is each bin's
reference logit c_b (the transfer rows' median in the bin) and half-width w_b (the farther
edge; for the two open-ended bins, half the span of the interior edges). The release is, per
bin, the count of negatives, the count of positives and the sum of (d − c_b)/w_b clipped to
[−1, 1] over one row per training patient. Adding or removing a patient changes one count
by one and one sum by at most one: L2 sensitivity √2, so Gaussian noise of standard
deviation √2·z per coordinate is the Gaussian mechanism ``GaussianDpEvent(z)``. Everything
after — the bins' positions c_b + w_b · (noisy sum / noisy count), clipping counts at zero,
the weighted logistic fit — is post-processing.

Why the sums: independent-per-feature transfer rows have a narrower logit spread than real
patients, whose risk factors are correlated, so the transfer medians of the end bins sit
well inside the patients' logits there; fitting on them over-corrected the slope (test
calibration slope 0.6–0.8 on the cohort at ε = 3). The sums move every bin to where its
patients are.

Why the slope is shrunk: with a few hundred patients the noise moves the fitted slope far
more than any miscalibration does (its spread over re-noised releases: 0.8–1.6 with 60–90
patients per bin on small benchmark tables, 0.12 with 140). The fit's slope is therefore
pulled toward 1 by its own noise-induced variance, estimated by refitting on the release
with the same noise added again (a parametric bootstrap, post-processing), against a prior
standard deviation ``SLOPE_PRIOR_SD``; the intercept is then refitted at that slope. Many
patients per bin leave the slope as fitted. Replayed on the same 70 students (7 tables,
ε 1 and 3), this lowered the test ECE by 0.0099 (se 0.0029) against the plain fit, by
0.04 on the smallest tables at ε = 1 (docs/benchmarks.md, "The recalibration's noise").

Why not DP-SGD on the two parameters: clipping and few steps biased the fit (slope 1.9
moved only to 1.3 at a 5 % share on 1,800 patients, docs/benchmarks.md), while the
histogram spends the whole share on counts that a Platt fit uses at full efficiency.
"""

from __future__ import annotations

from dataclasses import dataclass

import dp_accounting as dpa
import numpy as np
from scipy.optimize import minimize_scalar
from scipy.special import expit
from sklearn.linear_model import LogisticRegression

# Fewest bins (a line needs spread in the logit) and most (beyond this the counts per bin
# shrink faster than the fit gains); rows per bin aimed at, from the noisy patient count.
MIN_BINS, MAX_BINS, ROWS_PER_BIN = 4, 20, 400
# L2 sensitivity of the released (B, 3) statistic to one patient.
SENSITIVITY = float(np.sqrt(2.0))
# Prior standard deviation of the slope correction around 1 (0.25, 0.5 and 1 replayed on the
# same students: within 0.0014 ECE of each other, docs/benchmarks.md) and the refits that
# estimate the noise's spread.
SLOPE_PRIOR_SD, REFITS = 0.5, 40


def n_bins_for(n_patients: int) -> int:
    """Bins for about ``ROWS_PER_BIN`` patients each, from a noisy (charged) count."""
    return int(np.clip(round(n_patients / ROWS_PER_BIN), MIN_BINS, MAX_BINS))


@dataclass(frozen=True)
class LogitBins:
    """Bin edges (interior, increasing), each bin's reference logit and half-width, all
    taken from transfer rows only."""

    edges: np.ndarray
    centres: np.ndarray
    half_widths: np.ndarray

    @classmethod
    def from_transfer(cls, transfer_logits: np.ndarray, n_bins: int) -> LogitBins:
        """Quantile bins of the student's logit on transfer rows (tied quantiles merged)."""
        logits = np.asarray(transfer_logits, dtype=float)
        edges = np.unique(np.quantile(logits, np.linspace(0, 1, n_bins + 1)[1:-1]))
        index = np.searchsorted(edges, logits, side="right")
        centres = np.array([np.median(logits[index == b]) if (index == b).any() else np.nan
                            for b in range(len(edges) + 1)])
        # An empty bin (possible only with ties) borrows its neighbours' midpoint.
        fill = np.concatenate([[logits.min()], edges, [logits.max()]])
        centres = np.where(np.isnan(centres), (fill[:-1] + fill[1:]) / 2, centres)
        tail = max((edges[-1] - edges[0]) / 2, 1.0) if len(edges) else 1.0
        lower = np.concatenate([[centres[0] - tail], edges])
        upper = np.concatenate([edges, [centres[-1] + tail]])
        half = np.maximum(np.maximum(centres - lower, upper - centres), 1e-6)
        half[0], half[-1] = max(half[0], tail), max(half[-1], tail)
        return cls(edges=edges, centres=centres, half_widths=half)

    def statistic(self, logits: np.ndarray, labels: np.ndarray) -> np.ndarray:
        """Exact (negatives, positives, clipped offset sum) per bin, shape (B, 3): the
        sensitive statistic (one patient moves one count by 1, one sum by ≤ 1)."""
        logits = np.asarray(logits, dtype=float)
        index = np.searchsorted(self.edges, logits, side="right")
        out = np.zeros((len(self.centres), 3))
        np.add.at(out, (index, np.asarray(labels, dtype=np.int64)), 1.0)
        offsets = np.clip((logits - self.centres[index]) / self.half_widths[index], -1.0, 1.0)
        np.add.at(out[:, 2], index, offsets)
        return out


def histogram_event(noise_multiplier: float) -> dpa.DpEvent:
    """The ledger event of the noisy statistic (L2 sensitivity √2, noise √2·z)."""
    return dpa.GaussianDpEvent(noise_multiplier)


def release(statistic: np.ndarray, noise_multiplier: float,
            rng: np.random.Generator) -> np.ndarray:
    """The released statistic: Gaussian noise of standard deviation √2 · ``noise_multiplier``
    per coordinate, from a privacy generator."""
    return statistic + rng.normal(0.0, SENSITIVITY * noise_multiplier, size=statistic.shape)


@dataclass(frozen=True)
class PlattFit:
    """Slope and intercept folded into the student's logit; ``fitted_slope`` and
    ``slope_sd`` (the plain fit's slope and its spread under the noise) when shrunk."""

    slope: float
    intercept: float
    fitted_slope: float | None = None
    slope_sd: float | None = None


def _usable(released: np.ndarray) -> np.ndarray | None:
    """The noisy counts clipped at zero, or None without both classes."""
    weights = np.clip(released[:, :2], 0.0, None)
    if weights[:, 0].sum() <= 0 or weights[:, 1].sum() <= 0:
        return None
    return weights


def _positions(bins: LogitBins, released: np.ndarray, weights: np.ndarray) -> np.ndarray:
    """Each bin's estimated mean logit: its centre moved by the noisy mean offset."""
    total = np.maximum(weights.sum(axis=1), 1.0)
    return bins.centres + bins.half_widths * np.clip(released[:, 2] / total, -1.0, 1.0)


def intercept_at_slope(bins: LogitBins, released: np.ndarray, slope: float) -> float | None:
    """The intercept of the weighted logistic fit with its slope held at ``slope``."""
    weights = _usable(released)
    if weights is None:
        return None
    x = slope * _positions(bins, released, weights)

    def loss(a: float) -> float:
        p = np.clip(expit(x + a), 1e-12, 1 - 1e-12)
        return float(-(weights[:, 0] * np.log1p(-p) + weights[:, 1] * np.log(p)).sum())

    return float(minimize_scalar(loss, bounds=(-20.0, 20.0), method="bounded").x)


def shrunk_platt(bins: LogitBins, released: np.ndarray, noise_multiplier: float,
                 rng: np.random.Generator, prior_sd: float = SLOPE_PRIOR_SD,
                 refits: int = REFITS) -> PlattFit | None:
    """The Platt fit with its slope pulled toward 1 by the noise's spread of it: slope
    1 + (b − 1)·τ²/(τ² + v), v the variance of b over ``refits`` fits on the release with
    noise of the same scale added again (``rng``: a seeded post-processing generator), then
    the intercept refitted at that slope. Without an increasing plain fit the slope stays 1
    and only the intercept is fitted; None when the counts lack a class."""
    fit = platt_from_release(bins, released)
    if fit is None:
        intercept = intercept_at_slope(bins, released, 1.0)
        return None if intercept is None else PlattFit(1.0, intercept)
    scale = SENSITIVITY * noise_multiplier
    slopes = []
    for _ in range(refits):
        again = platt_from_release(bins, released + rng.normal(0.0, scale, released.shape))
        slopes.append(1.0 if again is None else again.slope)
    variance = float(np.var(slopes))
    slope = 1.0 + (fit.slope - 1.0) * prior_sd**2 / (prior_sd**2 + variance)
    intercept = intercept_at_slope(bins, released, slope)
    if intercept is None:               # not reached: the plain fit found both classes
        return fit
    return PlattFit(slope, intercept, fitted_slope=fit.slope, slope_sd=float(np.sqrt(variance)))


def platt_from_release(bins: LogitBins, released: np.ndarray) -> PlattFit | None:
    """Weighted logistic fit of y on each bin's estimated mean logit, the noisy counts
    (clipped at zero) as weights; None when the counts carry no usable signal (both classes
    needed, and a positive slope: a non-increasing fit would reverse the ranking)."""
    weights = _usable(released)
    if weights is None:
        return None
    x = np.repeat(_positions(bins, released, weights), 2).reshape(-1, 1)
    y = np.tile([0, 1], len(weights))
    keep = weights.ravel() > 0
    model = LogisticRegression(C=np.inf, max_iter=1000)
    model.fit(x[keep], y[keep], sample_weight=weights.ravel()[keep])
    slope, intercept = float(model.coef_[0, 0]), float(model.intercept_[0])
    return PlattFit(slope, intercept) if slope > 0 else None


__all__ = ["LogitBins", "PlattFit", "histogram_event", "intercept_at_slope", "n_bins_for",
           "platt_from_release", "release", "shrunk_platt"]
