"""Membership-inference attacks with reference models: LiRA and RMIA, on plain arrays.

These functions know nothing about how models are trained. The caller trains reference
models on random halves of a population set (:mod:`medistill.audit.reference_models`),
queries the target and every reference model on the same points, and passes the arrays:

- ``lira_scores`` — the likelihood-ratio attack of Carlini et al., "Membership Inference
  Attacks From First Principles" (IEEE S&P 2022). The signal is the logit-scaled confidence
  φ(p) = log(p / (1 − p)) of the true class; its distribution over reference models that
  did (IN) or did not (OUT) train on a point is modelled as a Gaussian.
- ``rmia_scores`` — the relative attack of Zarifzadeh et al., "Low-Cost High-Power
  Membership Inference Attacks" (ICML 2024): the likelihood ratio Pr(x|θ)/Pr(x) of a point
  is compared with that of population points z that no model under attack trained on.

Every score is oriented the same way as :func:`medistill.audit.mia.log_likelihood`: higher
means "more likely a member". Scores are always finite.
"""

from __future__ import annotations

import math

import numpy as np
from scipy.stats import norm
from sklearn.metrics import roc_auc_score

from medistill.audit.mia import loss_threshold_attack

#: Smallest probability used before a logarithm or a division (|φ| ≤ log(1/1e-12) ≈ 27.6).
PROBABILITY_FLOOR = 1e-12
#: Smallest standard deviation of a LiRA Gaussian, in logit units.
MIN_STD = 1e-3


# --------------------------------------------------------------------------- signals
def true_class_probability(probabilities: np.ndarray, labels: np.ndarray) -> np.ndarray:
    """The probability each row gives its true class (the RMIA signal Pr(x|θ))."""
    probabilities, labels = _check_probabilities(probabilities, labels)
    return probabilities[np.arange(len(labels)), labels]


def logit_confidence(probabilities: np.ndarray, labels: np.ndarray, *,
                     floor: float = PROBABILITY_FLOOR) -> np.ndarray:
    """φ = log(p_true) − log(Σ_{j≠y} p_j), the LiRA signal, computed without cancellation.

    ``1 − p_true`` is summed from the other classes rather than subtracted, so confident
    predictions keep their resolution; both terms are floored at ``floor`` so that
    probabilities of exactly 0 or 1 give a finite φ (±log(1/floor)).
    """
    probabilities, labels = _check_probabilities(probabilities, labels)
    rows = np.arange(len(labels))
    p_true = probabilities[rows, labels]
    others = probabilities.copy()
    others[rows, labels] = 0.0
    p_rest = others.sum(axis=1)
    return np.log(np.maximum(p_true, floor)) - np.log(np.maximum(p_rest, floor))


