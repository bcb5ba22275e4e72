"""The registry of DP stages: one place that names every channel the budget is split over.

Each stage declares its name (used alike in ``privacy.shares``, the ledger and the report),
its default share of the target ε, the event it records at a given noise, and the largest
noise at which it is still useful. The planner, the config validator, the ledger and the
report all read this registry, in the manner of Opacus's accountant and grad-sampler
registries: adding a stage is one :func:`register_stage` call plus its tests.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import dp_accounting as dpa


@dataclass(frozen=True)
class StageContext:
    """What a stage's event depends on besides its noise (decided by the plan)."""

    n_queries: int = 0
    n_teachers: int = 0
    aggregator: Any = None          # a configured aggregator class instance factory
    schedule: Any = None            # DpSgdSchedule for DP-SGD stages
    delta: float = 0.0
    n_features: int = 0
    teacher_schedule: Any = None    # DpSgdSchedule of the DP linear teacher candidate


@dataclass(frozen=True)
class StageSpec:
    """One DP stage: how it is named, what share it gets and which event it records."""

    name: str
    default_share: float
    event: Callable[[float, StageContext], dpa.DpEvent]
    max_noise: Callable[[StageContext], float]
    what: Callable[[StageContext], str]
    aliases: tuple[str, ...] = field(default=())
    planned: bool = True            # False: fixed noise, not part of the share split
    min_noise: float = 0.3          # the planner's search starts here


STAGES: dict[str, StageSpec] = {}


def register_stage(spec: StageSpec) -> StageSpec:
    """Add ``spec`` to the registry (names and aliases must be new)."""
    for name in (spec.name, *spec.aliases):
        if name in STAGES or any(name in s.aliases for s in STAGES.values()):
            raise ValueError(f"DP stage name {name!r} is registered twice.")
    STAGES[spec.name] = spec
    return spec


def stage(name: str) -> StageSpec:
    """The stage called ``name`` (or one of its aliases)."""
    return STAGES[canonical_name(name)]


def canonical_name(name: str) -> str:
    """The registry name for ``name`` or an alias of it; ``KeyError`` when unknown."""
    if name in STAGES:
        return name
    for spec in STAGES.values():
        if name in spec.aliases:
            return spec.name
    raise KeyError(name)


def share_names() -> list[str]:
    """Stage names a pipeline file may give a share to (aliases included)."""
    return sorted(n for s in STAGES.values() if s.planned for n in (s.name, *s.aliases))


def resolved_shares(user: dict[str, float]) -> dict[str, float]:
    """Every planned stage's share: the user's where given (by name or alias), else the
    default. One source of defaults, whether the user gave a full, partial or no map."""
    given = {canonical_name(k): v for k, v in user.items()}
    return {name: given.get(name, spec.default_share) for name, spec in STAGES.items()
            if spec.planned}


# ---------------------------------------------------------------------------- the stages
# Unplanned stages run before the plan with a fixed small part of the target: their noise is
# the larger of a base value and the noise at which they cost ``share`` of the target alone.
# Gaussian costs compose in quadrature (μ² adds up), so in the composed total they cost far
# less than their share alone. Patient counts (they size the plan: K, batch size, δ): base
# std 50 patients, at most 2 % of ε alone. Category selection: base σ = 8 (a one-patient
# category threshold of ~100 patients for three columns), at most 15 % of ε alone.
PATIENT_COUNT_NOISE = 50.0
FIXED_NOISE = {"patient_counts": (PATIENT_COUNT_NOISE, 0.02), "category_selection": (8.0, 0.15)}


def fixed_noise(name: str, target_epsilon: float, delta: float, accountant: str = "pld") -> float:
    """The noise multiplier of the unplanned stage ``name`` for a run with this target."""
    from medistill.privacy.planner import calibrate_noise

    base, share = FIXED_NOISE[name]
    spec = stage(name)
    needed = calibrate_noise(lambda s: spec.event(s, StageContext()), share * target_epsilon,
                             delta, accountant)  # type: ignore[arg-type]
    return max(base, needed)


def _gaussian(noise: float, _: StageContext) -> dpa.DpEvent:
    return dpa.GaussianDpEvent(noise)


def _charged_before_planning(name: str, what: str) -> None:
    """A Gaussian release made before the plan, with its own fixed noise (not a share)."""
    register_stage(StageSpec(name=name, default_share=0.0, event=_gaussian,
                             max_noise=lambda _: float("inf"), planned=False,
                             what=lambda _: what))


_charged_before_planning("patient_counts",
                         "noisy per-class count of training patients (sizes the plan)")
