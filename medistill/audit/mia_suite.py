"""Membership inference with reference models: loss threshold, LiRA (offline and online)
and RMIA on one model, against a population of members and non-members.

The caller gives ``train_fn(population_indices, seed) -> predict`` that re-runs the
model's own training procedure on a subset of the population (a random half per
reference model), so the reference models mimic the target.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
import pandas as pd
from threadpoolctl import threadpool_limits

from medistill.audit.attacks import (
    attack_result,
    lira_scores,
    logit_confidence,
    rmia_scores,
    true_class_probability,
)
from medistill.audit.mia import log_likelihood, loss_threshold_attack, summarise
from medistill.audit.reference_models import plan_reference_inclusion
from medistill.compute import current_backend

Predict = Callable[[pd.DataFrame], np.ndarray]


def run_attacks(target: Predict, features: pd.DataFrame, labels: np.ndarray,
                patient_ids: np.ndarray, is_member: np.ndarray, *,
                train_fn: Callable[[np.ndarray, int], Predict] | None, n_reference: int,
                delta: float, rng: np.random.Generator, seed: int,
                n_jobs: int = 1) -> tuple[dict, pd.DataFrame]:
    """All attacks on ``target``; returns the report block and the raw per-row scores.

    ``features``/``labels``/``patient_ids`` are the population rows (one per patient);
    ``is_member`` marks the target's training patients.
    """
    is_member = np.asarray(is_member, dtype=bool)
    probs = target(features)
    loss_by_row = log_likelihood(probs, labels)
    scores = {"loss_threshold": loss_by_row}
    attacks = [loss_threshold_attack(loss_by_row[is_member], loss_by_row[~is_member],
                                     delta=delta, rng=rng)]
    if train_fn is not None and n_reference >= 2:
        inclusion = plan_reference_inclusion(len(labels), n_reference, rng)
        def one(r: int) -> np.ndarray:
            return train_fn(np.flatnonzero(inclusion[r]), seed + 1000 + r)(features)

        # Locally threads, not processes: train_fn closes over the pipeline's state. numpy,
        # torch and scikit-learn release the GIL in their kernels. On a Dask backend `one`
        # (with the population it closes over) goes to the cluster once and each model is a
        # `medistill-reference-model-<r>` task. Each model is seeded, so the result does not
        # depend on scheduling.
        with threadpool_limits(limits=1):
            refs = list(current_backend().map(one, range(n_reference), label="reference-model",
                                              n_jobs=n_jobs, prefer="threads"))
        ref_probs = np.stack(refs)
        target_conf = logit_confidence(probs, labels)
        ref_conf = np.stack([logit_confidence(p, labels) for p in ref_probs])
        scores["lira_offline"] = lira_scores(target_conf, ref_conf, inclusion, online=False)
        scores["lira_online"] = lira_scores(target_conf, ref_conf, inclusion, online=True)
        p_x = true_class_probability(probs, labels)
        ref_p_x = np.stack([true_class_probability(p, labels) for p in ref_probs])
        scores["rmia"] = rmia_scores(p_x, ref_p_x, p_x, ref_p_x, inclusion=inclusion,
                                     inclusion_z=inclusion)
        for name in ("lira_offline", "lira_online", "rmia"):
            attacks.append(attack_result(name, scores[name], is_member, delta=delta, rng=rng))
    raw = pd.DataFrame({"is_member": is_member, **scores})
    return summarise(attacks), raw


__all__ = ["run_attacks"]
