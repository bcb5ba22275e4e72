"""The whole pipeline as a sequence of steps: prepare → plan → teachers → transfer → labels →
student → export → baselines → audit.

Each step is a function in ``medistill.steps`` (or ``medistill.plan``) of typed inputs that
returns a typed artifact; this module only runs them in order, says what happens, and writes
the run folder atomically. The plan is made right after the data is loaded and split, from
public or charged facts only, so a budget error comes before any training.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from pathlib import Path
from typing import Protocol

from rich.console import Console
from rich.markup import escape

from medistill.audit.assemble import AuditInputs, build_report, write_run_files
from medistill.audit.fairness import sensitive_columns
from medistill.compute import compute_backend
from medistill.config import PipelineConfig
from medistill.errors import PrivacyBudgetError
from medistill.plan import RunPlan, check_allowed, plan_run
from medistill.privacy.randomness import REPRODUCIBLE_NOTE, Randomness
from medistill.registry import register_into
from medistill.runfolder import AtomicRunFolder, check_destination
from medistill.steps import baselines as baseline_steps
from medistill.steps.export import export
from medistill.steps.prepare import Prepared, prepare, with_canaries
from medistill.steps.student import Student, recalibrate, train_released_student
from medistill.steps.teachers import Teachers, train_teachers
from medistill.steps.transfer import (
    Labelled, label_transfer, make_transfer, public_individuals_ledger, transfer_summary)
from medistill.transfer.sources import load_public_table


@dataclass(frozen=True)
class RunOutcome:
    """Where the run folder is and what its report says."""

    run_dir: Path
    report: dict


def _say(console: Console, text: str) -> None:
    console.print(f"[bold cyan]•[/] {escape(text)}")


def plan_step(config: PipelineConfig, prepared: Prepared) -> tuple[RunPlan, object]:
    """Read the public transfer table (if any) and plan the run from public or charged facts."""
    public, notes = None, []
    if "public_table" in config.transfer.kinds():
        public, notes = load_public_table(config.transfer.public, prepared.data.schema,
                                          seed=config.seed)
    facts = prepared.facts
    if public is not None:
        facts = replace(facts, n_public_rows=len(public))
    plan = plan_run(config, facts).with_notes(*notes)
    if not prepared.ledger.formal:
        plan = plan.with_notes(REPRODUCIBLE_NOTE)
    return plan, public


def audit_step(config: PipelineConfig, folder: Path, prepared: Prepared, plan: RunPlan,
               teachers: Teachers, student: Student, labelled: Labelled, transfer,
               console: Console, watch: StepObserver | None = None) -> dict:
    """Baselines (audit-only trainings), then the audit of the released artifacts."""
    watch = watch or _Silent()
    baselines = {"logistic_regression_nonprivate":
                 baseline_steps.nonprivate_logistic_regression(config, prepared)}
    distillation, direct = None, None
    if config.audit.baselines and plan.learns_from_teacher:
        with console.status("Training the direct DP-SGD baseline (no teacher)…"):
            direct = baseline_steps.direct_dp_sgd(config, prepared, student, plan)
            baselines["dp_sgd_direct"] = direct.metrics
        with console.status("Retraining the student with other seeds (audit only)…"):
            distillation = baseline_steps.distillation_gain(
                config, prepared, plan, student, direct.metrics)
    watch.finished("baselines", {"direct": direct, "distillation": distillation})
    public_ledger, notes = public_individuals_ledger(config, plan, labelled, student.transfer_record)
    synthetic = transfer.rows[transfer.source != "munge"]
    inputs = AuditInputs(
        data=prepared.data, split=prepared.split, ledger=prepared.ledger,
        plan=plan.with_notes(*student.notes, *notes), reference=teachers.reference,
        dp_teacher=teachers.dp_teacher, dp_selection=teachers.dp_selection,
        teacher_selection=teachers.selection, ensemble=teachers.ensemble,
        student_path=folder / "student.onnx", network=student.network, record=student.record,
        member_rows=prepared.split.train[prepared.dp_rows], baselines=baselines,
        distillation=distillation,
        transfer_rows=synthetic.head(5000).reset_index(drop=True) if len(synthetic) else None,
        transfer=transfer_summary(config, prepared, plan, transfer), public_ledger=public_ledger,
        student_trainer=baseline_steps.reference_student_factory(config, prepared, plan, student),
        canary=({"rows": prepared.split.train[prepared.canary_rows],
                 "included": prepared.canary_in} if len(prepared.canary_rows) else None),
        noisy_class_counts=prepared.facts.class_counts)
    with console.status("Auditing: utility, speed, membership inference "
                        f"({config.audit.reference_models} reference models)…"):
        report, mia_scores = build_report(config, inputs, Randomness(config.seed).seeded("audit"))
    write_run_files(folder, config, prepared.ledger, report, mia_scores)
    return report


class StepObserver(Protocol):
    """Watches a run from outside (benchmarks, profilers): told when each step starts and
    handed each step's artifact when it ends. The run never depends on it."""

    def started(self, step: str) -> None: ...

    def finished(self, step: str, artifact: object) -> None: ...


