"""Calibration slope/intercept and reliability bins (#14 item 6)."""

import numpy as np
import pytest

from medistill.audit.utility import calibration_line, reliability_bins, utility_metrics


def _calibrated(n: int = 20_000, seed: int = 0):
    rng = np.random.default_rng(seed)
    p = rng.uniform(0.02, 0.98, n)
    return (rng.random(n) < p).astype(int), p


def test_a_calibrated_model_has_slope_one_and_intercept_zero() -> None:
    y, p = _calibrated()
    slope, intercept = calibration_line(y, p)
    assert slope == pytest.approx(1.0, abs=0.06) and intercept == pytest.approx(0.0, abs=0.06)


def test_an_overconfident_model_has_slope_below_one() -> None:
    y, p = _calibrated()
    logit = np.log(p / (1 - p))
    sharp = 1 / (1 + np.exp(-2.0 * logit))             # twice the true logit
    slope, _ = calibration_line(y, sharp)
    assert slope == pytest.approx(0.5, abs=0.05)


def test_reliability_bins_follow_the_diagonal_and_drop_small_bins() -> None:
    y, p = _calibrated()
    bins = reliability_bins(y, p)
    assert len(bins) == 10 and sum(b["n"] for b in bins) == len(y)
    assert all(abs(b["observed"] - b["predicted"]) < 0.04 for b in bins)
    same = np.full(15, 0.55)
    assert [b["n"] for b in reliability_bins(y[:15], same, min_count=10)] == [15]
    assert reliability_bins(y[:5], same[:5], min_count=10) == []   # too few to show


def test_metrics_carry_calibration_for_binary_outcomes() -> None:
    y, p = _calibrated(2000)
    m = utility_metrics(y, np.column_stack([1 - p, p]))
    assert {"calibration_slope", "calibration_intercept", "calibration_in_the_large"} <= set(m)
    assert abs(m["calibration_in_the_large"]) < 0.05
