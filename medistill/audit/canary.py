"""The one-run canary audit: an ε lower bound from a single training run.

Steinke, Nasr and Jagielski, "Privacy Auditing with One (1) Training Run" (NeurIPS 2023).
m canaries are each included in training independently with probability ½. After training
the auditor scores every canary, guesses "in" for the ``k_pos`` highest scores and "out"
for the ``k_neg`` lowest, and abstains on the rest. If the training algorithm is (ε, δ)-DP
then, for r guesses of which W are correct (their Theorem 5.2 / Appendix D),

    P[W ≥ v] ≤ f(v) + 2·m·δ · max_{i=1..v} (f(v − i) − f(v)) / i,
    f(k) = P[Binomial(r, e^ε / (1 + e^ε)) ≥ k].

The lower bound at confidence c is the largest ε whose p-value is still below 1 − c: any
smaller ε is rejected. For δ = 0 it is exactly a binomial tail test against randomized
response with parameter ε.

Validity needs the guesses to depend on the trained model (the scores) and on public
information only — never on which canaries were really included. :func:`best_guess_counts`
is therefore a fixed rule, and :func:`canary_audit` may try several guess counts only by
splitting the error probability between them (Bonferroni).
"""

from __future__ import annotations

import numpy as np
from scipy.special import bdtrc, expit, gammaln, xlog1py, xlogy

#: Guess fractions tried by :func:`canary_audit` (share of canaries guessed, half per side).
DEFAULT_GUESS_FRACTIONS = (0.02, 0.05, 0.1, 0.2, 0.5, 1.0)
_EPS_CAP = 1000.0


def one_run_p_value(m: int, r: int, v: int, epsilon: float, delta: float) -> float:
    """Upper bound on P[≥ v correct of r guesses] for m canaries under (ε, δ)-DP."""
    _check_counts(m, r, v)
    if epsilon < 0 or not 0.0 <= delta <= 1.0:
        raise ValueError(f"Need ε ≥ 0 and δ in [0, 1]; got ε={epsilon}, δ={delta}.")
    if v == 0:
        return 1.0
    q = float(expit(epsilon))
    tail = float(bdtrc(v - 1, r, q))  # f(v) = P[B ≥ v] = P[B > v − 1]
    if delta == 0.0:
        return min(tail, 1.0)
    # f(v − i) − f(v) = P[v − i ≤ B ≤ v − 1] = Σ_{j=1..i} pmf(v − j), summed from j = 1 up.
    k = np.arange(v - 1, -1, -1, dtype=np.float64)
    log_pmf = (gammaln(r + 1.0) - gammaln(k + 1.0) - gammaln(r - k + 1.0)
               + xlogy(k, q) + xlog1py(r - k, -q))
    mass = np.cumsum(np.exp(log_pmf))
    alpha = float(np.max(mass / np.arange(1, v + 1)))
    return min(tail + 2.0 * m * delta * alpha, 1.0)


def epsilon_from_guesses(m: int, r: int, v: int, *, delta: float, confidence: float = 0.95,
                         tolerance: float = 1e-6) -> float:
    """Largest ε (to ``tolerance``, rounded down) that the audit rejects at ``confidence``:
    ``one_run_p_value(m, r, v, ε, δ) < 1 − confidence``. 0 when nothing is rejected."""
    _check_counts(m, r, v)
    if not 0.0 < confidence < 1.0:
        raise ValueError(f"confidence must be in (0, 1). Got {confidence}.")
    alpha = 1.0 - confidence

    def rejected(eps: float) -> bool:
        return one_run_p_value(m, r, v, eps, delta) < alpha

    if not rejected(0.0):
        return 0.0
    low, high = 0.0, 1.0  # invariant: rejected(low), not rejected(high)
    while rejected(high):
        low, high = high, 2.0 * high
        if high > _EPS_CAP:
            return _EPS_CAP
    while high - low > tolerance:
        mid = 0.5 * (low + high)
        low, high = (mid, high) if rejected(mid) else (low, mid)
    return low


def _check_counts(m: int, r: int, v: int) -> None:
    if not 0 <= v <= r <= m:
        raise ValueError(f"Need 0 ≤ correct ≤ guesses ≤ canaries; got {v}, {r}, {m}.")


