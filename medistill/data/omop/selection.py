"""Which concepts become covariates, chosen by a charged DP count.

A frequency threshold on sensitive data is a privacy channel: whether a rare concept becomes
a column tells whether someone carries it. So concepts are chosen from a **public** candidate
list (the standard concepts of the CDM's vocabulary, which is published by OHDSI) by a
Gaussian mechanism: the number of distinct persons carrying each candidate, plus Gaussian
noise, compared with a threshold.

Sensitivity: adding or removing one person changes each candidate's count by at most 1, and
one person can carry many concepts, so each person's contribution is capped at
``max_concepts_per_person`` candidates (their most recorded ones; ties by concept id, a
function of that person's own records only). The count vector then moves by a 0/1 vector
with at most k ones: L2 sensitivity √k. The noise has standard deviation
``noise_multiplier · √k``, and the release is ``GaussianDpEvent(noise_multiplier)``.
Everything after the noisy counts (threshold, top-``max_features``) is post-processing.
The noise comes from fresh OS entropy, never from the pipeline's seed.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import dp_accounting as dpa
import numpy as np
import pandas as pd

from medistill.privacy.randomness import secure_generator

STAGE = "feature_selection"


@dataclass(frozen=True)
class ConceptSelection:
    """The chosen candidates and what choosing them cost."""

    selected: tuple[int, ...]          # indices into the candidate list, most frequent first
    event: dpa.GaussianDpEvent
    noise_std: float
    sensitivity: float
    n_candidates: int

    def describe(self) -> str:
        return (f"Gaussian noisy count of distinct persons per concept over {self.n_candidates} "
                f"public vocabulary candidates, at most {int(round(self.sensitivity ** 2))} "
                f"concepts counted per person (L2 sensitivity {self.sensitivity:.3g}, noise "
                f"std {self.noise_std:.3g})")


def selection_event(noise_multiplier: float) -> dpa.GaussianDpEvent:
    """The event of one noisy count release (noise std / L2 sensitivity = multiplier)."""
    if not noise_multiplier > 0:
        raise ValueError("The 'noise_multiplier' parameter of the concept selection must be "
                         f"a float in the range (0, inf). Got {noise_multiplier!r} instead.")
    return dpa.GaussianDpEvent(noise_multiplier)


def capped_person_counts(pairs: pd.DataFrame, n_candidates: int, max_per_person: int
                         ) -> np.ndarray:
    """Distinct persons per candidate, each person counted for at most ``max_per_person``.

    ``pairs`` has columns ``person_id``, ``candidate`` (index into the candidate list) and
    ``n_records`` (how often the person has it); several rows of one pair are merged.
    """
    if max_per_person < 1:
        raise ValueError("The 'max_concepts_per_person' parameter must be an int in the range "
                         f"[1, inf). Got {max_per_person!r} instead.")
    if pairs.empty:
        return np.zeros(n_candidates, np.int64)
    merged = (pairs.groupby(["person_id", "candidate"], sort=False)["n_records"].sum()
              .reset_index())
    merged = merged.sort_values(["person_id", "n_records", "candidate"],
                                ascending=[True, False, True], kind="stable")
    kept = merged[merged.groupby("person_id", sort=False).cumcount() < max_per_person]
    return np.bincount(kept["candidate"].to_numpy(np.int64), minlength=n_candidates)


def select_concepts(pairs: pd.DataFrame, n_candidates: int, *, min_persons: float,
                    noise_multiplier: float, max_per_person: int, max_features: int,
                    rng: np.random.Generator | None = None) -> ConceptSelection:
    """Candidates whose noisy person count exceeds ``min_persons`` (at most ``max_features``,
    the largest noisy counts first), and the event to put in the ledger.

    ``rng`` is for tests only: by default the noise comes from fresh OS entropy.
    """
    event = selection_event(noise_multiplier)
    counts = capped_person_counts(pairs, n_candidates, max_per_person)
    sensitivity = math.sqrt(max_per_person)
    std = noise_multiplier * sensitivity
    generator = rng if rng is not None else secure_generator()  # fresh entropy, ChaCha20
    noisy = counts + generator.normal(0.0, std, size=n_candidates)
    above = np.flatnonzero(noisy > min_persons)
    order = above[np.argsort(-noisy[above], kind="stable")][:max_features]
    return ConceptSelection(tuple(int(i) for i in order), event, std, sensitivity, n_candidates)


__all__ = ["STAGE", "ConceptSelection", "capped_person_counts", "select_concepts",
           "selection_event"]