class _Silent:
    def started(self, step: str) -> None:
        pass

    def finished(self, step: str, artifact: object) -> None:
        pass


def run_into(config: PipelineConfig, folder: Path, console: Console,
             observer: StepObserver | None = None) -> dict:
    """Run every step, writing the run's files into ``folder``; return the report."""
    watch = observer or _Silent()

    def step(name: str, function, *args, **kwargs):
        watch.started(name)
        artifact = function(*args, **kwargs)
        watch.finished(name, artifact)
        return artifact

    randomness = Randomness(config.seed, reproducible=config.privacy.reproducible_noise)
    with console.status("Reading the sensitive records…"):
        prepared = step("prepare", prepare, config, randomness)
    sensitive_columns([f.name for f in prepared.data.schema.features],  # fail before training
                      declared=config.data.sensitive_attributes, extra=config.audit.groups)
    plan, public = step("plan", plan_step, config, prepared)
    prepared = step("canaries", with_canaries, prepared, plan.n_canaries,
                    randomness.privacy("canaries"))
    _say(console, f"{prepared.data.name}: {len(prepared.data.schema.features)} features; "
         "patients split by a keyed hash; plan: " + ", ".join(
             f"{s.name} σ={s.noise:.3g}" for s in plan.stages))
    for note in prepared.data.notes:  # #16.4: dropped columns, merged label spellings, leakage
        _say(console, ("warning: " if note.severity == "warning" else "") + note.message)
    with console.status("Training the reference teacher and the partitioned ensemble…"):
        teachers = step("teachers", train_teachers, config, prepared, plan, randomness)
    with console.status("Making transfer data…"):
        transfer = step("transfer", make_transfer, config, prepared, plan, randomness, public,
                        teachers)
    with console.status(f"Labelling {plan.n_queries} transfer rows by noisy vote…"):
        labelled = step("labels", label_transfer, config, prepared, plan, teachers, transfer,
                        randomness)
    text = "Training the student with DP-SGD (epoch {}/{}, loss {:.3f})…"
    with console.status("Training the student with DP-SGD…") as status:
        student = step("student", train_released_student,
                       config, prepared, plan, labelled, transfer, randomness,
                       on_epoch=lambda e, loss: status.update(text.format(
                           e + 1, config.student.epochs, loss)))
    student = step("recalibrate", recalibrate, config, prepared, plan, student, labelled,
                   randomness)
    epsilon = prepared.ledger.epsilon()
    if prepared.ledger.formal_guarantee and epsilon > config.privacy.target_epsilon * 1.0001:
        raise PrivacyBudgetError(
            f"Internal check failed: the ledger's ε = {epsilon:.4f} exceeds the target "
            f"{config.privacy.target_epsilon}. This is a bug; nothing was written.")
    _say(console, f"student trained: {student.record.steps} DP-SGD steps, noise multiplier "
         f"{student.record.noise_multiplier:.3f}; ledger ε = {epsilon:.3f} at "
         f"δ = {prepared.ledger.delta:.2g}")
    step("export", export, prepared, student, folder / "student.onnx")
    return step("audit", audit_step, config, folder, prepared, plan, teachers, student,
                labelled, transfer, console, watch)


def run_pipeline(config: PipelineConfig, out_dir: Path, *, console: Console | None = None,
                 observer: StepObserver | None = None) -> RunOutcome:
    """Run the whole pipeline and write the run folder ``out_dir`` atomically.

    Parameters
    ----------
    config:
        The resolved pipeline configuration (:func:`medistill.config.load_config`).
    out_dir:
        The run folder to write; it appears complete or not at all.
    console:
        Where progress goes (stderr by default).
    observer:
        Optional :class:`StepObserver` given each step's artifact (benchmarks).
    """
    console = console or Console(stderr=True)
    check_destination(out_dir)  # before any work (#16.1)
    check_allowed(config)
    with AtomicRunFolder(Path(out_dir)) as tmp, compute_backend(config.compute, tmp,
                                                                 console=console):
        report = run_into(config, tmp, console, observer)
        report = register_into(tmp, out_dir, config, report)  # run registry (#15.8)
    return RunOutcome(run_dir=Path(out_dir), report=report)


# Kept for callers of the earlier API (benchmarks): one name for the audit seed helpers.
replicate_seed = baseline_steps.replicate_seed
seed_comparison = baseline_steps.seed_comparison


__all__ = ["RunOutcome", "StepObserver", "audit_step", "plan_step", "replicate_seed", "run_into", "run_pipeline",
           "seed_comparison"]
