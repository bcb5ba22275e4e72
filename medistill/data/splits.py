"""Patient-level splits: one patient's rows never straddle two splits."""

from __future__ import annotations

import hashlib
from dataclasses import dataclass

import numpy as np
import pandas as pd

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


def _as_key(key: bytes | str) -> bytes:
    raw = key if isinstance(key, bytes) else str(key).encode()
    return raw[:64]


def keyed_uniform(patient_ids: np.ndarray, *, key: bytes | str, salt: str = "") -> np.ndarray:
    """A number in [0, 1) per entry of ``patient_ids`` from a keyed hash of the id alone.

    Decisions made by thresholding it depend on one patient's id and the secret key only:
    adding or removing a patient changes no other patient's decision.
    """
    key_bytes = _as_key(key)
    unique, inverse = np.unique(np.asarray(patient_ids).astype(str), return_inverse=True)
    values = np.empty(len(unique), dtype=np.float64)
    for i, pid in enumerate(unique):
        digest = hashlib.blake2b(f"{salt}|{pid}".encode(), key=key_bytes, digest_size=8).digest()
        values[i] = int.from_bytes(digest, "little") / 2.0**64
    return values[inverse]


def split_patients(patient_ids: np.ndarray, labels: np.ndarray | None = None, *, test: float,
                   holdout: float, key: bytes | str | None = None,
                   seed: int | None = None) -> PatientSplit:
    """Split patients into train / test / holdout by a keyed hash of their id.

    ``key`` is the run's secret split key (fresh and never recorded; see
    ``medistill.privacy.randomness``); ``seed`` derives a key for tests and benchmarks. A
    patient's split depends only on their own id and the key, so adding one patient moves
    no one else. (No stratification: that would make each patient's split depend on the
    others' labels.) ``labels`` is accepted for symmetry and unused.
    """
    if key is None:
        if seed is None:
            raise ValueError("split_patients needs a key (or a seed for tests).")
        key = f"medistill-split-{seed}"
    ids = np.asarray(patient_ids)
    n = len(np.unique(ids))
    if n < 30:
        raise DataError(f"Only {n} distinct patients: a private pipeline needs at least 30 "
                        "(and hundreds to learn anything useful under a privacy budget).")
    u = keyed_uniform(ids, key=key, salt="split")
    row_split = np.where(u < test, 1, np.where(u < test + holdout, 2, 0))
    return PatientSplit(train=np.flatnonzero(row_split == 0), test=np.flatnonzero(row_split == 1),
                        holdout=np.flatnonzero(row_split == 2))


def one_row_per_patient(patient_ids: np.ndarray, *, key: bytes | str) -> np.ndarray:
    """Index (sorted) of one row per patient, the DP stages' view of the data.

    Each patient's row is the one whose keyed hash of (id, position among that patient's
    own rows) is smallest: the choice depends on that patient's rows alone.
    """
    ids = np.asarray(patient_ids).astype(str)
    frame = pd.DataFrame({"pid": ids})
    ordinal = frame.groupby("pid").cumcount().to_numpy()
    tagged = np.char.add(np.char.add(ids, "#"), ordinal.astype(str))
    score = keyed_uniform(tagged, key=key, salt="row")
    frame["score"] = score
    chosen = frame.groupby("pid")["score"].idxmin().to_numpy()
    return np.sort(chosen)


def keyed_partition(patient_ids: np.ndarray, n_parts: int, *, key: bytes | str) -> np.ndarray:
    """Assign each patient to one of ``n_parts`` by a keyed hash of their id.

    A patient's part depends only on their own id and the key, never on who else is in the
    data — which is what makes the teacher-vote sensitivity hold for add/remove neighbours.
    """
    out = np.empty(len(patient_ids), dtype=np.int64)
    key_bytes = _as_key(key)
    for i, pid in enumerate(patient_ids):
        digest = hashlib.blake2b(str(pid).encode(), key=key_bytes, digest_size=8).digest()
        out[i] = int.from_bytes(digest, "little") % n_parts
    return out


__all__ = ["PatientSplit", "keyed_partition", "keyed_uniform", "one_row_per_patient",
           "patient_labels", "split_patients"]
