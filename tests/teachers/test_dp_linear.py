"""The DP linear teacher: calibrated event, Opacus's schedule, public inputs, fresh noise."""

from __future__ import annotations

import numpy as np
import pytest
from sklearn.metrics import roc_auc_score

from medistill.errors import ConfigError, TrainingError
from medistill.privacy.ledger import epsilon_of
from medistill.student.train import DpSgdSchedule
from medistill.teachers.dp_linear import DPLinearSettings, calibrate_noise, fit_dp_linear

SETTINGS = DPLinearSettings(epochs=5, batch_size=256)


@pytest.mark.parametrize("accountant", ["pld", "rdp"])
def test_calibrated_noise_spends_the_budget(accountant):
    schedule = DpSgdSchedule.for_data(2000, 256, 5)
    z = calibrate_noise(schedule, epsilon=1.0, delta=1e-6, accountant=accountant)
    assert 0.99 <= epsilon_of([schedule.event(z)], 1e-6, accountant) <= 1.0
    assert epsilon_of([schedule.event(0.98 * z)], 1e-6, accountant) > 1.0


def test_pld_needs_less_noise_than_rdp():
    schedule = DpSgdSchedule.for_data(2000, 256, 5)
    assert (calibrate_noise(schedule, epsilon=1.0, delta=1e-6, accountant="pld")
            < calibrate_noise(schedule, epsilon=1.0, delta=1e-6, accountant="rdp"))


@pytest.fixture(scope="module")
def teacher(dp_table, dp_schema, dp_bounds):
    frame, labels = dp_table
    return fit_dp_linear(frame, labels, dp_schema, epsilon=1.0, delta=1e-6, bounds=dp_bounds,
                         settings=SETTINGS)


def test_fit_runs_the_planned_schedule(teacher, dp_table, dp_test_table):
    frame, _labels = dp_table
    schedule = DpSgdSchedule.for_data(len(frame), 256, 5)
    assert (teacher.sample_rate, teacher.steps) == (schedule.sample_rate, schedule.steps)
    assert 0.99 <= teacher.epsilon(1e-6) <= 1.0
    test_frame, test_labels = dp_test_table
    proba = teacher.predict_proba(test_frame)
    np.testing.assert_allclose(proba.sum(axis=1), 1.0, rtol=1e-6)
    np.testing.assert_allclose(1 / (1 + np.exp(-teacher.decision_function(test_frame))),
                               proba[:, 1], rtol=1e-5)
    assert 0.65 <= roc_auc_score(test_labels, proba[:, 1]) <= 0.86


def test_noise_is_fresh_each_fit(teacher, dp_table, dp_schema, dp_bounds):
    """No seed is passed or recorded: a second fit on the same rows gives another model."""
    frame, labels = dp_table
    a = teacher
    b = fit_dp_linear(frame, labels, dp_schema, epsilon=1.0, delta=1e-6, bounds=dp_bounds,
                      settings=SETTINGS)
    assert not np.allclose(a.logits(frame), b.logits(frame))


def test_inputs_are_scaled_by_declared_ranges_only(teacher, dp_table):
    frame, _labels = dp_table
    x = teacher.encoding.linear_matrix(frame)
    assert x.shape[1] == teacher.encoding.linear_width() == 2 * 2 + 3 + 6
    assert np.abs(x).max() <= 1.0
    extreme = frame.iloc[:1].copy()
    extreme["age"] = 1e9
    assert teacher.encoding.linear_matrix(extreme)[0, 0] == pytest.approx(1.0)


def test_bad_inputs_are_refused(dp_table, dp_schema, dp_bounds):
    frame, labels = dp_table
    with pytest.raises(ConfigError, match="'age'"):
        fit_dp_linear(frame, labels, dp_schema, epsilon=1.0, delta=1e-6,
                      bounds={"sbp": (60.0, 220.0)})
    with pytest.raises(TrainingError, match="class code"):
        fit_dp_linear(frame, labels + 5, dp_schema, epsilon=1.0, delta=1e-6, bounds=dp_bounds)
    with pytest.raises(ValueError, match="'epochs' parameter of DPLinearSettings"):
        DPLinearSettings(epochs=0)
    with pytest.raises(ValueError, match="epsilon"):
        calibrate_noise(DpSgdSchedule.for_data(100, 10, 1), epsilon=-1.0, delta=1e-6)


def test_sampling_and_noise_come_from_the_given_generator(dp_table, dp_schema, dp_bounds):
    """Every privacy draw goes through ``rng``: the same seeded generator gives the same
    model (the run's reproducible mode; no formal guarantee then), another one does not."""
    frame, labels = dp_table
    fit = lambda seed: fit_dp_linear(frame, labels, dp_schema, epsilon=1.0, delta=1e-6,  # noqa: E731
                                     bounds=dp_bounds, settings=SETTINGS,
                                     rng=np.random.default_rng(seed))
    a, b, c = fit(1), fit(1), fit(2)
    np.testing.assert_array_equal(a.logits(frame), b.logits(frame))
    assert not np.allclose(a.logits(frame), c.logits(frame))


def test_a_planned_schedule_fixes_the_divisor_whatever_the_row_count(
        dp_table, dp_schema, dp_bounds, divisors):
    """With the plan's schedule (from the charged count) every step divides the noisy
    gradient sum by its expected batch, not by int(exact rows · q): 1,999 and 2,000 rows under
    a schedule for 2,400 both divide by 2,400 · q."""
    seen = divisors
    frame, labels = dp_table
    settings = DPLinearSettings(epochs=1, batch_size=256)
    planned = DpSgdSchedule.for_data(2400, 256, 1)       # 10 steps, q = 0.1
    for n in (1999, 2000):
        seen.clear()
        teacher = fit_dp_linear(frame.iloc[:n], labels[:n], dp_schema, epsilon=1.0, delta=1e-6,
                                bounds=dp_bounds, settings=settings,
                                rng=np.random.default_rng(0), planned=(planned, 1.0))
        assert teacher.steps == planned.steps == len(seen)
        assert seen == [pytest.approx(240.0)] * planned.steps
