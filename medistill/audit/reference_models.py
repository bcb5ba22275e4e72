"""Reference (shadow) models for LiRA and RMIA: which points each trains on, and training.

A reference model is the caller's training procedure (the pipeline re-running teacher or
student training) applied to a random half of a *population* set that contains the points
under audit. The caller passes ``train_fn(indices, seed) -> predict`` where ``predict
(indices) -> probabilities [len(indices), n_classes]``; both must be picklable when
``n_jobs > 1`` (module-level functions or classes, or :class:`EstimatorTrainer`).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from functools import partial
from typing import Any

import numpy as np
from sklearn.base import clone

from medistill.compute import current_backend

Predict = Callable[[np.ndarray], np.ndarray]
TrainFn = Callable[[np.ndarray, int], Predict]


def plan_reference_inclusion(n_population: int, n_models: int, rng: np.random.Generator) -> np.ndarray:
    """Which population points each reference model trains on: bool [n_models, n_population].

    Models come in complementary pairs: model 2j trains on a uniformly random half of the
    population and model 2j+1 on the other half. So every model trains on ⌊n/2⌋ or ⌈n/2⌉
    points, and with an even ``n_models`` every point is IN for exactly half of the models —
    the balance online LiRA and RMIA need. With an odd count the last model is an unpaired
    random half.
    """
    if n_population < 2:
        raise ValueError(f"n_population must be at least 2. Got {n_population}.")
    if n_models < 1:
        raise ValueError(f"n_models must be at least 1. Got {n_models}.")
    inclusion = np.zeros((n_models, n_population), dtype=bool)
    half = n_population // 2
    for j in range(0, n_models, 2):
        # Alternate which side of the pair gets the extra point when n is odd.
        size = half if (j // 2) % 2 == 0 else n_population - half
        chosen = rng.permutation(n_population)[:size]
        inclusion[j, chosen] = True
        if j + 1 < n_models:
            inclusion[j + 1] = ~inclusion[j]
    return inclusion


def _train_one(train_fn: TrainFn, indices: np.ndarray, seed: int) -> Predict:
    return train_fn(indices, int(seed))


def _train_job(train_fn: TrainFn, job: tuple[np.ndarray, int]) -> Predict:
    return _train_one(train_fn, *job)


def train_reference_models(train_fn: TrainFn, inclusion: np.ndarray, *, n_jobs: int,
                           seeds: Sequence[int]) -> list[Predict]:
    """Train one reference model per row of ``inclusion`` and return their ``predict``
    callables, in order.

    Model r is ``train_fn(np.flatnonzero(inclusion[r]), seeds[r])``. With ``n_jobs=1`` the
    models are trained in this process, one after the other; otherwise they fan out over
    ``n_jobs`` worker processes (joblib/loky; ``-1`` = all cores). Inside a Dask
    :func:`medistill.compute.compute_backend`, every model is a task on the cluster.
    """
    inclusion = np.asarray(inclusion, dtype=bool)
    if inclusion.ndim != 2:
        raise ValueError(f"inclusion must be [n_models, n_population]; got {inclusion.shape}.")
    seeds = [int(s) for s in seeds]
    if len(seeds) != inclusion.shape[0]:
        raise ValueError(f"{inclusion.shape[0]} reference models need as many seeds; got "
                         f"{len(seeds)}.")
    jobs = [(np.flatnonzero(row), seed) for row, seed in zip(inclusion, seeds, strict=True)]
    return list(current_backend().map(partial(_train_job, train_fn), jobs,
                                      label="reference-model", n_jobs=n_jobs))


def reference_predictions(models: Sequence[Predict], indices: np.ndarray) -> np.ndarray:
    """Probabilities of every reference model on ``indices``: [R, len(indices), n_classes]."""
    return np.stack([np.asarray(predict(indices), dtype=np.float64) for predict in models])


@dataclass(frozen=True)
class FittedPredictor:
    """A fitted scikit-learn-style model bound to a feature table: ``(indices) -> proba``."""

    model: Any
    features: Any

    def __call__(self, indices: np.ndarray) -> np.ndarray:
        rows = (self.features.iloc[indices] if hasattr(self.features, "iloc")
                else self.features[indices])
        return self.model.predict_proba(rows)


@dataclass(frozen=True)
class EstimatorTrainer:
    """A picklable ``train_fn`` for a scikit-learn estimator on a fixed table (X, y).

    Each call clones the estimator, sets ``seed_param`` (if the estimator has it) to the
    seed, fits on the given rows and returns a :class:`FittedPredictor` over all of X.
    """

    estimator: Any
    features: Any
    labels: np.ndarray
    seed_param: str | None = "random_state"

    def __call__(self, indices: np.ndarray, seed: int) -> FittedPredictor:
        model = clone(self.estimator)
        if self.seed_param and self.seed_param in model.get_params():
            model.set_params(**{self.seed_param: seed})
        rows = (self.features.iloc[indices] if hasattr(self.features, "iloc")
                else self.features[indices])
        model.fit(rows, np.asarray(self.labels)[indices])
        return FittedPredictor(model, self.features)


__all__ = ["EstimatorTrainer", "FittedPredictor", "plan_reference_inclusion",
           "reference_predictions", "train_reference_models"]
