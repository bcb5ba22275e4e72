"""Private teacher selection: bounded scores, sensitivity, calibration, noisy max."""

from __future__ import annotations

import math

import dp_accounting as dpa
import numpy as np
import pandas as pd
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from medistill.privacy.ledger import PrivacyLedger, epsilon_of
from medistill.teachers.private_selection import (
    bounded_scores,
    calibrate_selection_noise,
    select_teacher,
    selection_event,
)


class Fixed:
    """A 'teacher' returning given probabilities of class 1 from column 'p'."""

    def __init__(self, column: str) -> None:
        self.column = column

    def predict_proba(self, frame: pd.DataFrame) -> np.ndarray:
        p = frame[self.column].to_numpy(dtype=float)
        return np.column_stack([1 - p, p])


@pytest.mark.parametrize("score", ["brier", "log_loss"])
def test_scores_are_bounded_and_ordered(score):
    labels = np.array([1, 0, 1])
    perfect = bounded_scores(np.array([[0, 1], [1, 0], [0, 1]], dtype=float), labels, score)
    worst = bounded_scores(np.array([[1, 0], [0, 1], [1, 0]], dtype=float), labels, score)
    middling = bounded_scores(np.full((3, 2), 0.5), labels, score)
    np.testing.assert_allclose(perfect, 1.0)
    np.testing.assert_allclose(worst, 0.0)
    assert np.all((middling > 0) & (middling < 1))


def test_unknown_score_is_refused():
    with pytest.raises(ValueError, match="'score' parameter"):
        bounded_scores(np.full((1, 2), 0.5), np.zeros(1, dtype=int), "auroc")


@settings(max_examples=50, deadline=None)
@given(st.integers(2, 40), st.integers(0, 10_000), st.sampled_from(["brier", "log_loss"]))
def test_one_patient_moves_each_sum_by_at_most_one(n, seed, score):
    rng = np.random.default_rng(seed)
    proba = rng.dirichlet(np.ones(3), size=n)
    labels = rng.integers(0, 3, n)
    full = bounded_scores(proba, labels, score).sum()
    without = bounded_scores(proba[1:], labels[1:], score).sum()
    assert 0 <= full - without <= 1


@pytest.mark.parametrize("k", [2, 4])
def test_calibration_spends_the_share_and_scales_with_root_k(k):
    std = calibrate_selection_noise(k, epsilon=0.2, delta=1e-6)
    assert 0.99 * 0.2 <= epsilon_of([selection_event(std, k)], 1e-6, "pld") <= 0.2
    assert std == pytest.approx(math.sqrt(k) * calibrate_selection_noise(1, epsilon=0.2,
                                                                         delta=1e-6), rel=1e-3)


def _validation(n: int, seed: int) -> tuple[pd.DataFrame, np.ndarray]:
    rng = np.random.default_rng(seed)
    labels = rng.integers(0, 2, n)
    good = np.clip(labels * 0.8 + 0.1 + rng.normal(0, 0.05, n), 0, 1)
    return pd.DataFrame({"good": good, "coin": np.full(n, 0.5)}), labels


def test_clear_winner_is_chosen_at_a_modest_budget():
    frame, labels = _validation(2000, seed=0)
    teachers = {"coin": Fixed("coin"), "good": Fixed("good")}
    for _ in range(5):
        result = select_teacher(teachers, frame, labels, epsilon=0.5, delta=1e-6)
        assert result.chosen == "good"
    assert isinstance(result.event, dpa.GaussianDpEvent)
    assert set(result.noisy_scores) == {"coin", "good"}


def test_tiny_budget_makes_the_choice_random():
    """The noise is really there (and fresh): at ε = 0.0005 either candidate can win."""
    frame, labels = _validation(300, seed=1)
    teachers = {"coin": Fixed("coin"), "good": Fixed("good")}
    chosen = {select_teacher(teachers, frame, labels, epsilon=5e-4, delta=1e-6).chosen
              for _ in range(40)}
    assert chosen == {"coin", "good"}


def test_single_candidate_costs_nothing():
    frame, labels = _validation(10, seed=2)
    result = select_teacher({"good": Fixed("good")}, frame, labels, epsilon=1.0, delta=1e-6)
    assert result.chosen == "good" and isinstance(result.event, dpa.NoOpDpEvent)
    ledger = PrivacyLedger(delta=1e-6)
    ledger.record("teacher_selection", result.event)
    assert ledger.entries == ()


def test_selection_event_goes_into_the_ledger():
    frame, labels = _validation(200, seed=3)
    result = select_teacher({"a": Fixed("good"), "b": Fixed("coin")}, frame, labels,
                            epsilon=0.3, delta=1e-6)
    ledger = PrivacyLedger(delta=1e-6)
    ledger.record("teacher_selection", result.event, "report-noisy-max over 2 teachers")
    (entry,) = ledger.entries
    assert entry.mechanism == "gaussian"
    assert entry.noise_multiplier == pytest.approx(result.noise_std / math.sqrt(2))
    assert ledger.epsilon() == pytest.approx(0.3, rel=0.01)


def test_noise_comes_from_the_given_generator():
    frame, labels = _validation(100, seed=4)
    teachers = {"a": Fixed("good"), "b": Fixed("coin")}
    run = lambda seed: select_teacher(teachers, frame, labels, epsilon=0.3, delta=1e-6,  # noqa: E731
                                      rng=np.random.default_rng(seed)).noisy_scores
    assert run(1) == run(1)
    assert run(1) != run(2)
