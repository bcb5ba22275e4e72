"""The run plan: every stage's work and noise, decided before any training.

:func:`plan_run` is a pure function of the configuration and of :class:`RunFacts` — what is
known right after loading and splitting, every number of it either declared public or
released by a charged DP stage (the noisy per-class patient counts). It returns a frozen
:class:`RunPlan`: one :class:`StageBudget` per DP stage with its share, noise and event, the
sizes of every step, α as realised, and the notes the report shows. Budget errors come from
here, before any model is trained.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass, field, replace

import dp_accounting as dpa
import numpy as np

from medistill.config import PipelineConfig, StudentConfig
from medistill.data.schema import TableSchema
from medistill.errors import ConfigError, PrivacyBudgetError, StageNoiseError
from medistill.privacy.planner import StagePlan, max_count, plan_budget
from medistill.privacy.stages import StageContext, resolved_shares, stage
from medistill.student.recalibration import n_bins_for
from medistill.student.train import DpSgdSchedule
from medistill.teachers.aggregators import Aggregator, make_aggregator
from medistill.teachers.dp_inputs import DEFAULT_MAX_BINS
from medistill.teachers.dp_linear import DPLinearSettings
from medistill.teachers.ensemble import auto_n_teachers
from medistill.transfer.schema_prior import columns_needing_marginals
from medistill.transfer.sources import budget_is_tiny, synthesizer_for, synthesizer_snr

# Training only on teacher-labelled transfer rows is post-processing of the labels: DP-SGD's
# noise then protects no sensitive patient, so it is kept modest (it still regularises).
STUDENT_NOISE_WITHOUT_SENSITIVE_ROWS = 0.5
MAX_CANARIES = 1000


@dataclass(frozen=True)
class RunFacts:
    """What the plan may depend on: public declarations and charged DP releases only.

    ``class_counts`` are the noisy per-class counts of training patients (ledger stage
    ``patient_counts``); ``spent`` the events already recorded for them.
    """

    schema: TableSchema
    class_counts: tuple[int, ...]
    delta: float
    n_public_rows: int | None = None
    spent: tuple[dpa.DpEvent, ...] = ()

    @property
    def n_train(self) -> int:
        return max(0, sum(self.class_counts))

    def without_excluded_canaries(self, n_canaries: int) -> RunFacts:
        """The facts about the patients the DP stages train on: the expected ``n_canaries // 2``
        canaries that the one-run audit leaves out, taken from each class in proportion."""
        excluded, total = n_canaries // 2, self.n_train
        if excluded == 0 or total == 0:
            return self
        keep = max(0, total - excluded) / total
        return replace(self, class_counts=tuple(int(round(c * keep)) for c in self.class_counts))


@dataclass(frozen=True)
class StageBudget:
    """One DP stage's part of the plan."""

    name: str
    share: float
    noise: float
    event: dpa.DpEvent
    what: str


@dataclass(frozen=True)
class RunPlan:
    """Everything a run will do, decided before it does any of it."""

    stages: tuple[StageBudget, ...]
    delta: float
    n_teachers: int
    transfer_kinds: tuple[str, ...]
    transfer_sizes: dict[str, int]
    marginal_columns: tuple[str, ...]
    n_queries: int
    alpha: float
    repeats: int
    n_canaries: int
    student_touches_sensitive: bool
    schedule: DpSgdSchedule
    notes: tuple[str, ...] = field(default=())
    dp_teacher: str | None = None          # "dp_ebm" or "select": the DP-teacher path
    # "select": the DP linear candidate's DP-SGD schedule and the patients it and the DP-EBM
    # fit on (the rest of the training patients score them for the noisy selection)
    linear_teacher_schedule: DpSgdSchedule | None = None
    selection_validation_share: float = 0.0
    n_teacher_rows: int = 0                # transfer rows the DP teacher labels (free)
    transfer_student_noise: float = STUDENT_NOISE_WITHOUT_SENSITIVE_ROWS
    student: StudentConfig | None = None   # the student's settings as realised (None: config's)
    recalibration_bins: int | None = None   # bins of the DP reliability histogram, if planned
    # DP-teacher path: DP-SGD fine-tuning of the distilled student on one row per training
    # patient (stage "student_dp_sgd"), its schedule sized from the charged patient count
    fine_tune_schedule: DpSgdSchedule | None = None
    # teacher-labelled transfer rows mixed into the fine-tuning's batches, per sensitive row
    fine_tune_anchor_ratio: float = 0.0
    # the DP-EBM's max_bins, chosen from its planned ε and the charged patient count
    # (medistill.teachers.dp_ebm.public_max_bins); interpret's default otherwise
    dp_ebm_max_bins: int = DEFAULT_MAX_BINS
    # the rows the DP-EBM is expected to fit on (from the charged count): interpret's bin
    # merging reads this public number instead of the exact count
    dp_ebm_rows: int = 0

    def noise(self, name: str) -> float | None:
        """The planned noise multiplier of stage ``name`` (None when it does not run)."""
        return next((s.noise for s in self.stages if s.name == name), None)

    @property
    def student_noise(self) -> float:
        """The noise of the student's (first) training: the DP-teacher path distils without
        noise, and only its fine-tuning is stage ``student_dp_sgd``."""
        noise = self.noise("student_dp_sgd")
        if noise is None or self.fine_tune_schedule is not None:
            return self.transfer_student_noise
        return noise

    @property
    def learns_from_teacher(self) -> bool:
        return self.n_queries > 0 or self.n_teacher_rows > 0

    @property
    def transfer_kind(self) -> str:
        return "+".join(self.transfer_sizes)

    @property
    def uses_labels(self) -> bool:
        return self.n_queries > 0

    def with_notes(self, *notes: str) -> RunPlan:
        return replace(self, notes=(*self.notes, *notes))


