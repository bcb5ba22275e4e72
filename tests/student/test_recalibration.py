"""The DP reliability-histogram recalibration: bins from transfer logits, the released
statistic's sensitivity, the Platt fit recovering a known miscalibration, the ledger event."""

from __future__ import annotations

import dp_accounting as dpa
import numpy as np
import pytest
from scipy.stats import norm

from medistill.student.recalibration import (
    LogitBins,
    histogram_event,
    n_bins_for,
    noisy_counts,
    platt_from_counts,
)


def _shrunken(n: int, rng: np.random.Generator, true_slope: float = 1.8, shift: float = -0.4):
    """Logits d whose true risk is σ(true_slope · d + shift): a student under-confident by
    ``true_slope`` and biased by ``shift``."""
    d = rng.normal(0.0, 1.2, n)
    y = (rng.random(n) < 1 / (1 + np.exp(-(true_slope * d + shift)))).astype(int)
    return d, y


def test_bins_come_from_transfer_quantiles_and_count_every_row() -> None:
    rng = np.random.default_rng(0)
    bins = LogitBins.from_transfer(rng.normal(size=5000), 10)
    assert len(bins.edges) == 9 and len(bins.centres) == 10
    assert np.all(np.diff(bins.edges) > 0) and np.all(np.diff(bins.centres) > 0)
    d, y = _shrunken(3000, rng)
    counts = bins.counts(d, y)
    assert counts.shape == (10, 2) and counts.sum() == 3000 and counts[:, 1].sum() == y.sum()


def test_tied_transfer_logits_merge_bins() -> None:
    bins = LogitBins.from_transfer(np.r_[np.zeros(900), np.linspace(1, 2, 100)], 10)
    assert len(bins.centres) == len(bins.edges) + 1 < 10
    assert not np.isnan(bins.centres).any()


def test_one_patient_moves_one_count_by_one() -> None:
    """Add/remove sensitivity 1 in L2 (and L1): what the Gaussian event assumes."""
    rng = np.random.default_rng(1)
    bins = LogitBins.from_transfer(rng.normal(size=2000), 8)
    d, y = _shrunken(500, rng)
    full = bins.counts(d, y)
    for i in rng.choice(500, 20, replace=False):
        without = bins.counts(np.delete(d, i), np.delete(y, i))
        assert np.abs(full - without).sum() == 1.0


def test_platt_fit_recovers_a_known_miscalibration_through_noise() -> None:
    rng = np.random.default_rng(2)
    bins = LogitBins.from_transfer(rng.normal(0.0, 1.2, 20_000), n_bins_for(8000))
    d, y = _shrunken(8000, rng)
    exact = platt_from_counts(bins, bins.counts(d, y))
    assert exact is not None
    assert 1.6 <= exact.slope <= 2.0 and -0.55 <= exact.intercept <= -0.25
    noisy = platt_from_counts(bins, noisy_counts(bins.counts(d, y), 20.0, rng))
    assert noisy is not None and 1.4 <= noisy.slope <= 2.2


def test_no_fit_when_noise_leaves_one_class_or_a_decreasing_line() -> None:
    bins = LogitBins(edges=np.array([0.0]), centres=np.array([-1.0, 1.0]))
    assert platt_from_counts(bins, np.array([[50.0, -3.0], [40.0, -1.0]])) is None
    assert platt_from_counts(bins, np.array([[10.0, 40.0], [40.0, 10.0]])) is None
    fit = platt_from_counts(bins, np.array([[40.0, 10.0], [10.0, 40.0]]))
    assert fit is not None and fit.slope == pytest.approx(np.log(16) / 2, rel=1e-3)


def test_bins_scale_with_the_noisy_count() -> None:
    assert n_bins_for(300) == 4 and n_bins_for(4000) == 10 and n_bins_for(10**6) == 20


def test_event_matches_the_gaussian_mechanism_in_dp_accounting() -> None:
    """ε of the histogram at noise z is the analytic Gaussian mechanism's (Balle & Wang
    2018), computed by dp-accounting's PLD accountant for the recorded event."""
    delta = 1e-6
    for z in (2.0, 10.0):
        accountant = dpa.pld.PLDAccountant()
        accountant.compose(histogram_event(z))
        eps = accountant.get_epsilon(delta)
        # Independent check: δ(ε) of the Gaussian mechanism at sensitivity 1 and σ = z
        # (Balle & Wang 2018, Theorem 8): Φ(1/2z − εz) − e^ε Φ(−1/2z − εz).
        a, b = norm.cdf(1 / (2 * z) - eps * z), np.exp(eps) * norm.cdf(-1 / (2 * z) - eps * z)
        assert a - b == pytest.approx(delta, rel=0.05)
