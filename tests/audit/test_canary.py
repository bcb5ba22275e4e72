"""The one-run canary audit: exact values, validity on ε-DP mechanisms, and monotonicity."""

from __future__ import annotations

import math

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from scipy.optimize import brentq
from scipy.special import expit
from scipy.stats import binom

from medistill.audit.canary import (
    best_guess_counts,
    canary_audit,
    canary_epsilon_lower_bound,
    count_correct,
    epsilon_from_guesses,
    guess,
    one_run_p_value,
)


# ----------------------------------------------------------------------------- exact values
@pytest.mark.parametrize(("r", "v"), [(100, 80), (100, 95), (40, 30), (500, 300), (1000, 990)])
def test_pure_dp_bound_is_the_binomial_tail_of_randomized_response(r: int, v: int) -> None:
    """δ = 0: the largest ε with P[Binomial(r, e^ε/(1+e^ε)) ≥ v] ≤ 0.05, solved by brentq."""
    expected = brentq(lambda eps: binom.sf(v - 1, r, expit(eps)) - 0.05, 0.0, 50.0, xtol=1e-12)
    got = epsilon_from_guesses(2 * r, r, v, delta=0.0, confidence=0.95)
    assert got == pytest.approx(expected, abs=2e-6)
    assert got <= expected  # rounded down: still a valid lower bound


@pytest.mark.parametrize("r", [10, 100, 1000])
def test_all_guesses_correct_has_a_closed_form(r: int) -> None:
    """v = r: P[all correct] = q^r ≤ α  ⇔  ε ≤ logit(α^(1/r))."""
    q = 0.05 ** (1.0 / r)
    assert epsilon_from_guesses(r, r, r, delta=0.0) == pytest.approx(math.log(q / (1 - q)), abs=2e-6)


def _p_value_by_definition(m: int, r: int, v: int, eps: float, delta: float) -> float:
    """The theorem's bound written with binomial tails f(k) = P[B ≥ k], term by term."""
    q = math.exp(eps) / (1 + math.exp(eps))

    def f(k: int) -> float:
        return float(binom.sf(k - 1, r, q))

    extra = max((f(v - i) - f(v)) / i for i in range(1, v + 1))
    return min(1.0, f(v) + 2 * m * delta * extra)


@pytest.mark.parametrize(("m", "r", "v", "eps", "delta"), [
    (1000, 100, 80, 1.0, 1e-5), (1000, 200, 150, 0.5, 1e-4), (500, 50, 50, 2.0, 1e-3),
    (100, 100, 60, 0.0, 1e-2), (1000, 20, 1, 3.0, 1e-5), (10, 4, 0, 1.0, 0.1)])
def test_approximate_dp_p_value_matches_the_theorem(m, r, v, eps, delta) -> None:
    expected = 1.0 if v == 0 else _p_value_by_definition(m, r, v, eps, delta)
    assert one_run_p_value(m, r, v, eps, delta) == pytest.approx(expected, rel=1e-9, abs=1e-15)


def test_delta_only_weakens_the_bound() -> None:
    pure = epsilon_from_guesses(1000, 200, 170, delta=0.0)
    assert pure > 1.0
    weaker = [epsilon_from_guesses(1000, 200, 170, delta=d) for d in (1e-6, 1e-5, 1e-4, 1e-3)]
    assert all(a >= b for a, b in zip([pure, *weaker], weaker, strict=False))
    assert weaker[-1] < pure
    # 2mδ ≥ α: nothing can be rejected at all.
    assert epsilon_from_guesses(1000, 200, 200, delta=0.05) == 0.0


@settings(max_examples=60, deadline=None)
@given(r=st.integers(1, 400), delta=st.sampled_from([0.0, 1e-6, 1e-4]), data=st.data())
def test_bound_is_monotone_in_correct_guesses(r: int, delta: float, data) -> None:
    v = data.draw(st.integers(0, r - 1))
    m = 2 * r
    low = epsilon_from_guesses(m, r, v, delta=delta)
    high = epsilon_from_guesses(m, r, v + 1, delta=delta)
    assert high >= low - 1e-9
    assert epsilon_from_guesses(m, r, v, delta=delta, confidence=0.99) <= low + 1e-9