def aggregator_for(config: PipelineConfig, n_teachers: int, rng=None) -> Callable[[float], Aggregator]:
    """A factory of the configured aggregator at main noise σ (or σ₂ / Laplace scale).

    Without ``rng`` the aggregators are for planning only (their events); they get a
    generator that is never drawn from."""
    labels = config.labels
    rng = rng if rng is not None else np.random.default_rng(0)

    def make(noise: float | None) -> Aggregator:
        if labels.aggregator == "plurality":
            return make_aggregator("plurality")
        params = {}
        if labels.aggregator == "confident_gnmax":
            params = {"sigma1": labels.sigma1_over_teachers * n_teachers,
                      "threshold": labels.threshold_over_teachers * n_teachers}
        return make_aggregator(labels.aggregator, sigma=noise, rng=rng, **params)
    return make


def check_allowed(config: PipelineConfig) -> None:
    """Refuse non-private choices that were not explicitly allowed."""
    if config.privacy.allow_nonprivate:
        return
    if config.labels.aggregator == "plurality":
        raise ConfigError("labels.aggregator 'plurality' has no formal privacy guarantee "
                          "(ε = ∞); it is allowed only with privacy.allow_nonprivate: true.")
    if "munge" in config.transfer.kinds():
        raise ConfigError(
            "transfer: MUNGE rows are perturbed copies of sensitive patients and have no "
            "formal privacy guarantee (ε = ∞); they are refused by default.",
            hint="Set privacy.allow_nonprivate: true to use them anyway; the report then "
                 "says first that the student has no privacy guarantee.")


def n_teachers_for(config: PipelineConfig, facts: RunFacts) -> int:
    """K from the pipeline file, or from the noisy counts (never from exact ones)."""
    if config.teachers.n_teachers != "auto":
        return int(config.teachers.n_teachers)
    return auto_n_teachers(facts.n_train, max(0, min(facts.class_counts)))


