"""Train the non-private reference teacher (audit only) and the PATE ensemble."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

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
    dp_teacher: object | None = None         # DPEBMTeacher on the DP-teacher path
    dp_bounds: dict | None = None            # its public numeric ranges, and where from


def train_teachers(config: PipelineConfig, prepared: Prepared, plan: RunPlan,
                   randomness: Randomness) -> Teachers:
    """Fit the reference teacher on all training rows; when the plan buys PATE labels, K
    ensemble teachers, each on its own keyed-hash partition of the training patients (the
    key is the run's secret); on the DP-teacher path, the DP teacher."""
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
    dp_teacher, bounds = None, None
    if plan.dp_teacher is not None:
        dp_teacher, bounds = train_dp_teacher(config, prepared, plan, randomness)
    return Teachers(reference=reference, selection=selection, ensemble=ensemble,
                    dp_teacher=dp_teacher, dp_bounds=bounds)


def dp_teacher_bounds(config: PipelineConfig, prepared: Prepared, plan: RunPlan,
                      randomness: Randomness) -> dict[str, tuple[float, float]]:
    """Public numeric ranges: declared priors, else the quantiles of charged noisy marginals
    (ledger stage ``schema_statistics``) — never the data's min/max."""
    from medistill.teachers.dp_inputs import bounds_from_marginals
    from medistill.transfer.dp_marginals import marginals_event, release_marginals

    bounds = {name: (p.min, p.max) for name, p in config.transfer.priors.items()}
    columns = list(plan.marginal_columns)
    if columns:
        noise = plan.noise("schema_statistics")
        rows = prepared.train_X.iloc[prepared.dp_rows].reset_index(drop=True)
        marginals = release_marginals(rows, prepared.data.schema, columns, noise_multiplier=noise,
                                      rng=randomness.privacy("schema_statistics"))
        prepared.ledger.record("schema_statistics", marginals_event(noise),
                               f"noisy one-way marginals of {len(columns)} numeric columns "
                               "(the DP teacher's ranges)")
        bounds.update(bounds_from_marginals(marginals))
        for name in columns:     # no bin stood out: the range of the bins the cleaning kept
            if name not in bounds:
                bounds[name] = kept_range(marginals[name])
    return bounds


def kept_range(marginal) -> tuple[float, float]:
    """The span of the non-empty bins of a released numeric marginal (post-processing)."""
    from medistill.transfer.dp_marginals import GRID_EDGES

    bins = np.flatnonzero(np.asarray(marginal.probabilities[:-1]) > 0)
    if not len(bins):
        return (-1.0, 1.0)
    return float(GRID_EDGES[bins[0]]), float(GRID_EDGES[bins[-1] + 1])


def train_dp_teacher(config: PipelineConfig, prepared: Prepared, plan: RunPlan,
                     randomness: Randomness):
    """Fit the DP-EBM on one row per training patient within its planned share; record its
    event. Its noise comes from interpret's own secure sampler (``random_state=None``)."""
    from medistill.privacy.ledger import epsilon_of
    from medistill.teachers.dp_ebm import fit_dp_ebm

    ledger = prepared.ledger
    bounds = dp_teacher_bounds(config, prepared, plan, randomness)
    planned = next(s for s in plan.stages if s.name == "dp_teacher")
    epsilon = epsilon_of([planned.event], ledger.delta, ledger.accountant)
    rows = prepared.train_X.iloc[prepared.dp_rows].reset_index(drop=True)
    teacher = fit_dp_ebm(rows, prepared.train_y[prepared.dp_rows], prepared.data.schema,
                         epsilon=epsilon, delta=ledger.delta, bounds=bounds,
                         accountant=ledger.accountant, n_jobs=config.teachers.n_jobs)
    ledger.record("dp_teacher", teacher.event,
                  f"DP-EBM (interpret) on one row of each training patient, {len(bounds)} "
                  "public numeric ranges")
    return teacher, bounds


__all__ = ["Teachers", "train_teachers"]
