"""K teachers on disjoint patient partitions (PATE), trained in parallel on the run's compute
backend (local joblib processes, or a Dask cluster: :mod:`medistill.compute`)."""

from __future__ import annotations

from functools import partial

import numpy as np
import pandas as pd
from sklearn.base import clone

from medistill.compute import current_backend
from medistill.data.schema import TableSchema
from medistill.data.splits import keyed_partition
from medistill.errors import ConfigError, NotFittedError, TrainingError
from medistill.teachers.models import make_teacher

MIN_PATIENTS_PER_TEACHER = 20
ENGINES = ("joblib",)
"""Engines that can train the teachers. The design allows "ray" later; it is not built yet."""


def auto_n_teachers(n_train_patients: int, n_smallest_class: int | None = None) -> int:
    """About 50 patients (and at least 10 of the rarest class) per teacher, 3 to 250 teachers.

    Data-independent GNMax affords a number of queries that grows with K² at a fixed σ/K,
    so many small teachers beat a few large ones for the same budget.
    """
    by_class = n_train_patients if n_smallest_class is None else n_smallest_class // 10
    return int(np.clip(min(n_train_patients // 50, by_class), 3, 250))


def _fit_one(template, features: pd.DataFrame, labels: np.ndarray):
    return clone(template).fit(features, labels)


def _fit_partition(template, partition: tuple[pd.DataFrame, np.ndarray]):
    return _fit_one(template, *partition)


class PartitionedEnsemble:
    """K teachers, each trained only on the patients of its own partition.

    Partitions come from a keyed hash of the patient id (``partition_key``: the run's secret
    key), so one patient's presence changes exactly one teacher — the basis of the vote histogram's L2 sensitivity √2.

    ``engine`` chooses how the teachers are trained in parallel: ``"joblib"`` (local
    processes, ``n_jobs`` of them) is the only one available; other values are refused here,
    before any training. Inside ``medistill.compute.compute_backend`` with a Dask
    configuration, the fits run as ``medistill-teacher-<k>`` tasks on the cluster instead.
    """

    def __init__(self, *, n_teachers: int, kind: str, schema: TableSchema, random_state: int,
                 n_jobs: int = 1, engine: str = "joblib",
                 partition_key: bytes | None = None) -> None:
        if engine not in ENGINES:
            planned = " ('ray' is planned but not available in this version)" \
                if engine == "ray" else ""
            raise ConfigError(
                f"The 'engine' parameter of PartitionedEnsemble must be a str among "
                f"{{{', '.join(repr(e) for e in ENGINES)}}}{planned}. Got {engine!r} instead.",
                hint="Use engine 'joblib' (local processes).")
        self.engine = engine
        self.n_teachers = n_teachers
        self.kind = kind
        self.schema = schema
        self.random_state = random_state
        self.n_jobs = n_jobs
        self.partition_key = partition_key

    def fit(self, features: pd.DataFrame, labels: np.ndarray, patient_ids: np.ndarray) -> PartitionedEnsemble:
        if self.n_teachers < 2:
            raise TrainingError(f"The 'n_teachers' parameter must be at least 2. Got {self.n_teachers}.")
        # The run's secret partition key (fresh, never recorded); a seed-derived key only
        # when none is given (tests, audit refits).
        key = self.partition_key or f"medistill-partition-{self.random_state}"
        part = keyed_partition(patient_ids, self.n_teachers, key=key)
        n_classes = self.schema.n_classes
        for k in range(self.n_teachers):
            rows = part == k
            n_pat = len(np.unique(patient_ids[rows]))
            present = np.unique(labels[rows])
            if n_pat < MIN_PATIENTS_PER_TEACHER or len(present) < n_classes:
                raise TrainingError(
                    f"Teacher partition {k} of {self.n_teachers} has {n_pat} patients and "
                    f"{len(present)} of {n_classes} classes: too small to train a teacher "
                    f"(each needs at least {MIN_PATIENTS_PER_TEACHER} patients and every class).",
                    hint="Lower teachers.n_teachers (or leave it 'auto').")
        template = make_teacher(self.kind, self.schema, random_state=self.random_state)
        partitions = [(features[part == k].reset_index(drop=True), labels[part == k])
                      for k in range(self.n_teachers)]
        self.teachers_ = list(current_backend().map(
            partial(_fit_partition, template), partitions, label="teacher", n_jobs=self.n_jobs))
        self.partition_sizes_ = np.bincount(part, minlength=self.n_teachers)
        return self

    def _check(self) -> None:
        if not hasattr(self, "teachers_"):
            raise NotFittedError("This PartitionedEnsemble is not fitted yet; call fit first.")

    def teacher_probabilities(self, features: pd.DataFrame) -> np.ndarray:
        """Each teacher's class probabilities, shape [n_teachers, n_rows, n_classes]."""
        self._check()
        return np.stack([t.predict_proba(features) for t in self.teachers_])

    def vote_histogram(self, features: pd.DataFrame) -> np.ndarray:
        """How many teachers vote for each class, shape [n_rows, n_classes]."""
        votes = self.teacher_probabilities(features).argmax(axis=2)
        n_classes = self.schema.n_classes
        return np.stack([(votes == c).sum(axis=0) for c in range(n_classes)], axis=1).astype(float)

    def predict_proba(self, features: pd.DataFrame) -> np.ndarray:
        """The ensemble's mean probability (non-private; for the audit only)."""
        return self.teacher_probabilities(features).mean(axis=0)


__all__ = ["ENGINES", "MIN_PATIENTS_PER_TEACHER", "PartitionedEnsemble", "auto_n_teachers"]