def _check_probabilities(probabilities: np.ndarray, labels: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    probabilities = np.asarray(probabilities, dtype=np.float64)
    labels = np.asarray(labels)
    if probabilities.ndim != 2 or labels.ndim != 1 or len(labels) != len(probabilities):
        raise ValueError("probabilities must be [n, n_classes] and labels [n]; got shapes "
                         f"{probabilities.shape} and {labels.shape}.")
    if len(labels) and (labels.min() < 0 or labels.max() >= probabilities.shape[1]):
        raise ValueError("labels must be class indices in [0, n_classes).")
    return probabilities, labels.astype(np.intp)


# --------------------------------------------------------------------------- LiRA
def _masked_moments(values: np.ndarray, mask: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Per-column count, mean (NaN where empty) and sum of squared residuals over ``mask``."""
    count = mask.sum(axis=0)
    total = np.where(mask, values, 0.0).sum(axis=0)
    with np.errstate(invalid="ignore", divide="ignore"):
        mean = np.where(count > 0, total / np.maximum(count, 1), np.nan)
    resid = np.where(mask, values - np.nan_to_num(mean), 0.0)
    return count, mean, (resid ** 2).sum(axis=0)


def _std(count: np.ndarray, sq: np.ndarray, fixed_variance: bool) -> np.ndarray:
    """Global (pooled within-point) or per-point standard deviation, floored at MIN_STD.

    The pooled estimate is the variance of each reference confidence around its own point's
    mean, over all points: the paper's "global variance" for few reference models. Points
    with fewer than two reference values fall back to it in per-point mode.
    """
    dof = int(np.sum(np.maximum(count - 1, 0)))
    pooled = math.sqrt(float(sq.sum()) / dof) if dof > 0 else MIN_STD
    pooled = max(pooled, MIN_STD)
    if fixed_variance:
        return np.full(count.shape, pooled)
    with np.errstate(invalid="ignore", divide="ignore"):
        own = np.sqrt(sq / np.maximum(count - 1, 1))
    return np.maximum(np.where(count >= 2, own, pooled), MIN_STD)


def lira_scores(target_logit_conf: np.ndarray, ref_logit_conf: np.ndarray, inclusion: np.ndarray,
                *, online: bool, fixed_variance: bool = True) -> np.ndarray:
    """LiRA membership scores for ``n`` points (higher = more likely a member).

    ``target_logit_conf`` [n] is φ of the target model, ``ref_logit_conf`` [R, n] that of
    ``R`` reference models, ``inclusion`` [R, n] whether reference model r trained on point
    i (see :func:`logit_confidence`).

    - **offline** (``online=False``): only OUT reference models are used; the score is
      −log of the one-sided p-value Pr[N(μ_out, σ_out) ≥ φ_target], so a confidence far
      above what models that never saw the point produce scores high.
    - **online**: the log likelihood ratio log N(φ; μ_in, σ_in) − log N(φ; μ_out, σ_out).
      A point with no IN (or no OUT) reference model borrows the mean IN−OUT shift of the
      other points.
    - ``fixed_variance=True`` (the default, advised for fewer than ~64 reference models)
      pools one variance per side over all points instead of estimating it per point.
    """
    target = np.asarray(target_logit_conf, dtype=np.float64)
    ref = np.asarray(ref_logit_conf, dtype=np.float64)
    inclusion = np.asarray(inclusion, dtype=bool)
    if ref.ndim != 2 or ref.shape != inclusion.shape or target.shape != (ref.shape[1],):
        raise ValueError("Expected target [n], reference [R, n] and inclusion [R, n]; got "
                         f"{target.shape}, {ref.shape} and {inclusion.shape}.")
    if not (np.all(np.isfinite(target)) and np.all(np.isfinite(ref))):
        raise ValueError("LiRA confidences must be finite; use logit_confidence().")
    n_out, mu_out, sq_out = _masked_moments(ref, ~inclusion)
    n_in, mu_in, sq_in = _masked_moments(ref, inclusion)
    both = (n_in > 0) & (n_out > 0)
    shift = float(np.mean(mu_in[both] - mu_out[both])) if both.any() else None

    if not online:
        if not (n_out > 0).any():
            raise ValueError("Offline LiRA needs OUT reference models: no point has one.")
        if (n_out == 0).any():
            if shift is None:
                raise ValueError("Some points have no OUT reference model and no IN/OUT pair "
                                 "exists to estimate the shift.")
            mu_out = np.where(n_out > 0, mu_out, mu_in - shift)
        sd_out = _std(n_out, sq_out, fixed_variance)
        return -norm.logsf(target, loc=mu_out, scale=sd_out)

    if shift is None:
        raise ValueError("Online LiRA needs, for some points, both IN and OUT reference "
                         "models; plan them with plan_reference_inclusion().")
    mu_in = np.where(n_in > 0, mu_in, mu_out + shift)
    mu_out = np.where(n_out > 0, mu_out, mu_in - shift)
    sd_in = _std(n_in, sq_in, fixed_variance)
    sd_out = _std(n_out, sq_out, fixed_variance)
    return (norm.logpdf(target, loc=mu_in, scale=sd_in)
            - norm.logpdf(target, loc=mu_out, scale=sd_out))


# --------------------------------------------------------------------------- RMIA
def _masked_mean(values: np.ndarray, mask: np.ndarray) -> np.ndarray:
    count = mask.sum(axis=0)
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(count > 0, np.where(mask, values, 0.0).sum(axis=0) / np.maximum(count, 1),
                        np.nan)


def _online_marginal(values: np.ndarray, mask: np.ndarray | None) -> np.ndarray:
    """Pr(x) as the mean over reference models, balanced as ½(IN + OUT) where both exist."""
    overall = values.mean(axis=0)
    if mask is None:
        return overall
    mean_in, mean_out = _masked_mean(values, mask), _masked_mean(values, ~mask)
    both = np.isfinite(mean_in) & np.isfinite(mean_out)
    return np.where(both, 0.5 * (np.nan_to_num(mean_in) + np.nan_to_num(mean_out)), overall)


def _offline_marginal(mean_out: np.ndarray, a: float) -> np.ndarray:
    """Pr(x) ≈ ½((1 + a)·Pr_OUT(x) + (1 − a)): Pr_IN(x) modelled as a·Pr_OUT(x) + (1 − a)."""
    return 0.5 * ((1.0 + a) * mean_out + (1.0 - a))


def rmia_scores(target_p_x: np.ndarray, ref_p_x: np.ndarray, target_p_z: np.ndarray,
                ref_p_z: np.ndarray, *, gamma: float = 1.0, offline_a: float | None = None,
                inclusion: np.ndarray | None = None,
                inclusion_z: np.ndarray | None = None, tie_break: bool = True) -> np.ndarray:
    """RMIA membership scores for ``n`` points x against ``m`` population points z.

    Inputs are true-class probabilities (:func:`true_class_probability`): of the target
    model on x [n] and z [m], and of ``R`` reference models on x [R, n] and z [R, m]. The
    z points must be non-members of the target model. ``inclusion`` [R, n] and
    ``inclusion_z`` [R, m] say which reference models trained on which point; None means
    "none did".

    LR(x) = Pr(x|θ) / Pr(x), and the score of x is the fraction of z with
    LR(x) / LR(z) ≥ ``gamma`` (a value in [0, 1]). That fraction is a step function of
    LR(x), so with few z many points tie (e.g. every point that beats all z scores 1),
    which hides the low-FPR end of the ROC. ``tie_break=True`` adds
    LR(x) / (1 + LR(x)) / (2m) — less than half a step, so it never reorders points whose
    fractions differ, and only orders tied points by their own likelihood ratio.

    - **online** (``offline_a=None``): Pr(x) is the mean over the reference models — when
      inclusion is given, ½(mean over IN + mean over OUT) for points that have both, so an
      unbalanced plan does not bias it; the same for Pr(z).
    - **offline** (``offline_a=a`` in [0, 1]): only OUT models of each point are used and
      Pr(x) = ½((1 + a)·mean_OUT + (1 − a)); the same approximation for Pr(z).
      :func:`tune_offline_a` picks ``a`` from the reference models alone.
    """
    if gamma <= 0:
        raise ValueError(f"gamma must be positive. Got {gamma}.")
    px = np.maximum(np.asarray(target_p_x, dtype=np.float64), PROBABILITY_FLOOR)
    pz = np.maximum(np.asarray(target_p_z, dtype=np.float64), PROBABILITY_FLOOR)
    rx = np.maximum(np.asarray(ref_p_x, dtype=np.float64), PROBABILITY_FLOOR)
    rz = np.maximum(np.asarray(ref_p_z, dtype=np.float64), PROBABILITY_FLOOR)
    if rx.ndim != 2 or rz.ndim != 2 or rx.shape[0] != rz.shape[0] or px.shape != (rx.shape[1],) \
            or pz.shape != (rz.shape[1],):
        raise ValueError("Expected target_p_x [n], ref_p_x [R, n], target_p_z [m], ref_p_z "
                         f"[R, m]; got {px.shape}, {rx.shape}, {pz.shape}, {rz.shape}.")
    if len(pz) == 0:
        raise ValueError("RMIA needs at least one population point z.")
    mask = None if inclusion is None else np.asarray(inclusion, dtype=bool)
    if mask is not None and mask.shape != rx.shape:
        raise ValueError(f"inclusion must have the shape of ref_p_x {rx.shape}; got {mask.shape}.")

    mask_z = None if inclusion_z is None else np.asarray(inclusion_z, dtype=bool)
    if mask_z is not None and mask_z.shape != rz.shape:
        raise ValueError(f"inclusion_z must have the shape of ref_p_z {rz.shape}; got "
                         f"{mask_z.shape}.")
    if offline_a is None:
        pr_x, pr_z = _online_marginal(rx, mask), _online_marginal(rz, mask_z)
    else:
        a = float(offline_a)
        if not 0.0 <= a <= 1.0:
            raise ValueError(f"offline_a must be in [0, 1]. Got {offline_a}.")
        mean_out_x = _masked_mean(rx, np.ones_like(rx, dtype=bool) if mask is None else ~mask)
        mean_out_z = _masked_mean(rz, np.ones_like(rz, dtype=bool) if mask_z is None else ~mask_z)
        if np.isnan(mean_out_x).any() or np.isnan(mean_out_z).any():
            raise ValueError("Offline RMIA needs at least one OUT reference model for every "
                             "point; plan them with plan_reference_inclusion().")
        pr_x, pr_z = _offline_marginal(mean_out_x, a), _offline_marginal(mean_out_z, a)
    ratio_x = px / np.maximum(pr_x, PROBABILITY_FLOOR)
    ratio_z = np.sort(pz / np.maximum(pr_z, PROBABILITY_FLOOR))
    # LR(x)/LR(z) ≥ γ  ⇔  LR(z) ≤ LR(x)/γ (all ratios are positive).
    m = len(ratio_z)
    score = np.searchsorted(ratio_z, ratio_x / gamma, side="right") / m
    if tie_break:
        score = score + ratio_x / (1.0 + ratio_x) / (2.0 * m)
    return score


def tune_offline_a(ref_p_x: np.ndarray, inclusion: np.ndarray, ref_p_z: np.ndarray, *,
                   inclusion_z: np.ndarray | None = None,
                   grid: tuple[float, ...] = tuple(np.round(np.arange(0.0, 1.01, 0.1), 2)),
                   max_targets: int = 4) -> float:
    """The offline ``a`` that best attacks the reference models themselves.

    Each of up to ``max_targets`` reference models plays the target, attacked with the OUT
    predictions of the others (against the z points it did not train on); the ``a`` with
    the highest mean AUC wins. Only reference models are used, so the choice never peeks
    at the real target's members. 0.3 (ML Privacy Meter's default) when nothing can be
    tuned.
    """
    rx, rz = np.asarray(ref_p_x, dtype=np.float64), np.asarray(ref_p_z, dtype=np.float64)
    mask = np.asarray(inclusion, dtype=bool)
    mask_z = np.zeros(rz.shape, dtype=bool) if inclusion_z is None else np.asarray(inclusion_z, bool)
    n_models = rx.shape[0]
    aucs, used = np.zeros(len(grid)), 0
    for r in range(min(max_targets, n_models) if n_models >= 2 else 0):
        others = np.arange(n_models) != r
        cols = (~mask[others]).any(axis=0)               # x with an OUT model among the others
        zs = ~mask_z[r] & (~mask_z[others]).any(axis=0)  # z the pseudo-target never saw
        truth = mask[r, cols]
        if truth.all() or not truth.any() or not zs.any():
            continue
        used += 1
        for g, a in enumerate(grid):
            scores = rmia_scores(rx[r, cols], rx[others][:, cols], rz[r, zs], rz[others][:, zs],
                                 offline_a=float(a), inclusion=mask[others][:, cols],
                                 inclusion_z=mask_z[others][:, zs])
            aucs[g] += roc_auc_score(truth, scores)
    return float(grid[int(np.argmax(aucs))]) if used else 0.3


# --------------------------------------------------------------------------- reporting
def attack_result(name: str, scores: np.ndarray, is_member: np.ndarray, *, delta: float,
                  rng: np.random.Generator) -> dict:
    """The report's per-attack block (AUC with CI, TPR at 1 %/0.1 % FPR with
    Clopper–Pearson intervals, ε lower bound, ROC) for any score vector."""
    scores = np.asarray(scores, dtype=np.float64)
    is_member = np.asarray(is_member, dtype=bool)
    if scores.shape != is_member.shape:
        raise ValueError(f"scores {scores.shape} and is_member {is_member.shape} differ.")
    if not np.all(np.isfinite(scores)):
        raise ValueError(f"attack {name!r} produced non-finite scores.")
    result = loss_threshold_attack(scores[is_member], scores[~is_member], delta=delta, rng=rng)
    result["name"] = name
    return result


__all__ = ["MIN_STD", "PROBABILITY_FLOOR", "attack_result", "lira_scores", "logit_confidence",
           "rmia_scores", "true_class_probability", "tune_offline_a"]
