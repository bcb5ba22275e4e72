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
    return {"auroc": float(auroc), "auprc": float(auprc),
            "accuracy": float(accuracy_score(labels, probabilities.argmax(axis=1))),
            "brier": brier, "ece": expected_calibration_error(labels, probabilities)}


def retention(student: dict[str, float], teacher: dict[str, float]) -> dict[str, float | None]:
    """student/teacher AUROC and accuracy, and skill retention (AUROC_s−0.5)/(AUROC_t−0.5)."""
    def ratio(a: float, b: float) -> float | None:
        return None if b <= 0 or math.isnan(b) else float(a / b)
    skill = ratio(student["auroc"] - 0.5, teacher["auroc"] - 0.5) if teacher["auroc"] > 0.5 else None
    return {"auroc": ratio(student["auroc"], teacher["auroc"]),
            "accuracy": ratio(student["accuracy"], teacher["accuracy"]), "auroc_skill": skill}


__all__ = ["expected_calibration_error", "retention", "utility_metrics"]
