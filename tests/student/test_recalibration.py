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
    intercept_at_slope,
    n_bins_for,
    platt_from_release,
    release,
    shrunk_platt,
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
    assert len(bins.edges) == 9 and len(bins.centres) == len(bins.half_widths) == 10
    assert np.all(np.diff(bins.edges) > 0) and np.all(np.diff(bins.centres) > 0)
    d, y = _shrunken(3000, rng)
    stat = bins.statistic(d, y)
    assert stat.shape == (10, 3) and stat[:, :2].sum() == 3000 and stat[:, 1].sum() == y.sum()
    assert np.all(np.abs(stat[:, 2]) <= stat[:, :2].sum(axis=1))


def test_tied_transfer_logits_merge_bins() -> None:
    bins = LogitBins.from_transfer(np.r_[np.zeros(900), np.linspace(1, 2, 100)], 10)
    assert len(bins.centres) == len(bins.edges) + 1 < 10
    assert not np.isnan(bins.centres).any() and np.all(bins.half_widths > 0)


def test_one_patient_moves_the_statistic_by_at_most_root_two() -> None:
    """Add/remove L2 sensitivity √2 — one count by 1 and one clipped sum by ≤ 1 — what the
    noise (√2 · z) and the event GaussianDpEvent(z) assume; patients far outside the
    transfer range included."""
    rng = np.random.default_rng(1)
    bins = LogitBins.from_transfer(rng.normal(size=2000), 8)
    d, y = _shrunken(500, rng)
    d[:10] *= 25.0
    full = bins.statistic(d, y)
    worst = 0.0
    for i in range(500):
        change = full - bins.statistic(np.delete(d, i), np.delete(y, i))
        assert np.abs(change[:, :2]).sum() == 1.0 and np.abs(change[:, 2]).sum() <= 1.0 + 1e-12
        worst = max(worst, float(np.linalg.norm(change)))
    assert worst <= np.sqrt(2) + 1e-12 and worst > 1.2


def test_release_noise_has_the_planned_scale() -> None:
    noisy = release(np.zeros((2000, 3)), 5.0, np.random.default_rng(3))
    assert 0.95 * 5 * np.sqrt(2) <= noisy.std() <= 1.05 * 5 * np.sqrt(2)


def test_platt_fit_recovers_a_known_miscalibration_through_noise() -> None:
    rng = np.random.default_rng(2)
    bins = LogitBins.from_transfer(rng.normal(0.0, 1.2, 20_000), n_bins_for(8000))
    d, y = _shrunken(8000, rng)
    exact = platt_from_release(bins, bins.statistic(d, y))
    assert exact is not None
    assert 1.6 <= exact.slope <= 2.0 and -0.55 <= exact.intercept <= -0.25
    noisy = platt_from_release(bins, release(bins.statistic(d, y), 20.0, rng))
    assert noisy is not None and 1.4 <= noisy.slope <= 2.2


def test_patients_wider_than_the_transfer_rows_are_placed_where_they_are() -> None:
    """Transfer logits narrower than the patients' (independently sampled features): the
    released offset sums keep the fitted slope near the truth, where the transfer medians
    alone would over-correct."""
    rng = np.random.default_rng(4)
    bins = LogitBins.from_transfer(rng.normal(0.0, 0.6, 20_000), 10)
    d, y = _shrunken(8000, rng, true_slope=1.0, shift=0.0)
    fit = platt_from_release(bins, bins.statistic(d, y))
    assert fit is not None and 0.85 <= fit.slope <= 1.15
    naive = bins.statistic(d, y)
    naive[:, 2] = 0.0                      # every bin at its transfer median
    biased = platt_from_release(bins, naive)
    assert biased is not None and biased.slope > 1.3


def test_no_fit_when_noise_leaves_one_class_or_a_decreasing_line() -> None:
    bins = LogitBins(edges=np.array([0.0]), centres=np.array([-1.0, 1.0]),
                     half_widths=np.array([1.0, 1.0]))
    assert platt_from_release(bins, np.array([[50.0, -3.0, 0.0], [40.0, -1.0, 0.0]])) is None
    assert platt_from_release(bins, np.array([[10.0, 40.0, 0.0], [40.0, 10.0, 0.0]])) is None
    fit = platt_from_release(bins, np.array([[40.0, 10.0, 0.0], [10.0, 40.0, 0.0]]))
    assert fit is not None and fit.slope == pytest.approx(np.log(16) / 2, rel=1e-3)


