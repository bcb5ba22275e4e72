"""Choosing among DP teachers privately, on validation patients drawn from the training split.

Each candidate is scored on validation rows — patients of the *training* split that the
candidates were not fitted on (never test or holdout patients) — by a **sum of bounded
per-patient scores** in [0, 1]:

- ``brier``: 1 − Σ_c (p_c − 1[y = c])² / 2 (one minus the half multi-class Brier score);
- ``log_loss``: 1 − min(−log p_y, L) / L with L = −log(``LOG_LOSS_FLOOR``).

Adding or removing one validation patient (one row; the caller guarantees it) changes each
of the K sums by at most 1, so the score vector has L2 sensitivity √K. Gaussian noise of
standard deviation σ per score makes the noisy vector one Gaussian mechanism with noise
multiplier σ/√K — the ledger event ``GaussianDpEvent(σ/√K)`` — and the choice (the
argmax: report-noisy-max) and the noisy scores themselves are post-processing of it. σ is
calibrated with ``dp_accounting.mechanism_calibration`` to the selection's (ε, δ) share.

Sums, not means: a mean divides by the exact validation count, which is not public. The
argmax of sums is the argmax of means (every candidate is scored on the same rows).

The noise is a privacy draw: from ``rng``, by default
:func:`medistill.privacy.randomness.secure_generator` (ChaCha20 keyed with fresh OS
entropy), or ``Randomness.privacy("teacher_selection")`` to follow the run's mode.

What the selection does *not* cover: the candidates' own training. Their events compose as
usual (all K candidates, since the choice depends on every one of them). When candidates
are fitted on patients disjoint from the validation patients (a keyed-hash split), the
selection and the fits touch disjoint patients and parallel composition would allow the
maximum instead of the sum; recording both in the one ledger is the conservative choice.
"""

from __future__ import annotations

import functools
import math
import warnings
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Literal, Protocol

import dp_accounting as dpa
import numpy as np
import pandas as pd

from medistill.errors import TrainingError
from medistill.privacy.ledger import AccountantName, make_accountant
from medistill.privacy.randomness import secure_generator

Score = Literal["brier", "log_loss"]
LOG_LOSS_FLOOR = 1e-3


class ProbabilisticTeacher(Protocol):
    def predict_proba(self, frame: pd.DataFrame) -> np.ndarray: ...


def bounded_scores(proba: np.ndarray, labels: np.ndarray, score: Score) -> np.ndarray:
    """Per-row scores in [0, 1] (higher is better)."""
    proba = np.asarray(proba, dtype=float)
    labels = np.asarray(labels, dtype=np.int64)
    rows = np.arange(len(labels))
    if score == "brier":
        onehot = np.zeros_like(proba)
        onehot[rows, labels] = 1.0
        return np.clip(1.0 - ((proba - onehot) ** 2).sum(axis=1) / 2.0, 0.0, 1.0)
    if score == "log_loss":
        cap = -math.log(LOG_LOSS_FLOOR)
        loss = -np.log(np.clip(proba[rows, labels], LOG_LOSS_FLOOR, 1.0))
        return 1.0 - np.minimum(loss, cap) / cap
    raise ValueError(f"The 'score' parameter must be 'brier' or 'log_loss'. Got {score!r} instead.")


def selection_event(noise_std: float, n_candidates: int) -> dpa.DpEvent:
    """The ledger event of one noisy release of ``n_candidates`` sensitivity-1 scores."""
    return dpa.GaussianDpEvent(noise_std / math.sqrt(n_candidates))


@functools.lru_cache(maxsize=64)
def calibrate_selection_noise(n_candidates: int, *, epsilon: float, delta: float,
                              accountant: AccountantName = "pld") -> float:
    """Per-score noise standard deviation σ whose selection event costs at most (ε, δ)
    (a pure function of its arguments, cached)."""
    if not (epsilon > 0 and math.isfinite(epsilon)):
        raise ValueError(f"epsilon must be a positive finite float. Got {epsilon!r} instead.")
    if not 0 < delta < 1:
        raise ValueError(f"delta must be in (0, 1). Got {delta!r} instead.")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        return float(dpa.mechanism_calibration.calibrate_dp_mechanism(
            lambda: make_accountant(accountant),
            lambda std: selection_event(std, n_candidates), epsilon, delta,
            bracket_interval=dpa.mechanism_calibration.LowerEndpointAndGuess(
                0.1 * math.sqrt(n_candidates), math.sqrt(n_candidates)),
            tol=1e-4 * math.sqrt(n_candidates)))


@dataclass(frozen=True)
class Selection:
    """The outcome of a private selection: all of it may be reported (it is DP)."""

    chosen: str
    noisy_scores: dict[str, float]
    noise_std: float
    event: dpa.DpEvent
    score: Score


def select_teacher(candidates: Mapping[str, ProbabilisticTeacher], features: pd.DataFrame,
                   labels: np.ndarray, *, epsilon: float, delta: float, score: Score = "brier",
                   accountant: AccountantName = "pld",
                   rng: np.random.Generator | None = None) -> Selection:
    """Report-noisy-max over the candidates' bounded validation scores, within (ε, δ).

    ``features``/``labels`` are validation rows, one per patient, from training patients
    the candidates were not fitted on. With a single candidate nothing is measured and the
    event is a no-op.
    """
    names = list(candidates)
    if not names:
        raise ValueError("select_teacher needs at least one candidate.")
    bounded_scores(np.full((1, 2), 0.5), np.zeros(1, dtype=np.int64), score)  # checks `score`
    if len(names) == 1:
        return Selection(names[0], {}, 0.0, dpa.NoOpDpEvent(), score)
    if len(features) != len(labels):
        raise TrainingError(f"The validation rows ({len(features)}) and labels ({len(labels)}) "
                            "of the teacher selection differ in number.")
    sums = {name: float(bounded_scores(candidates[name].predict_proba(features), labels,
                                       score).sum()) for name in names}
    std = calibrate_selection_noise(len(names), epsilon=epsilon, delta=delta,
                                    accountant=accountant)
    rng = secure_generator() if rng is None else rng
    # N(0, σ²) as the mean of four normals × 2, as in randomness.gaussian_noise_like
    noise = sum(rng.standard_normal(len(names)) for _ in range(4)) * (std / 2.0)
    noisy = {name: sums[name] + float(z) for name, z in zip(names, noise)}
    chosen = max(names, key=lambda name: noisy[name])
    return Selection(chosen, noisy, std, selection_event(std, len(names)), score)


__all__ = ["LOG_LOSS_FLOOR", "Selection", "bounded_scores", "calibrate_selection_noise",
           "select_teacher", "selection_event"]