def n_canaries_for(config: PipelineConfig, facts: RunFacts) -> int:
    """How many training patients the one-run canary audit draws (``audit.canaries``; "auto":
    a tenth of them, at most MAX_CANARIES, none below 20). Half of them, drawn with fresh
    entropy, are left out of every DP stage on the DP-teacher path, and of every one but the
    ensemble on the PATE path, whose teachers fit on every training patient: hence none
    there at α = 1. On the DP-teacher path the DP teacher and the fine-tuning train on patients,
    so the audit always applies."""
    if resolved_dp_teacher(config, facts) == "none" and config.student.alpha >= 1:
        return 0
    if config.audit.canaries == "auto":
        n = min(MAX_CANARIES, facts.n_train // 10)
        return n if n >= 20 else 0
    n = int(config.audit.canaries)
    if n > facts.n_train // 2:
        raise ConfigError(f"pipeline: field 'audit.canaries' is {n}, but the run has about "
                          f"{facts.n_train} training patients (noisy count); at most half of "
                          f"them ({facts.n_train // 2}) can be canaries. Use 'auto' or a "
                          "smaller number.")
    return n if n >= 20 else 0


def canary_note(n_canaries: int, left_out_of: str) -> str:
    """The plan note of a run with canaries, which are left out of ``left_out_of``."""
    return (f"One-run canary audit (Steinke, Nasr, Jagielski 2023): {n_canaries} training "
            f"patients are canaries, each left out of {left_out_of} with probability ½ "
            f"(fresh entropy), so about {n_canaries // 2} fewer patients train there. The "
            "report's mia.student.canary gives the ε lower bound; audit.canaries: 0 turns it "
            "off.")


def _stage_plans(names: list[str], shares: dict[str, float], ctx: StageContext) -> list[StagePlan]:
    plans = []
    for name in names:
        spec = stage(name)
        plans.append(StagePlan(name, shares[name], lambda s, spec=spec: spec.event(s, ctx),
                               spec.max_noise(ctx), spec.what(ctx), spec.min_noise))
    return plans


def _active(config: PipelineConfig, kinds: list[str], marginal_columns: list[str],
            labels: bool, touches_sensitive: bool) -> list[str]:
    return [name for name, on in (
        ("schema_statistics", "schema_prior" in kinds and bool(marginal_columns)),
        ("transfer_synthesizer", "dp_synthesizer" in kinds),
        ("labels", labels and config.labels.aggregator != "plurality"),
        ("student_dp_sgd", touches_sensitive)) if on]


def _resolve_auto_source(config: PipelineConfig, facts: RunFacts, shares: dict[str, float],
                         marginal_columns: list[str], n_dp_rows: int) -> tuple[list[str], list[str]]:
    """``transfer.source: auto``: the DP synthesizer, unless its share of the budget is too
    small to measure its marginals; then the schema prior does as well for less."""
    alpha = config.student.alpha
    active = _active(config, ["dp_synthesizer"], marginal_columns, alpha > 0, alpha < 1)
    share = shares["transfer_synthesizer"] / sum(shares[s] for s in active)
    noise = plan_budget(_stage_plans(["transfer_synthesizer"], shares, StageContext()),
                        target_epsilon=config.privacy.target_epsilon * share, delta=facts.delta,
                        accountant=config.privacy.accountant)["transfer_synthesizer"]
    snr = synthesizer_snr(synthesizer_for(config, facts.schema, noise, rng=None),
                          facts.schema, n_dp_rows)
    if not budget_is_tiny(snr):
        return ["dp_synthesizer"], []
    return ["schema_prior"], [
        f"Transfer source 'auto': the DP synthesizer's share of the budget would measure its "
        f"marginals at a signal-to-noise ratio of {snr:.2g} (< 2) on about {n_dp_rows} "
        "patients, so the schema prior was used instead."]


def _transfer_sizes(config: PipelineConfig, kinds: list[str], n_queries: int,
                    n_public: int | None, notes: list[str]) -> dict[str, int]:
    """Rows per source kind: at least the labelled queries for a synthetic source."""
    transfer = config.transfer
    if transfer.source == "mix":
        return {k: int(v) for k, v in transfer.mix.items() if v > 0}
    (kind,) = kinds
    if kind == "public_table":
        n = min(transfer.n_rows, n_public or 0)
        if n < transfer.n_rows:
            notes.append(f"The public transfer table has {n_public} rows, fewer than "
                         f"transfer.n_rows = {transfer.n_rows}; all of them were used.")
        return {kind: max(n, n_queries)}
    return {kind: max(transfer.n_rows, n_queries)}


def _capacity(config: PipelineConfig, kinds: list[str], n_public: int | None) -> int:
    """The most transfer rows there can be (synthetic sources make any number)."""
    if config.transfer.source == "mix":
        return config.transfer.total_rows()
    if kinds == ["public_table"]:
        return int(n_public or 0)
    return config.transfer.n_rows if config.labels.n_queries == "auto" else 10_000_000


def _plan_queries(config: PipelineConfig, facts: RunFacts, eps_labels: float, n_teachers: int,
                  cap: int, touches_sensitive: bool, notes: list[str]) -> int:
    labels, target = config.labels, config.privacy.target_epsilon
    if labels.n_queries != "auto":
        n = int(labels.n_queries)
        if n > cap:
            notes.append(f"labels.n_queries {n} exceeds the {cap} transfer rows available; "
                         f"{cap} were labelled.")
        return min(n, cap)
    if labels.aggregator == "plurality":
        return min(cap, 2000)
    sigma = labels.sigma_over_teachers * n_teachers
    make = aggregator_for(config, n_teachers)
    n = max_count(lambda q: make(sigma).planned_event(q), eps_labels, facts.delta,
                  config.privacy.accountant, cap=cap)
    if n >= labels.min_queries:
        return n
    if not touches_sensitive:
        raise PrivacyBudgetError(
            f"The label budget (ε = {eps_labels:.3g} of the target {target:g}) affords only {n} "
            f"GNMax queries to {n_teachers} teachers (fewer than labels.min_queries = "
            f"{labels.min_queries}), and with student.alpha: 1 the student has nothing else "
            "to learn from.",
            hint="Raise privacy.target_epsilon, set labels.n_queries explicitly, or lower "
                 "student.alpha so that the student also learns from sensitive rows by DP-SGD.")
    notes.append(
        f"The label budget (ε = {eps_labels:.3g} of the target {target:g}) affords only {n} "
        f"GNMax queries to {n_teachers} teachers at σ = {labels.sigma_over_teachers}·K, fewer "
        f"than labels.min_queries = {labels.min_queries}: too few to pay for their share of "
        "the budget, so the student was trained on sensitive rows by DP-SGD alone and the "
        "label share went to it.")
    return 0


# Distilling a DP teacher needs no noise, so the student can be trained to convergence:
# on the built-in cohort (3,000 patients, ε = 3) 40 epochs at learning rate 0.01 and a
# (64, 32) network raised the student's AUROC from 0.846 to 0.858 against its DP teacher's
# 0.854 (docs/benchmarks.md). Settings the user wrote in the pipeline file are kept.
DISTILLATION_STUDENT = {"epochs": 40, "learning_rate": 0.01, "max_macs_per_row": 4096}


def distillation_student(student: StudentConfig) -> StudentConfig:
    """The student's settings on the DP-teacher path: the distillation defaults for every
    setting the pipeline file left unset."""
    unset = {k: v for k, v in DISTILLATION_STUDENT.items() if k not in student.model_fields_set}
    return student.model_copy(update=unset)


def resolved_dp_teacher(config: PipelineConfig, facts: RunFacts) -> str:
    """``teachers.dp_teacher`` with "auto" resolved: the DP-EBM for binary outcomes (it
    distils at ε ≤ 3 where PATE buys no labels, docs/teachers.md), else the PATE path."""
    choice, n_classes = config.teachers.dp_teacher, facts.schema.n_classes
    if choice == "auto":
        return "dp_ebm" if n_classes == 2 else "none"
    if choice in ("dp_ebm", "select") and n_classes != 2:
        raise ConfigError(f"pipeline: field 'teachers.dp_teacher' is '{choice}', which needs a "
                          f"binary outcome; the label has {n_classes} classes. Use 'auto' or "
                          "'none' (the PATE ensemble).")
    return choice


# Share of the training patients held out to score the DP teacher candidates ("select").
SELECTION_VALIDATION_SHARE = 0.2
# The DP linear candidate's expected batch: its settings' (256) where that is at most a
# tenth of its patients, else a tenth, at least 32. At 256 on a few hundred patients the
# sampling rate nears ½, DP-SGD loses its amplification by sampling, and the candidate
# needed a noise multiplier of 50–190 at ε ≤ 3 on 700–3,000 patients (docs/benchmarks.md).
LINEAR_BATCH_SHARE, LINEAR_MIN_BATCH = 0.1, 32
# Stages only "select" plans (and how a note names them): when one of them cannot be
# afforded, the DP-EBM runs alone.
SELECTION_STAGES = {"dp_linear_teacher": "the DP logistic-regression candidate (stage "
                                         "dp_linear_teacher)",
                    "teacher_selection": "the noisy choice between the candidates (stage "
                                         "teacher_selection)"}


def linear_batch_size(n_fit: int, settings: DPLinearSettings) -> int:
    """The DP linear candidate's expected batch on ``n_fit`` patients (charged count)."""
    return int(min(settings.batch_size, max(LINEAR_MIN_BATCH, LINEAR_BATCH_SHARE * n_fit)))


# Shares sized per run from the charged number of training patients (docs/design.md, "The
# budget split"; measured on the benchmark tables). Gaussian costs compose in quadrature, so
# a fixed few % of ε buys a noise multiplier of 15–50, far too much for a few hundred
# patients. Each sized stage targets a noise std per released count, as a part of the
# patients behind that count, and gets the ε-share that buys it alone, within bounds.
# The DP teacher's ranges: noise std per histogram bin (all its rounds together) near
# 1/150 of the training patients, 3–35 % of the target ε.
RANGES_NOISE_DIVISOR = 150.0
RANGES_FRACTION = (0.03, 0.35)
# The recalibration: noise std per count near 1/8 of the patients in a logit bin, 5–25 %.
RECALIBRATION_NOISE_DIVISOR = 8.0
RECALIBRATION_FRACTION = (0.05, 0.10)


# The DP-teacher path's fine-tuning (stage student_dp_sgd; docs/design.md, "Fine-tuning the
# distilled student", measured on the benchmark tables): its part of the total ε next to
# the teacher's. When its planned noise per averaged row (noise multiplier / expected batch
# of patients) is above NOISY_FINE_TUNE — few patients, small ε — DP-SGD mostly adds noise
# to a good start: it then takes the smaller part and mixes FINE_TUNE_ANCHOR_RATIO
# teacher-labelled transfer rows per patient into its batches.
FINE_TUNE_FRACTION = 0.5
ANCHORED_FINE_TUNE_FRACTION = 0.25
NOISY_FINE_TUNE = 0.04
FINE_TUNE_ANCHOR_RATIO = 1.0
# Below NOISY_FINE_TUNE (no anchors) Adam's step is lowered from student.fine_tune_learning_rate
# (0.01) to this unless the pipeline file sets it: replayed on the same distilled students,
# noise and rows, 0.003 gained +0.004 AUROC (se 0.001, 26 runs; cohort +0.008) there, and lost
# 0.006 on the anchored small tables (docs/benchmarks.md, "Fine-tuning's step size").
QUIET_FINE_TUNE_LEARNING_RATE = 0.003


def _user_gave(config: PipelineConfig, name: str) -> bool:
    from medistill.privacy.stages import canonical_name

    return name in {canonical_name(k) for k in config.privacy.shares}


# Sizing is a heuristic: its ε is read with RDP (fast at any noise; a PLD of a Gaussian at
# noise below ~1 has millions of points and once took 1 GB) and the noise it is asked about
# is at least this (any smaller noise costs more than the largest fraction anyway).
SIZING_MIN_NOISE = 1.0


def _sized_fraction(config: PipelineConfig, facts: RunFacts,
                    event_for: Callable[[float], dpa.DpEvent], noise: float,
                    bounds: tuple[float, float]) -> float:
    """The part of the target ε that ``event_for(noise)`` costs alone, within ``bounds``."""
    from medistill.privacy.ledger import epsilon_of

    alone = epsilon_of([event_for(max(noise, SIZING_MIN_NOISE))], facts.delta, "rdp")
    return min(bounds[1], max(bounds[0], alone / config.privacy.target_epsilon))


def ranges_fraction(config: PipelineConfig, facts: RunFacts, n_columns: int) -> float:
    """The part of ε for ``dp_teacher_ranges`` over ``n_columns`` columns: few patients or
    many columns need more to find each column above the noise."""
    from medistill.teachers.dp_ranges import ranges_event

    noise = max(facts.n_train, 1) / (RANGES_NOISE_DIVISOR * math.sqrt(max(n_columns, 1)))
    return _sized_fraction(config, facts, ranges_event, noise, RANGES_FRACTION)


def recalibration_fraction(config: PipelineConfig, facts: RunFacts, n_bins: int) -> float:
    """The part of ε for ``recalibration`` with ``n_bins`` logit bins (noise std √2·z per
    count, aimed at 1/``RECALIBRATION_NOISE_DIVISOR`` of a bin's patients)."""
    from medistill.student.recalibration import SENSITIVITY, histogram_event

    per_bin = max(facts.n_train, 1) / max(n_bins, 1)
    noise = per_bin / (RECALIBRATION_NOISE_DIVISOR * SENSITIVITY)
    return _sized_fraction(config, facts, histogram_event, noise, RECALIBRATION_FRACTION)


def sized_shares(shares: dict[str, float], fixed: list[str],
                 fractions: dict[str, float]) -> dict[str, float]:
    """``shares`` with each stage of ``fractions`` given the share that makes it that part
    of the total next to the ``fixed`` stages' shares."""
    if not fractions:
        return shares
    base = sum(shares[s] for s in fixed)
    rest = 1.0 - sum(fractions.values())
    return {**shares, **{name: f * base / rest for name, f in fractions.items()}}


def _plan_dp_teacher_path(config: PipelineConfig, facts: RunFacts,
                          shares: dict[str, float]) -> RunPlan:
    """The DP-teacher path; under "select", the DP-EBM alone (and a note) when the budget
    cannot give the linear candidate or the selection a useful noise level."""
    try:
        return _plan_dp_teacher(config, facts, shares)
    except StageNoiseError as error:
        if resolved_dp_teacher(config, facts) != "select" or error.stage not in SELECTION_STAGES:
            raise
        refused = SELECTION_STAGES[error.stage]
    alone = config.model_copy(update={"teachers": config.teachers.model_copy(
        update={"dp_teacher": "dp_ebm"})})
    return _plan_dp_teacher(alone, facts, shares).with_notes(
        f"teachers.dp_teacher is 'select', but at ε = {config.privacy.target_epsilon:g} and "
        f"about {facts.n_train} training patients {refused} would need more noise than is "
        "useful: the DP-EBM is fitted alone, on every training patient, with no candidate "
        "and no selection charged. A larger privacy.target_epsilon or more patients allow "
        "the choice.")


def _plan_dp_teacher(config: PipelineConfig, facts: RunFacts, shares: dict[str, float]) -> RunPlan:
    """The DP-teacher path: the budget goes to the DP teacher (and to noisy histograms for
    the numeric ranges nobody declared), the student's DP-SGD fine-tuning and its
    recalibration; the teacher labels ``teachers.dp_teacher_rows`` rows sampled from its own
    noisy histograms, for free, and the student is distilled from them without noise
    (post-processing), then fine-tuned on the patients (``student.fine_tune``)."""
    notes: list[str] = []
    n_canaries = n_canaries_for(config, facts)
    if n_canaries:
        notes.append(canary_note(n_canaries, "every DP stage"))
    # every size below is of the patients the DP stages see (the audit leaves ~half out)
    facts = facts.without_excluded_canaries(n_canaries)
    marginal_columns = [f.name for f in facts.schema.features
                        if f.kind == "numeric" and f.name not in config.transfer.priors]
    active = (["dp_teacher_ranges"] if marginal_columns else []) + ["dp_teacher"]
    linear_schedule, validation_share = None, 0.0
    if resolved_dp_teacher(config, facts) == "select":
        validation_share = SELECTION_VALIDATION_SHARE
        settings = DPLinearSettings()
        n_fit = max(1, round(facts.n_train * (1 - validation_share)))
        linear_schedule = DpSgdSchedule.for_data(n_fit, linear_batch_size(n_fit, settings),
                                                 settings.epochs)
        active += ["dp_linear_teacher", "teacher_selection"]
        notes.append(f"Teacher selection: a DP-EBM and a DP logistic regression are fitted on "
                     f"{1 - validation_share:.0%} of the training patients; the other "
                     f"{validation_share:.0%} score them (Brier) for a report-noisy-max choice.")
    n_rows = config.teachers.dp_teacher_rows
    student = distillation_student(config.student)
    schedule = DpSgdSchedule.for_data(n_rows, student.resolved_batch_size(n_rows), student.epochs)
    fine_tune_schedule = None
    if config.student.fine_tune:
        n_dp = max(1, facts.n_train)
        fine_tune_schedule = DpSgdSchedule.for_data(
            n_dp, student.resolved_batch_size(n_dp), student.fine_tune_epochs)
        active.append("student_dp_sgd")
        notes.append(f"The distilled student is fine-tuned by DP-SGD on one row of each "
                     f"training patient ({student.fine_tune_epochs} epochs, stage "
                     "student_dp_sgd); student.alpha does not apply on the DP-teacher path.")
    elif config.student.alpha < 1:
        notes.append("With teachers.dp_teacher and student.fine_tune off, the student learns "
                     "only from the DP teacher's labels on transfer rows (student.alpha is "
                     "taken as 1).")
    ctx = StageContext(delta=facts.delta, n_features=len(facts.schema.features),
                       teacher_schedule=linear_schedule, schedule=fine_tune_schedule)
    recalibrates = config.student.recalibrate and facts.schema.n_classes == 2
    bins = n_bins_for(facts.n_train) if recalibrates else None
    sized: dict[str, float] = {}
    if marginal_columns and not _user_gave(config, "dp_teacher_ranges"):
        sized["dp_teacher_ranges"] = ranges_fraction(config, facts, len(marginal_columns))
    if recalibrates and not _user_gave(config, "recalibration"):
        sized["recalibration"] = recalibration_fraction(config, facts, bins)
    spending = active + (["recalibration"] if recalibrates else [])

    def budget(fine_tune_fraction: float) -> tuple[StageBudget, ...]:
        fractions = dict(sized)
        if fine_tune_schedule is not None and not _user_gave(config, "student_dp_sgd"):
            # the ranges keep their part of the teacher's side; the fine-tuning and the
            # recalibration (which follows it) take their parts of the total
            if "dp_teacher_ranges" in fractions:
                fractions["dp_teacher_ranges"] *= 1 - fine_tune_fraction
            fractions["student_dp_sgd"] = fine_tune_fraction
        split = sized_shares(shares, [s for s in spending if s not in fractions], fractions)
        plans = _stage_plans(active, split, ctx)
        if recalibrates:
            plans += _stage_plans(["recalibration"], split, StageContext(delta=facts.delta))
        noises = plan_budget(plans, target_epsilon=config.privacy.target_epsilon,
                             delta=facts.delta, accountant=config.privacy.accountant,
                             spent=facts.spent)
        return tuple(StageBudget(p.name, p.share, noises[p.name], p.event_for(noises[p.name]),
                                 p.what) for p in plans)

    budgets = budget(FINE_TUNE_FRACTION)
    anchor_ratio = 0.0
    if fine_tune_schedule is not None:
        noise = next(b.noise for b in budgets if b.name == "student_dp_sgd")
        noise_per_row = noise / fine_tune_schedule.batch_size
        if noise_per_row > NOISY_FINE_TUNE:
            anchor_ratio = FINE_TUNE_ANCHOR_RATIO
            if not _user_gave(config, "student_dp_sgd"):
                budgets = budget(ANCHORED_FINE_TUNE_FRACTION)
            notes.append(
                f"The fine-tuning's gradient noise would be {noise_per_row:.3f} per averaged "
                f"row (noise multiplier / expected batch; above {NOISY_FINE_TUNE:g}): it takes "
                f"a smaller part of ε and mixes {FINE_TUNE_ANCHOR_RATIO:g} teacher-labelled "
                "transfer row per patient into its batches, which holds the student to its "
                "teacher where the patients' noisy gradients say little.")
        elif "fine_tune_learning_rate" not in config.student.model_fields_set:
            student = student.model_copy(
                update={"fine_tune_learning_rate": QUIET_FINE_TUNE_LEARNING_RATE})
            notes.append(
                f"The fine-tuning's gradient noise is {noise_per_row:.3f} per averaged row "
                f"(at most {NOISY_FINE_TUNE:g}): it runs at learning rate "
                f"{QUIET_FINE_TUNE_LEARNING_RATE:g}, which measured better than the default "
                "there (student.fine_tune_learning_rate overrides it).")
    n_fit = max(1, round(facts.n_train * (1 - validation_share)))
    max_bins = _dp_ebm_max_bins(config, facts, budgets, n_fit, notes)
    return RunPlan(stages=budgets, delta=facts.delta, n_teachers=0,
                   transfer_kinds=("teacher_histograms",),
                   transfer_sizes={"teacher_histograms": n_rows},
                   marginal_columns=tuple(marginal_columns), n_queries=0, alpha=1.0, repeats=1,
                   n_canaries=n_canaries, student_touches_sensitive=False, schedule=schedule,
                   notes=tuple(notes), dp_teacher=resolved_dp_teacher(config, facts),
                   n_teacher_rows=n_rows, transfer_student_noise=0.0, student=student,
                   recalibration_bins=bins, linear_teacher_schedule=linear_schedule,
                   selection_validation_share=validation_share,
                   fine_tune_schedule=fine_tune_schedule, fine_tune_anchor_ratio=anchor_ratio,
                   dp_ebm_max_bins=max_bins, dp_ebm_rows=n_fit)


def _dp_ebm_max_bins(config: PipelineConfig, facts: RunFacts, budgets: tuple[StageBudget, ...],
                     n_fit: int, notes: list[str]) -> int:
    """The DP-EBM's max_bins from its planned ε and the patients it is fitted on (charged
    count); a note when it is not interpret's default."""
    from medistill.privacy.ledger import epsilon_of
    from medistill.teachers.dp_ebm import MAX_BINS_CHOICES, public_max_bins

    teacher = next(b for b in budgets if b.name == "dp_teacher")
    epsilon = epsilon_of([teacher.event], facts.delta, config.privacy.accountant)
    max_bins = public_max_bins(n_patients=n_fit, epsilon=epsilon, delta=facts.delta,
                               n_features=len(facts.schema.features),
                               accountant=config.privacy.accountant)
    if max_bins != MAX_BINS_CHOICES[0]:
        notes.append(f"The DP-EBM bins each feature into at most {max_bins} bins, not "
                     f"{MAX_BINS_CHOICES[0]}: at its ε and about {n_fit} patients, "
                     f"{MAX_BINS_CHOICES[0]} bins would hold fewer patients each than its "
                     "binning noise.")
    return max_bins


def plan_run(config: PipelineConfig, facts: RunFacts) -> RunPlan:
    """Decide every stage's work and calibrate its noise so the composed ε meets the target.

    Parameters
    ----------
    config:
        The resolved pipeline configuration.
    facts:
        Public or charged facts about the data (:class:`RunFacts`).

    Raises
    ------
    ConfigError
        A non-private choice that was not allowed.
    PrivacyBudgetError
        The target cannot be met with the requested work.
    """
    check_allowed(config)
    target, accountant = config.privacy.target_epsilon, config.privacy.accountant
    shares = resolved_shares(config.privacy.shares)
    if resolved_dp_teacher(config, facts) != "none":
        return _plan_dp_teacher_path(config, facts, shares)
    notes: list[str] = []
    n_teachers = n_teachers_for(config, facts)
    n_canaries = n_canaries_for(config, facts)
    if n_canaries:
        notes.append(canary_note(n_canaries, "every DP stage but the PATE teachers (which "
                                             "fit on every training patient)"))
    alpha = config.student.alpha
    touches_sensitive = alpha < 1
    n_dp_rows = max(1, facts.without_excluded_canaries(n_canaries).n_train)
    marginal_columns = columns_needing_marginals(facts.schema, config.transfer.priors,
                                                 config.transfer.categories)
    if config.transfer.source == "auto":
        kinds, auto_notes = _resolve_auto_source(config, facts, shares, marginal_columns, n_dp_rows)
        notes.extend(auto_notes)
    else:
        kinds = config.transfer.kinds()
    active = _active(config, kinds, marginal_columns, alpha > 0, touches_sensitive)
    total_share = sum(shares[s] for s in active) or 1.0
    n_queries = 0
    if alpha > 0:
        eps_labels = target * shares["labels"] / total_share
        n_queries = _plan_queries(config, facts, eps_labels, n_teachers,
                                  _capacity(config, kinds, facts.n_public_rows),
                                  touches_sensitive, notes)
        if n_queries == 0:
            alpha = 0.0
            active = [s for s in active if s != "labels"]
    n_sensitive = n_dp_rows if touches_sensitive else 0
    repeats = 1
    if n_queries and touches_sensitive:
        repeats = max(1, round(alpha / (1 - alpha) * n_sensitive / n_queries))
    n_examples = max(1, n_sensitive + repeats * n_queries)
    schedule = DpSgdSchedule.for_data(n_examples, config.student.resolved_batch_size(n_examples),
                                      config.student.epochs)
    ctx = StageContext(n_queries=n_queries, n_teachers=n_teachers, schedule=schedule,
                       aggregator=aggregator_for(config, n_teachers))
    plans = _stage_plans(active, shares, ctx)
    noises = plan_budget(plans, target_epsilon=target, delta=facts.delta, accountant=accountant,
                         spent=facts.spent)
    budgets = tuple(StageBudget(p.name, p.share, noises[p.name], p.event_for(noises[p.name]),
                                p.what) for p in plans)
    sizes = _transfer_sizes(config, kinds, n_queries, facts.n_public_rows, notes)
    return RunPlan(stages=budgets, delta=facts.delta, n_teachers=n_teachers,
                   transfer_kinds=tuple(kinds), transfer_sizes=sizes,
                   marginal_columns=tuple(marginal_columns if "schema_prior" in kinds else ()),
                   n_queries=n_queries, alpha=alpha, repeats=repeats, n_canaries=n_canaries,
                   student_touches_sensitive=touches_sensitive, schedule=schedule,
                   notes=tuple(notes))


__all__ = ["RunFacts", "RunPlan", "StageBudget", "aggregator_for", "check_allowed",
           "n_teachers_for", "plan_run"]
