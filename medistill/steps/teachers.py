"""Train the non-private reference teacher (audit only) and the PATE ensemble."""

from __future__ import annotations

from dataclasses import dataclass

from medistill.config import PipelineConfig
from medistill.plan import RunPlan
from medistill.privacy.randomness import Randomness
from medistill.steps.prepare import Prepared
from medistill.teachers.ensemble import PartitionedEnsemble
from medistill.teachers.models import make_teacher
from medistill.teachers.selection import select_reference_teacher


@dataclass(frozen=True)
class Teachers:
    """The reference teacher (never released; what the hospital would deploy without this
    kit), how it was chosen, and the K teachers on disjoint patient partitions."""

    reference: object
    selection: dict
    ensemble: PartitionedEnsemble | None     # None when the plan buys no labels


def train_teachers(config: PipelineConfig, prepared: Prepared, plan: RunPlan,
                   randomness: Randomness) -> Teachers:
    """Fit the reference teacher on all training rows and, when the plan buys labels, K
    ensemble teachers, each on its own keyed-hash partition of the training patients (the
    key is the run's secret)."""
    data, X, y, ids = prepared.data, prepared.train_X, prepared.train_y, prepared.train_ids
    if config.teachers.reference == "auto":
        reference, selection = select_reference_teacher(
            X, y, data.schema, groups=ids, random_state=config.seed, n_jobs=1)
    else:
        reference = make_teacher(config.teachers.reference, data.schema,
                                 random_state=config.seed).fit(X, y)
        selection = {"chosen": config.teachers.reference}
    ensemble = None
    if plan.uses_labels:
        ensemble = PartitionedEnsemble(
            n_teachers=plan.n_teachers, kind=config.teachers.kind, schema=data.schema,
            random_state=config.seed, n_jobs=config.teachers.n_jobs,
            partition_key=randomness.secret_key("partition")).fit(X, y, ids)
    return Teachers(reference=reference, selection=selection, ensemble=ensemble)


__all__ = ["Teachers", "train_teachers"]
