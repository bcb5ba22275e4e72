"""Patient-level splits: one patient's rows never straddle two splits."""

from __future__ import annotations

import hashlib
from dataclasses import dataclass

import numpy as np
from sklearn.model_selection import train_test_split

from medistill.errors import DataError


@dataclass(frozen=True)
class PatientSplit:
    """Row indices of each split (into the sensitive table)."""

    train: np.ndarray
    test: np.ndarray
    holdout: np.ndarray


def patient_labels(patient_ids: np.ndarray, labels: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Unique patients and one label per patient (the largest class code among their rows)."""
    unique, inverse = np.unique(patient_ids, return_inverse=True)
    per_patient = np.zeros(len(unique), dtype=np.int64)
    np.maximum.at(per_patient, inverse, labels)
    return unique, per_patient


def split_patients(patient_ids: np.ndarray, labels: np.ndarray, *, test: float, holdout: float,
                   seed: int) -> PatientSplit:
    """Split patients into train / test / holdout, stratified by label, seeded."""
    unique, per_patient = patient_labels(np.asarray(patient_ids), np.asarray(labels))
    n = len(unique)
    if n < 30:
        raise DataError(f"Only {n} distinct patients: a private pipeline needs at least 30 "
                        "(and hundreds to learn anything useful under a privacy budget).")
    counts = np.bincount(per_patient)
    stratify = per_patient if counts[counts > 0].min() >= 3 else None
    rest, test_p = train_test_split(np.arange(n), test_size=test, stratify=stratify,
                                    random_state=seed)
    holdout_share = holdout / (1.0 - test)
    strat_rest = per_patient[rest] if stratify is not None else None
    train_p, holdout_p = train_test_split(rest, test_size=holdout_share, stratify=strat_rest,
                                          random_state=seed + 1)
    _, inverse = np.unique(patient_ids, return_inverse=True)
    membership = np.full(n, -1)
    membership[train_p], membership[test_p], membership[holdout_p] = 0, 1, 2
    row_split = membership[inverse]
    return PatientSplit(train=np.flatnonzero(row_split == 0), test=np.flatnonzero(row_split == 1),
                        holdout=np.flatnonzero(row_split == 2))


def keyed_partition(patient_ids: np.ndarray, n_parts: int, *, key: str) -> np.ndarray:
    """Assign each patient to one of ``n_parts`` by a keyed hash of their id.

    A patient's part depends only on their own id and the key, never on who else is in the
    data — which is what makes the teacher-vote sensitivity hold for add/remove neighbours.
    """
    out = np.empty(len(patient_ids), dtype=np.int64)
    for i, pid in enumerate(patient_ids):
        digest = hashlib.blake2b(str(pid).encode(), key=key.encode()[:64], digest_size=8).digest()
        out[i] = int.from_bytes(digest, "little") % n_parts
    return out


__all__ = ["PatientSplit", "keyed_partition", "patient_labels", "split_patients"]
