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
    dp_teacher: object | None = None         # the DP teacher that labels (DP-teacher path)
    dp_bounds: dict | None = None            # its public numeric ranges, and where from
    histogram_teacher: object | None = None  # the DP-EBM whose histograms give transfer rows
    dp_selection: object | None = None       # private_selection.Selection ("select")

    @property
    def histogram_source(self) -> object | None:
        return self.histogram_teacher if self.histogram_teacher is not None else self.dp_teacher


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
    if plan.dp_teacher is None:
        return Teachers(reference=reference, selection=selection, ensemble=ensemble)
    dp = train_dp_teachers(config, prepared, plan, randomness)
    return Teachers(reference=reference, selection=selection, ensemble=ensemble, **dp)


def dp_teacher_bounds(config: PipelineConfig, prepared: Prepared, plan: RunPlan,
                      randomness: Randomness) -> dict[str, tuple[float, float]]:
    """Public numeric ranges: declared priors, else noisy histograms that zoom in on each
    column (ledger stage ``dp_teacher_ranges``) — never the data's min/max."""
    from medistill.teachers.dp_ranges import bounds_of, ranges_event, release_ranges

    bounds = {name: (p.min, p.max) for name, p in config.transfer.priors.items()}
    columns = list(plan.marginal_columns)
    if columns:
        noise = plan.noise("dp_teacher_ranges")
        rows = prepared.train_X.iloc[prepared.dp_rows].reset_index(drop=True)
        released = release_ranges(rows, columns, noise_multiplier=noise,
                                  rng=randomness.privacy("dp_teacher_ranges"))
        prepared.ledger.record("dp_teacher_ranges", ranges_event(noise),
                               f"noisy zooming histograms of {len(columns)} numeric columns "
                               "(the DP teacher's ranges)")
        bounds.update(bounds_of(released))
    return bounds


def train_dp_teachers(config: PipelineConfig, prepared: Prepared, plan: RunPlan,
                      randomness: Randomness) -> dict:
    """The DP teacher(s), each event recorded: the DP-EBM alone, or ("select") a DP-EBM and a
    DP logistic regression fitted on the same training patients and one of them chosen by
    report-noisy-max on the remaining training patients (never test or holdout rows)."""
    from medistill.teachers.private_selection import select_teacher

    bounds = dp_teacher_bounds(config, prepared, plan, randomness)
    rows = prepared.train_X.iloc[prepared.dp_rows].reset_index(drop=True)
    labels = prepared.train_y[prepared.dp_rows]
    if plan.dp_teacher != "select":
        ebm = _fit_ebm(config, prepared, plan, rows, labels, bounds)
        return {"dp_teacher": ebm, "dp_bounds": bounds}
    # Which patients validate is a keyed hash of each one's own id with a fresh secret key
    # (as the split): adding a patient moves no one else between the candidates' fits and
    # the selection, so each DP stage still sees neighbouring datasets.
    validate, fit = selection_split(prepared.train_ids[prepared.dp_rows],
                                    plan.selection_validation_share,
                                    key=randomness.secret_key("teacher_selection"))
    fit_rows = rows.iloc[fit].reset_index(drop=True)
    candidates = {"dp_ebm": _fit_ebm(config, prepared, plan, fit_rows, labels[fit], bounds),
                  "dp_linear": _fit_linear(prepared, plan, fit_rows, labels[fit], bounds,
                                           randomness)}
    ledger = prepared.ledger
    selection = select_teacher(candidates, rows.iloc[validate].reset_index(drop=True),
                               labels[validate], epsilon=_planned_epsilon(plan, ledger,
                                                                          "teacher_selection"),
                               delta=ledger.delta, accountant=ledger.accountant,
                               rng=randomness.privacy("teacher_selection"))
    ledger.record("teacher_selection", selection.event,
                  f"report-noisy-max between {len(candidates)} DP teachers on held-out "
                  "training patients (bounded Brier scores)")
    return {"dp_teacher": candidates[selection.chosen], "dp_bounds": bounds,
            "histogram_teacher": candidates["dp_ebm"], "dp_selection": selection}


def selection_split(patient_ids: np.ndarray, share: float, *,
                    key: bytes) -> tuple[np.ndarray, np.ndarray]:
    """Positions of the validating and of the fitting patients: a patient validates when
    the keyed hash of their own id falls under ``share``, whoever else is in the data."""
    from medistill.data.splits import keyed_uniform

    validates = keyed_uniform(patient_ids, key=key, salt="teacher_selection") < share
    return np.flatnonzero(validates), np.flatnonzero(~validates)


def _planned_epsilon(plan: RunPlan, ledger, name: str) -> float:
    from medistill.privacy.ledger import epsilon_of

    planned = next(s for s in plan.stages if s.name == name)
    return epsilon_of([planned.event], ledger.delta, ledger.accountant)


def _fit_ebm(config: PipelineConfig, prepared: Prepared, plan: RunPlan, rows, labels, bounds):
    """The DP-EBM within its planned share; its noise from interpret's own secure sampler
    (``random_state=None``)."""
    from medistill.teachers.dp_ebm import DPEBMSettings, fit_dp_ebm

    ledger = prepared.ledger
    teacher = fit_dp_ebm(rows, labels, prepared.data.schema,
                         epsilon=_planned_epsilon(plan, ledger, "dp_teacher"), delta=ledger.delta,
                         bounds=bounds, settings=DPEBMSettings(max_bins=plan.dp_ebm_max_bins),
                         public_rows=plan.dp_ebm_rows,
                         accountant=ledger.accountant,
                         n_jobs=config.teachers.n_jobs)
    ledger.record("dp_teacher", teacher.event,
                  f"DP-EBM (interpret) on one row of each of its training patients, "
                  f"{len(bounds)} public numeric ranges")
    return teacher


def _fit_linear(prepared: Prepared, plan: RunPlan, rows, labels, bounds, randomness: Randomness):
    """The DP logistic regression with the plan's schedule and noise (sampling and noise
    from a privacy generator)."""
    from medistill.teachers.dp_linear import fit_dp_linear

    ledger = prepared.ledger
    noise = plan.noise("dp_linear_teacher")
    teacher = fit_dp_linear(rows, labels, prepared.data.schema, delta=ledger.delta,
                            epsilon=_planned_epsilon(plan, ledger, "dp_linear_teacher"),
                            bounds=bounds, accountant=ledger.accountant,
                            rng=randomness.privacy("dp_linear_teacher"),
                            planned=(plan.linear_teacher_schedule, noise))
    ledger.record("dp_linear_teacher", teacher.event,
                  "DP logistic regression (DP-SGD) on one row of each of its training patients")
    return teacher


__all__ = ["Teachers", "selection_split", "train_teachers"]