def test_intercept_at_the_fitted_slope_is_the_plain_fit_s() -> None:
    rng = np.random.default_rng(5)
    bins = LogitBins.from_transfer(rng.normal(0.0, 1.2, 20_000), 8)
    released = release(bins.statistic(*_shrunken(3000, rng)), 3.0, rng)
    fit = platt_from_release(bins, released)
    assert fit is not None
    assert intercept_at_slope(bins, released, fit.slope) == pytest.approx(fit.intercept, abs=2e-3)


def test_many_patients_keep_the_fitted_slope() -> None:
    """Little noise per bin: the shrinkage leaves the plain fit's slope almost as it is."""
    rng = np.random.default_rng(6)
    bins = LogitBins.from_transfer(rng.normal(0.0, 1.2, 20_000), n_bins_for(8000))
    released = release(bins.statistic(*_shrunken(8000, rng)), 15.0, rng)
    plain = platt_from_release(bins, released)
    fit = shrunk_platt(bins, released, 15.0, np.random.default_rng(0))
    assert plain is not None and fit is not None and fit.fitted_slope == plain.slope
    assert fit.slope_sd < 0.15
    assert abs(fit.slope - plain.slope) <= 0.1 * abs(plain.slope - 1.0)
    assert 1.5 <= fit.slope <= 2.1


def test_few_patients_under_heavy_noise_get_a_steadier_slope() -> None:
    """240 patients in 4 bins at a noise multiplier of 18 (a small table at ε = 1): the
    plain fit's slope wanders; the shrunk one is closer to the truth (1.3) on average, and
    the risks it gives are closer to the true risks."""
    rng = np.random.default_rng(7)
    bins = LogitBins.from_transfer(rng.normal(0.0, 1.2, 20_000), n_bins_for(240))
    grid = np.linspace(-3, 3, 61)
    truth = 1 / (1 + np.exp(-1.3 * grid))
    plain_error, shrunk_error, plain_risk, shrunk_risk = [], [], [], []
    for _ in range(30):
        released = release(bins.statistic(*_shrunken(240, rng, true_slope=1.3, shift=0.0)),
                           18.0, rng)
        plain = platt_from_release(bins, released)
        fit = shrunk_platt(bins, released, 18.0, rng, refits=20)
        if plain is None or fit is None:
            continue
        plain_error.append(abs(plain.slope - 1.3))
        shrunk_error.append(abs(fit.slope - 1.3))
        plain_risk.append(np.abs(1 / (1 + np.exp(-(plain.slope * grid + plain.intercept))) - truth).mean())
        shrunk_risk.append(np.abs(1 / (1 + np.exp(-(fit.slope * grid + fit.intercept))) - truth).mean())
        assert fit.slope_sd is not None and fit.slope_sd > 0.2
    assert len(plain_error) >= 20
    assert np.mean(shrunk_error) < 0.7 * np.mean(plain_error)
    assert np.mean(shrunk_risk) < np.mean(plain_risk)


def test_without_an_increasing_fit_only_the_intercept_moves() -> None:
    bins = LogitBins(edges=np.array([0.0]), centres=np.array([-1.0, 1.0]),
                     half_widths=np.array([1.0, 1.0]))
    symmetric = shrunk_platt(bins, np.array([[10.0, 40.0, 0.0], [40.0, 10.0, 0.0]]), 1.0,
                             np.random.default_rng(0))
    assert symmetric is not None and symmetric.slope == 1.0 and symmetric.fitted_slope is None
    assert symmetric.intercept == pytest.approx(0.0, abs=1e-3)
    more_events = shrunk_platt(bins, np.array([[10.0, 60.0, 0.0], [40.0, 30.0, 0.0]]), 1.0,
                               np.random.default_rng(0))
    assert more_events is not None and more_events.slope == 1.0 and more_events.intercept > 0.3
    assert shrunk_platt(bins, np.array([[50.0, -3.0, 0.0], [40.0, -1.0, 0.0]]), 1.0,
                        np.random.default_rng(0)) is None


def test_the_shrunk_fit_follows_its_seeded_generator() -> None:
    rng = np.random.default_rng(8)
    bins = LogitBins.from_transfer(rng.normal(0.0, 1.2, 5000), 4)
    released = release(bins.statistic(*_shrunken(300, rng)), 10.0, rng)
    first = shrunk_platt(bins, released, 10.0, np.random.default_rng(1))
    again = shrunk_platt(bins, released, 10.0, np.random.default_rng(1))
    assert first == again


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
