"""Membership inference: the loss-threshold attack, its ROC, and an empirical ε lower bound.

Members are sensitive train patients, non-members are holdout patients (never trained on).
Scores are per row (one row per patient); a higher score means "more likely a member".
"""

from __future__ import annotations

import math

import numpy as np
from scipy.stats import binomtest
from sklearn.metrics import roc_auc_score, roc_curve

FPR_LEVELS = (0.01, 0.001)


def log_likelihood(probabilities: np.ndarray, labels: np.ndarray) -> np.ndarray:
    """log p(true label) per row, i.e. minus the cross-entropy loss: higher = more likely a
    member. Probabilities are floored at 1e-12 so a confident mistake stays finite."""
    p_true = probabilities[np.arange(len(labels)), labels]
    return np.log(np.clip(p_true, 1e-12, 1.0))


def clopper_pearson(successes: int, trials: int, confidence: float = 0.95) -> tuple[float, float]:
    """Exact two-sided binomial confidence interval."""
    if trials == 0:
        return 0.0, 1.0
    ci = binomtest(successes, trials).proportion_ci(confidence_level=confidence, method="exact")
    return float(ci.low), float(ci.high)


def tpr_at_fpr(member: np.ndarray, nonmember: np.ndarray, fpr: float) -> tuple[float, float, list[float]]:
    """TPR at the threshold that lets at most ``fpr`` of non-members through, with its
    Clopper–Pearson interval; also the achieved FPR."""
    k = int(math.floor(fpr * len(nonmember)))
    ordered = np.sort(nonmember)[::-1]
    threshold = ordered[k] if k < len(ordered) else -np.inf  # strictly above the (k+1)-th score
    hits = int(np.sum(member > threshold))
    lo, hi = clopper_pearson(hits, len(member))
    return hits / len(member), float(np.mean(nonmember > threshold)), [lo, hi]


def auc_confidence_interval(member: np.ndarray, nonmember: np.ndarray, *, rng: np.random.Generator,
                            n_boot: int = 200) -> list[float]:
    """95 % bootstrap interval of the attack AUC."""
    aucs = []
    for _ in range(n_boot):
        m = rng.choice(member, size=len(member))
        n = rng.choice(nonmember, size=len(nonmember))
        aucs.append(roc_auc_score(np.r_[np.ones(len(m)), np.zeros(len(n))], np.r_[m, n]))
    return [float(np.percentile(aucs, 2.5)), float(np.percentile(aucs, 97.5))]


def epsilon_lower_bound(member: np.ndarray, nonmember: np.ndarray, *, delta: float,
                        rng: np.random.Generator, confidence: float = 0.95) -> float:
    """A statistically valid ε lower bound from the attack (Jagielski et al. 2020).

    The threshold is chosen on one random half of the scores and evaluated on the other,
    with Clopper–Pearson bounds: ε ≥ log((TPR_low − δ) / FPR_high), and the same for the
    complementary test. 0 when nothing can be concluded.
    """
    m_idx, n_idx = rng.permutation(len(member)), rng.permutation(len(nonmember))
    m_sel, m_eval = member[m_idx[::2]], member[m_idx[1::2]]
    n_sel, n_eval = nonmember[n_idx[::2]], nonmember[n_idx[1::2]]
    if len(m_eval) == 0 or len(n_eval) == 0:
        return 0.0
    best, best_t = -np.inf, None
    for t in np.unique(np.r_[m_sel, n_sel]):
        tpr, fpr = np.mean(m_sel >= t), np.mean(n_sel >= t)
        est = math.log(max(tpr, 1e-12) / max(fpr, 1.0 / len(n_sel)))
        if est > best:
            best, best_t = est, t
    if best_t is None:
        return 0.0
    alpha = 1 - confidence
    tp, fp = int(np.sum(m_eval >= best_t)), int(np.sum(n_eval >= best_t))
    tpr_low = clopper_pearson(tp, len(m_eval), 1 - alpha)[0]
    fpr_high = clopper_pearson(fp, len(n_eval), 1 - alpha)[1]
    if tpr_low - delta <= 0 or fpr_high <= 0:
        return 0.0
    return max(0.0, math.log((tpr_low - delta) / fpr_high))


def _roc_points(member: np.ndarray, nonmember: np.ndarray, max_points: int = 200) -> dict[str, list[float]]:
    fpr, tpr, _ = roc_curve(np.r_[np.ones(len(member)), np.zeros(len(nonmember))],
                            np.r_[member, nonmember])
    keep = np.unique(np.r_[0, np.geomspace(1, len(fpr) - 1, max_points).astype(int)])
    return {"fpr": [float(x) for x in fpr[keep]], "tpr": [float(x) for x in tpr[keep]]}


def loss_threshold_attack(member_scores: np.ndarray, nonmember_scores: np.ndarray, *,
                          delta: float, rng: np.random.Generator) -> dict:
    """AUC (with CI), TPR at 1 % and 0.1 % FPR (with CIs), ε lower bound and ROC points."""
    y = np.r_[np.ones(len(member_scores)), np.zeros(len(nonmember_scores))]
    auc = float(roc_auc_score(y, np.r_[member_scores, nonmember_scores]))
    tpr, tpr_ci = {}, {}
    for level in FPR_LEVELS:
        value, _, ci = tpr_at_fpr(member_scores, nonmember_scores, level)
        tpr[str(level)], tpr_ci[str(level)] = value, ci
    return {"name": "loss_threshold", "auc": auc,
            "auc_ci": auc_confidence_interval(member_scores, nonmember_scores, rng=rng),
            "tpr_at_fpr": tpr, "tpr_at_fpr_ci": tpr_ci,
            "epsilon_lower_bound": epsilon_lower_bound(member_scores, nonmember_scores,
                                                       delta=delta, rng=rng),
            "n_members": int(len(member_scores)), "n_nonmembers": int(len(nonmember_scores)),
            "roc": _roc_points(member_scores, nonmember_scores)}


def summarise(attacks: list[dict]) -> dict:
    """The report's per-model MIA block: the strongest attack's numbers, and all attacks."""
    strongest = max(attacks, key=lambda a: a["auc"])
    keys = ("auc", "auc_ci", "tpr_at_fpr", "tpr_at_fpr_ci")
    return {**{k: strongest[k] for k in keys},
            "epsilon_lower_bound": max(a["epsilon_lower_bound"] for a in attacks),
            "attacks": attacks}


__all__ = ["FPR_LEVELS", "auc_confidence_interval", "clopper_pearson", "epsilon_lower_bound",
           "log_likelihood", "loss_threshold_attack", "summarise", "tpr_at_fpr"]
