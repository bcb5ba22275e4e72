"""Utility metrics on the sensitive test split and retention ratios."""

from __future__ import annotations

import math

import numpy as np
from sklearn.metrics import accuracy_score, average_precision_score, roc_auc_score
from sklearn.preprocessing import label_binarize


def expected_calibration_error(labels: np.ndarray, probabilities: np.ndarray, n_bins: int = 10) -> float:
    """ECE of the top-class confidence over ``n_bins`` equal-width bins."""
    confidence = probabilities.max(axis=1)
    correct = probabilities.argmax(axis=1) == labels
    edges = np.linspace(0.0, 1.0, n_bins + 1)
    bins = np.clip(np.digitize(confidence, edges[1:-1], right=True), 0, n_bins - 1)
    ece = 0.0
    for b in range(n_bins):
        mask = bins == b
        if mask.any():
            ece += mask.mean() * abs(correct[mask].mean() - confidence[mask].mean())
    return float(ece)


def calibration_line(labels: np.ndarray, p1: np.ndarray) -> tuple[float, float]:
    """Calibration slope and intercept (Cox 1958; Van Calster et al. 2019): the logistic
    regression of the outcome on the logit of the predicted risk, unpenalised. A calibrated
    model has slope 1 and intercept 0; slope < 1 means overconfident risks."""
    from sklearn.linear_model import LogisticRegression

    p = np.clip(p1, 1e-6, 1 - 1e-6)
    logit = np.log(p / (1 - p)).reshape(-1, 1)
    if len(np.unique(labels)) < 2:
        return math.nan, math.nan
    fit = LogisticRegression(C=1e6, max_iter=1000).fit(logit, labels)
    return float(fit.coef_[0, 0]), float(fit.intercept_[0])


def reliability_bins(labels: np.ndarray, p1: np.ndarray, n_bins: int = 10,
                     min_count: int = 10) -> list[dict]:
    """Observed event rate against mean predicted risk per equal-width risk bin, for the
    reliability plot (aggregates only; bins with fewer than ``min_count`` patients are
    left out)."""
    edges = np.linspace(0.0, 1.0, n_bins + 1)
    bins = np.clip(np.digitize(p1, edges[1:-1], right=True), 0, n_bins - 1)
    out = []
    for b in range(n_bins):
        mask = bins == b
        if mask.sum() >= min_count:
            out.append({"predicted": float(p1[mask].mean()), "observed": float(labels[mask].mean()),
                        "n": int(mask.sum())})
    return out


def utility_metrics(labels: np.ndarray, probabilities: np.ndarray) -> dict[str, float]:
    """AUROC, AUPRC, accuracy, Brier score and ECE (one-vs-rest macro for multi-class)."""
    n_classes = probabilities.shape[1]
    onehot = label_binarize(labels, classes=list(range(n_classes)))
    if n_classes == 2:
        onehot = np.hstack([1 - onehot, onehot])
        auroc = roc_auc_score(labels, probabilities[:, 1])
        auprc = average_precision_score(labels, probabilities[:, 1])
    else:
        auroc = roc_auc_score(labels, probabilities, multi_class="ovr", average="macro")
        auprc = average_precision_score(onehot, probabilities, average="macro")
    brier = float(np.mean(np.sum((probabilities - onehot) ** 2, axis=1)))
    if n_classes == 2:
        brier /= 2.0  # the usual binary Brier score: mean squared error of P(class 1)
    metrics = {"auroc": float(auroc), "auprc": float(auprc),
               "accuracy": float(accuracy_score(labels, probabilities.argmax(axis=1))),
               "brier": brier, "ece": expected_calibration_error(labels, probabilities)}
    if n_classes == 2:
        slope, intercept = calibration_line(labels, probabilities[:, 1])
        if math.isfinite(slope) and math.isfinite(intercept):
            metrics.update(calibration_slope=slope, calibration_intercept=intercept)
        metrics["calibration_in_the_large"] = float(labels.mean() - probabilities[:, 1].mean())
    return metrics


def retention(student: dict[str, float], teacher: dict[str, float]) -> dict[str, float | None]:
    """student/teacher AUROC and accuracy, and skill retention (AUROC_s−0.5)/(AUROC_t−0.5)."""
    def ratio(a: float, b: float) -> float | None:
        return None if b <= 0 or math.isnan(b) else float(a / b)
    skill = ratio(student["auroc"] - 0.5, teacher["auroc"] - 0.5) if teacher["auroc"] > 0.5 else None
    return {"auroc": ratio(student["auroc"], teacher["auroc"]),
            "accuracy": ratio(student["accuracy"], teacher["accuracy"]), "auroc_skill": skill}


__all__ = ["calibration_line", "expected_calibration_error", "reliability_bins", "retention",
           "utility_metrics"]