_charged_before_planning("feature_selection", "noisy person counts choosing OMOP concept "
                                              "features (charged by the loader)")
_charged_before_planning("category_selection",
                         "noisy patient counts choosing data-derived category lists")

register_stage(StageSpec(
    name="schema_statistics", default_share=0.05, event=_gaussian,
    max_noise=lambda _: 1e4, what=lambda _: "noisy marginals for transfer data"))

def _ranges_event(noise: float, _: StageContext) -> dpa.DpEvent:
    from medistill.teachers.dp_ranges import ranges_event

    return ranges_event(noise)


# The plan sizes this stage's share (and the recalibration's) per run from the charged
# number of training patients (medistill.plan.ranges_fraction, recalibration_fraction)
# unless privacy.shares gives one; the default share here is not used as is.
register_stage(StageSpec(
    name="dp_teacher_ranges", default_share=0.10, event=_ranges_event,
    max_noise=lambda _: 1e4,
    what=lambda _: "noisy histograms that zoom in on the DP teacher's numeric ranges"))

register_stage(StageSpec(
    name="transfer_synthesizer", aliases=("synthesizer",), default_share=0.15,
    event=_gaussian, max_noise=lambda _: 1e3, what=lambda _: "DP marginal synthesizer"))


def _labels_event(noise: float, ctx: StageContext) -> dpa.DpEvent:
    return ctx.aggregator(noise).planned_event(ctx.n_queries)


register_stage(StageSpec(
    name="labels", default_share=0.35, event=_labels_event,
    max_noise=lambda ctx: 4.0 * ctx.n_teachers,
    what=lambda ctx: f"noisy teacher votes on {ctx.n_queries} queries"))


def _dp_ebm_event(noise: float, ctx: StageContext) -> dpa.DpEvent:
    """The DP-EBM's event when interpret is given ε = 1/noise (so that more "noise" means
    less ε, as for every other stage)."""
    from medistill.teachers.dp_ebm import DPEBMSettings, predicted_event

    return predicted_event(epsilon=1.0 / noise, delta=ctx.delta, n_features=ctx.n_features,
                           settings=DPEBMSettings())


register_stage(StageSpec(
    name="dp_teacher", default_share=0.90, event=_dp_ebm_event,
    max_noise=lambda _: 250.0, min_noise=0.01,
    what=lambda ctx: f"DP-EBM teacher on {ctx.n_features} features (interpret)"))


def _teacher_schedule_event(noise: float, ctx: StageContext) -> dpa.DpEvent:
    return ctx.teacher_schedule.event(noise)


register_stage(StageSpec(
    name="dp_linear_teacher", default_share=0.30, event=_teacher_schedule_event,
    max_noise=lambda _: 50.0,
    what=lambda ctx: (f"DP logistic-regression teacher candidate (DP-SGD, "
                      f"{ctx.teacher_schedule.steps} steps)" if ctx.teacher_schedule
                      else "DP logistic-regression teacher candidate")))


def _selection_event(noise: float, _: StageContext) -> dpa.DpEvent:
    return dpa.GaussianDpEvent(noise)


register_stage(StageSpec(
    name="teacher_selection", default_share=0.05, event=_selection_event,
    max_noise=lambda _: 1000.0, min_noise=0.05,
    what=lambda _: "report-noisy-max over the DP teacher candidates' bounded validation "
                   "scores (Gaussian, sensitivity 1 per candidate)"))


def _recalibration_event(noise: float, _: StageContext) -> dpa.DpEvent:
    from medistill.student.recalibration import histogram_event

    return histogram_event(noise)


register_stage(StageSpec(
    name="recalibration", default_share=0.05, event=_recalibration_event,
    max_noise=lambda _: 1000.0, min_noise=0.05,
    what=lambda ctx: "DP recalibration of the student's risks (Platt scaling on a noisy "
                     "histogram of outcomes by bins of the student's logit)"))


def _dp_sgd_event(noise: float, ctx: StageContext) -> dpa.DpEvent:
    return ctx.schedule.event(noise)


register_stage(StageSpec(
    name="student_dp_sgd", aliases=("student",), default_share=0.60, event=_dp_sgd_event,
    max_noise=lambda _: 50.0,
    what=lambda ctx: (f"DP-SGD, {ctx.schedule.steps} steps at sample rate "
                      f"{ctx.schedule.sample_rate:.4f}" if ctx.schedule else "DP-SGD")))


__all__ = ["FIXED_NOISE", "PATIENT_COUNT_NOISE", "STAGES", "fixed_noise", "StageContext", "StageSpec", "canonical_name",
           "register_stage", "resolved_shares", "share_names", "stage"]