# ----------------------------------------------------------------------------- guessing
def test_guesses_take_the_extremes_and_break_ties_by_index() -> None:
    scores = np.array([0.5, 0.9, 0.1, 0.9, 0.5, 0.0])
    np.testing.assert_array_equal(guess(scores, k_pos=2, k_neg=1), [0, 1, 0, 1, 0, -1])
    g = guess(scores, k_pos=1, k_neg=3)
    assert g[1] == 1 and g[3] == 0  # tie at 0.9: the lower index is guessed
    assert list(g[[2, 5]]) == [-1, -1] and (g == -1).sum() == 3
    included = np.array([1, 1, 0, 0, 1, 0], dtype=bool)
    assert count_correct(scores, included, k_pos=2, k_neg=2) == (4, 3)
    with pytest.raises(ValueError):
        guess(scores, k_pos=4, k_neg=3)


def test_fixed_rule_for_guess_counts() -> None:
    assert best_guess_counts(1000) == (100, 100)
    assert best_guess_counts(1000, guess_fraction=1.0) == (500, 500)
    assert best_guess_counts(10, guess_fraction=0.01) == (1, 1)
    assert best_guess_counts(3, guess_fraction=1.0) == (1, 1)
    with pytest.raises(ValueError):
        best_guess_counts(1)


# ----------------------------------------------------------------------------- validity
def _randomized_response(m: int, eps: float, rng: np.random.Generator):
    """Each canary's inclusion bit passed through ε-randomized response (exactly ε-DP per
    canary); the score is the released bit plus tie-breaking noise that ignores inclusion."""
    included = rng.random(m) < 0.5
    keep = rng.random(m) < math.exp(eps) / (1 + math.exp(eps))
    released = np.where(keep, included, ~included)
    return released + 0.01 * rng.random(m), included


@pytest.mark.parametrize("eps", [0.5, 1.0, 2.0, 4.0])
@pytest.mark.parametrize("delta", [0.0, 1e-5])
def test_bound_never_exceeds_the_true_epsilon_of_randomized_response(eps: float, delta: float) -> None:
    m, seeds = 1000, 100
    exceed_fixed = exceed_grid = 0
    bounds = []
    for seed in range(seeds):
        scores, included = _randomized_response(m, eps, np.random.default_rng(seed))
        k = best_guess_counts(m, guess_fraction=1.0)
        bound = canary_epsilon_lower_bound(scores, included, k_pos=k[0], k_neg=k[1],
                                           delta=delta, confidence=0.95)
        bounds.append(bound)
        exceed_fixed += bound > eps
        exceed_grid += canary_audit(scores, included, delta=delta)["epsilon_lower_bound"] > eps
    assert exceed_fixed <= 0.05 * seeds and exceed_grid <= 0.05 * seeds
    # ... and it has power: the median bound recovers most of ε.
    assert np.median(bounds) > 0.6 * eps


def test_random_guessing_gives_no_evidence() -> None:
    zero = 0
    for seed in range(100):
        rng = np.random.default_rng(seed)
        included = rng.random(500) < 0.5
        scores = rng.normal(size=500)  # independent of inclusion: ε = 0 is the truth
        k_pos, k_neg = best_guess_counts(500)
        zero += canary_epsilon_lower_bound(scores, included, k_pos=k_pos, k_neg=k_neg,
                                           delta=1e-5) == 0.0
    assert zero >= 90


def test_canary_audit_reports_every_count_tried() -> None:
    scores, included = _randomized_response(400, 3.0, np.random.default_rng(0))
    report = canary_audit(scores, included, delta=1e-5)
    assert report["n_canaries"] == 400 and 0 < report["n_included"] < 400
    assert len(report["trials"]) == 6
    best = max(t["epsilon_lower_bound"] for t in report["trials"])
    assert report["epsilon_lower_bound"] == best > 1.0
    # Bonferroni: each count is tested at a stricter level than it would be alone.
    for trial in report["trials"]:
        alone = canary_epsilon_lower_bound(scores, included, k_pos=trial["k_pos"],
                                           k_neg=trial["k_neg"], delta=1e-5)
        assert trial["epsilon_lower_bound"] <= alone
