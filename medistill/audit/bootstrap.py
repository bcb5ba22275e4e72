"""Bootstrap confidence intervals of the utility metrics, resampling patients, not rows.

When ``groups`` (patient ids) is given, each replicate draws patients with replacement and
keeps all of their rows (a cluster bootstrap): rows of one patient are not independent, and
resampling them separately would give intervals that are too narrow.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np

from medistill.audit.utility import utility_metrics

METRICS = ("auroc", "auprc", "accuracy", "brier", "ece")


def _cluster_rows(groups: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Rows sorted by cluster, and the start offset of every cluster (plus the end)."""
    _, inverse = np.unique(groups, return_inverse=True)
    order = np.argsort(inverse, kind="stable")
    counts = np.bincount(inverse)
    return order, np.r_[0, np.cumsum(counts)]


def _resample(order: np.ndarray, starts: np.ndarray, sizes: np.ndarray,
              rng: np.random.Generator) -> np.ndarray:
    """Row indices of one cluster bootstrap replicate: clusters drawn with replacement."""
    n_clusters = len(starts) - 1
    picked = rng.integers(0, n_clusters, size=n_clusters)
    # All rows of each picked cluster: offsets starts[c] .. starts[c] + size[c] - 1.
    lengths = sizes[picked]
    offsets = np.repeat(starts[picked] - np.r_[0, np.cumsum(lengths)[:-1]], lengths)
    return order[offsets + np.arange(lengths.sum())]


def cluster_resampler(groups: np.ndarray | None, n_rows: int,
                      rng: np.random.Generator) -> Callable[[], np.ndarray]:
    """A function returning the row indices of a fresh bootstrap replicate on each call:
    patients (``groups``) drawn with replacement with all their rows, or rows when
    ``groups`` is ``None``. Paired statistics (a ratio of two models' AUROC) use the same
    replicate for both models."""
    if groups is None:
        order, starts = np.arange(n_rows), np.arange(n_rows + 1)
    else:
        groups = np.asarray(groups)
        if len(groups) != n_rows:
            raise ValueError(f"groups ({len(groups)}) must have one id per row ({n_rows}).")
        order, starts = _cluster_rows(groups)
    sizes = np.diff(starts)
    return lambda: _resample(order, starts, sizes, rng)


def bootstrap_metrics(labels: np.ndarray, probabilities: np.ndarray, *, n_boot: int = 200,
                      rng: np.random.Generator, groups: np.ndarray | None = None,
                      confidence: float = 0.95) -> dict[str, list[float | None]]:
    """Percentile intervals ``{metric: [lo, hi]}`` for AUROC, AUPRC, accuracy, Brier, ECE.

    Replicates in which some class is missing (AUROC undefined) are redrawn; a metric that
    stays undefined in every replicate gets ``[None, None]`` (report.json allows no NaN).
    """
    labels = np.asarray(labels)
    probabilities = np.asarray(probabilities, dtype=np.float64)
    if len(labels) != len(probabilities) or len(labels) == 0:
        raise ValueError(f"labels ({len(labels)}) and probabilities ({len(probabilities)}) "
                         "must have the same, non-zero length.")
    if n_boot < 1:
        raise ValueError(f"n_boot must be positive. Got {n_boot}.")
    n_classes = probabilities.shape[1]
    if groups is None:
        order, starts = np.arange(len(labels)), np.arange(len(labels) + 1)
    else:
        groups = np.asarray(groups)
        if len(groups) != len(labels):
            raise ValueError(f"groups ({len(groups)}) must have one id per row ({len(labels)}).")
        order, starts = _cluster_rows(groups)
    sizes = np.diff(starts)

    values: dict[str, list[float]] = {m: [] for m in METRICS}
    attempts, max_attempts = 0, 20 * n_boot
    while len(values["auroc"]) < n_boot and attempts < max_attempts:
        attempts += 1
        rows = _resample(order, starts, sizes, rng)
        y = labels[rows]
        if len(np.unique(y)) < n_classes:
            continue
        for name, value in utility_metrics(y, probabilities[rows]).items():
            if name in values:
                values[name].append(value)
    tail = 100.0 * (1.0 - confidence) / 2.0
    return {name: ([float(np.percentile(v, tail)), float(np.percentile(v, 100.0 - tail))]
                   if v else [None, None])
            for name, v in values.items()}


__all__ = ["METRICS", "bootstrap_metrics", "cluster_resampler"]