def guess(scores: np.ndarray, *, k_pos: int, k_neg: int) -> np.ndarray:
    """+1 ("in") for the ``k_pos`` highest scores, −1 ("out") for the ``k_neg`` lowest,
    0 (abstain) otherwise. Ties are broken by canary index, never by inclusion."""
    scores = np.asarray(scores, dtype=np.float64)
    m = len(scores)
    if k_pos < 0 or k_neg < 0 or k_pos + k_neg > m:
        raise ValueError(f"Need k_pos, k_neg ≥ 0 and k_pos + k_neg ≤ {m} canaries; got "
                         f"{k_pos} and {k_neg}.")
    if np.isnan(scores).any():
        raise ValueError("Canary scores must not be NaN.")
    order = np.lexsort((np.arange(m), -scores))  # descending score, then index
    guesses = np.zeros(m, dtype=np.int8)
    guesses[order[:k_pos]] = 1
    if k_neg:
        guesses[order[m - k_neg:]] = -1
    return guesses


def count_correct(scores: np.ndarray, included: np.ndarray, *, k_pos: int, k_neg: int) -> tuple[int, int]:
    """(number of guesses r, number of correct guesses v)."""
    included = np.asarray(included, dtype=bool)
    if included.shape != np.shape(scores):
        raise ValueError(f"scores {np.shape(scores)} and included {included.shape} differ.")
    g = guess(scores, k_pos=k_pos, k_neg=k_neg)
    correct = int(np.sum((g == 1) & included) + np.sum((g == -1) & ~included))
    return int(np.sum(g != 0)), correct


def canary_epsilon_lower_bound(scores: np.ndarray, included: np.ndarray, *, k_pos: int, k_neg: int,
                               delta: float, confidence: float = 0.95) -> float:
    """The one-run ε lower bound for fixed guess counts (Steinke et al. 2023).

    ``scores`` [m]: higher = more likely included; ``included`` [m]: the canaries' true
    coin flips. ``k_pos``/``k_neg`` must be chosen without looking at ``included``
    (e.g. :func:`best_guess_counts`).
    """
    r, v = count_correct(scores, included, k_pos=k_pos, k_neg=k_neg)
    return epsilon_from_guesses(len(included), r, v, delta=delta, confidence=confidence)


def best_guess_counts(m: int, *, guess_fraction: float = 0.2) -> tuple[int, int]:
    """The fixed rule for (k_pos, k_neg): guess on ``guess_fraction`` of the m canaries,
    half "in" (highest scores) and half "out" (lowest), at least one each.

    It depends on m only — never on the scores' correctness, which would invalidate the
    bound. 0.2 suits black-box attacks whose extreme scores are the reliable ones; for an
    attack whose every guess is equally good (e.g. randomized response) 1.0 is best.
    """
    if m < 2:
        raise ValueError(f"The canary audit needs at least 2 canaries. Got {m}.")
    if not 0.0 < guess_fraction <= 1.0:
        raise ValueError(f"guess_fraction must be in (0, 1]. Got {guess_fraction}.")
    per_side = max(1, int(round(guess_fraction * m / 2)))
    per_side = min(per_side, m // 2)
    return per_side, per_side


def canary_audit(scores: np.ndarray, included: np.ndarray, *, delta: float,
                 confidence: float = 0.95,
                 guess_fractions: tuple[float, ...] = DEFAULT_GUESS_FRACTIONS) -> dict:
    """The one-run audit over several fixed guess counts, Bonferroni-corrected.

    Each of the G guess counts is tested at confidence 1 − (1 − confidence)/G, so the
    largest of their bounds still holds at ``confidence``. Returns the bound and, for the
    report, every count tried.
    """
    included = np.asarray(included, dtype=bool)
    m = len(included)
    counts = sorted({best_guess_counts(m, guess_fraction=f) for f in guess_fractions})
    level = 1.0 - (1.0 - confidence) / len(counts)
    trials = []
    for k_pos, k_neg in counts:
        r, v = count_correct(scores, included, k_pos=k_pos, k_neg=k_neg)
        eps = epsilon_from_guesses(m, r, v, delta=delta, confidence=level)
        trials.append({"k_pos": k_pos, "k_neg": k_neg, "guesses": r, "correct": v,
                       "epsilon_lower_bound": eps})
    best = max(trials, key=lambda t: t["epsilon_lower_bound"])
    return {"method": "one-run canary audit (Steinke, Nasr, Jagielski 2023), Bonferroni over "
                      f"{len(counts)} guess counts",
            "n_canaries": m, "n_included": int(included.sum()), "delta": float(delta),
            "confidence": float(confidence), "epsilon_lower_bound": best["epsilon_lower_bound"],
            "k_pos": best["k_pos"], "k_neg": best["k_neg"], "trials": trials}


__all__ = ["DEFAULT_GUESS_FRACTIONS", "best_guess_counts", "canary_audit",
           "canary_epsilon_lower_bound", "count_correct", "epsilon_from_guesses", "guess",
           "one_run_p_value"]
