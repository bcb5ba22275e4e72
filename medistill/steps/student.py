"""Train the student by DP-SGD on labelled transfer rows and sensitive rows."""

from __future__ import annotations

from dataclasses import dataclass, replace

import numpy as np

from medistill.config import PipelineConfig
from medistill.plan import RunPlan
from medistill.privacy.randomness import Randomness
from medistill.steps.prepare import Prepared
from medistill.steps.transfer import Labelled
from medistill.student.preprocess import as_model_input, make_preprocessor
from medistill.student.recalibration import (
    LogitBins,
    histogram_event,
    release,
    shrunk_platt,
)
from medistill.student.train import DpSgdRecord, DpSgdSchedule, fine_tune, train_student
from medistill.transfer.sources import TransferSet

# Below this many synthetic rows the student's preprocessing statistics come from all
# transfer rows (a public table's included).
MIN_PREPROCESSING_ROWS = 200
# Transfer kinds sampled from paid-for statistics (no individual's values).
SYNTHETIC_KINDS = ("dp_synthesizer", "schema_prior", "teacher_histograms")


@dataclass(frozen=True)
class StudentData:
    """The student's training examples: preprocessed inputs, target probability vectors,
    and which rows are (repeated) labelled transfer rows."""

    inputs: np.ndarray
    targets: np.ndarray
    is_transfer: np.ndarray


@dataclass(frozen=True)
class Student:
    """The released network, what DP-SGD did, its preprocessing and training data."""

    network: object
    record: DpSgdRecord          # the DP-SGD that touched sensitive rows, if any
    preprocessor: object
    training: StudentData
    notes: tuple[str, ...] = ()
    recalibration: tuple[float, float] | None = None    # (slope, intercept) folded in
    # DP-teacher path: the distillation's own record (no noise: only transfer rows) when the
    # student was then fine-tuned on sensitive rows (``record`` is the fine-tuning's)
    distillation_record: DpSgdRecord | None = None

    @property
    def transfer_record(self) -> DpSgdRecord:
        """The training that saw the labelled transfer rows."""
        return self.distillation_record or self.record


def fit_preprocessor(prepared: Prepared, transfer: TransferSet):
    """Preprocessing statistics from synthetic transfer rows (already paid for) when there
    are enough, so no public individual's values enter them unnoised; else all transfer
    rows, with a note."""
    schema = prepared.data.schema
    synthetic = transfer.rows[np.isin(transfer.source, SYNTHETIC_KINDS)]
    notes: tuple[str, ...] = ()
    rows = synthetic
    if len(synthetic) < MIN_PREPROCESSING_ROWS:
        rows = transfer.rows
        if (transfer.source == "public_table").any():
            notes = ("The student's preprocessing statistics (means, scales, category lists) "
                     "were computed from the public transfer table without noise; the public "
                     "individuals' guarantee covers the DP-SGD training, not these statistics.",)
    return make_preprocessor(schema).fit(as_model_input(rows, schema)), notes


def student_data(prepared: Prepared, plan: RunPlan, labelled: Labelled, preprocessor,
                 rng: np.random.Generator) -> StudentData:
    """Labelled transfer rows (repeated ``plan.repeats`` times to weigh α) plus one row per
    sensitive training patient, shuffled by ``rng`` (seeded: nothing relies on it)."""
    schema = prepared.data.schema
    eye = np.eye(schema.n_classes, dtype=np.float32)
    parts_x, parts_y, parts_t = [], [], []
    if len(labelled.labels):
        x = preprocessor.transform(as_model_input(labelled.rows, schema))
        y = labelled.labels if labelled.labels.ndim == 2 else eye[labelled.labels]
        parts_x.append(np.repeat(x, plan.repeats, axis=0))
        parts_y.append(np.repeat(y.astype(np.float32), plan.repeats, axis=0))
        parts_t.append(np.ones(len(x) * plan.repeats, dtype=bool))
    if plan.student_touches_sensitive:
        rows = prepared.train_X.iloc[prepared.dp_rows].reset_index(drop=True)
        parts_x.append(preprocessor.transform(as_model_input(rows, schema)))
        parts_y.append(eye[prepared.train_y[prepared.dp_rows]])
        parts_t.append(np.zeros(len(rows), dtype=bool))
    inputs = np.vstack(parts_x).astype(np.float32)
    order = rng.permutation(len(inputs))
    return StudentData(inputs[order], np.vstack(parts_y)[order], np.concatenate(parts_t)[order])


def transfer_bounds(training: StudentData) -> tuple[np.ndarray, np.ndarray] | None:
    """Per-input range of the labelled transfer rows (synthetic or public: no sensitive
    value), the student's input clamp; None when there are none."""
    rows = training.inputs[training.is_transfer]
    if not len(rows):
        return None
    return rows.min(axis=0), rows.max(axis=0)


def planned_sensitive_rows(plan: RunPlan) -> int:
    """The planned number of sensitive rows in the student's data on the PATE path (one per
    training patient, from the charged count): the plan's examples less its planned labelled
    rows; 0 when the student does not touch sensitive rows."""
    if not plan.student_touches_sensitive:
        return 0
    return max(1, plan.schedule.n_examples - plan.repeats * plan.n_queries)


def expected_batch_size(plan: RunPlan, training: StudentData) -> float | None:
    """The divisor of the student's noisy gradient sums: the plan's sample rate times the
    planned sensitive rows plus the labelled transfer rows (a public number, post-processing
    of the labels); None (Opacus's own, from the row count) when no sensitive row is in
    ``training``, whose size is then public."""
    if not plan.student_touches_sensitive:
        return None
    n_transfer = int(training.is_transfer.sum())
    return plan.schedule.sample_rate * (planned_sensitive_rows(plan) + n_transfer)


def train_released_student(config: PipelineConfig, prepared: Prepared, plan: RunPlan,
                           labelled: Labelled, transfer: TransferSet, randomness: Randomness,
                           on_epoch=None) -> Student:
    """Train the student that will be released, with the plan's schedule and noise, its
    noise and sampling from a privacy generator; record DP-SGD in the ledger when it
    touched sensitive rows."""
    preprocessor, notes = fit_preprocessor(prepared, transfer)
    training = student_data(prepared, plan, labelled, preprocessor, randomness.seeded("mix"))
    network, record = train_student(
        training.inputs, training.targets, n_classes=prepared.data.schema.n_classes,
        config=plan.student or config.student, is_transfer=training.is_transfer,
        noise_multiplier=plan.student_noise, seed=config.seed, schedule=plan.schedule,
        alpha=plan.alpha, privacy_rng=randomness.privacy("student_dp_sgd"), on_epoch=on_epoch,
        input_bounds=transfer_bounds(training),
        expected_batch_size=expected_batch_size(plan, training))
    if plan.student_touches_sensitive:
        done = DpSgdSchedule(plan.schedule.n_examples, plan.schedule.batch_size,
                             record.sample_rate, record.steps)
        prepared.ledger.record(
            "student_dp_sgd", done.event(record.noise_multiplier),
            "DP-SGD on one row of each sensitive training patient"
            + (f", mixed with {labelled.n_answered} labelled transfer rows"
               if labelled.n_answered else ""))
    student = Student(network=network, record=record, preprocessor=preprocessor,
                      training=training, notes=notes)
    if plan.fine_tune_schedule is not None:
        student = fine_tune_released(config, prepared, plan, student, randomness)
    return student


def sensitive_inputs(prepared: Prepared, preprocessor) -> tuple[np.ndarray, np.ndarray]:
    """One row per sensitive training patient (``prepared.dp_rows``), preprocessed, and its
    class code."""
    schema = prepared.data.schema
    rows = prepared.train_X.iloc[prepared.dp_rows].reset_index(drop=True)
    inputs = preprocessor.transform(as_model_input(rows, schema)).astype(np.float32)
    return inputs, prepared.train_y[prepared.dp_rows]


def anchor_count(n_planned: int, ratio: float, available: int) -> int:
    """How many anchors the fine-tuning mixes in: ``ratio`` per *planned* patient (the
    plan's ``fine_tune_schedule.n_examples``, from the charged count), at most the
    ``available`` labelled transfer rows. Never the exact patient count: the anchors share
    the patients' DP-SGD batches, so a count read from the data would make neighbouring
    datasets differ in more than one row."""
    return min(available, round(ratio * n_planned))


def anchor_rows(transfer_inputs: np.ndarray, transfer_targets: np.ndarray, *, n_planned: int,
                ratio: float, rng: np.random.Generator
                ) -> tuple[np.ndarray, np.ndarray] | None:
    """:func:`anchor_count` labelled transfer rows (synthetic rows the DP teacher labelled:
    post-processing of its release), drawn without replacement by ``rng`` (seeded), with
    the teacher's probabilities; None when there are none to draw. Nothing here reads the
    sensitive rows, so the set is the same for any two neighbouring datasets."""
    n = anchor_count(n_planned, ratio, len(transfer_inputs))
    if n == 0:
        return None
    chosen = np.sort(rng.choice(len(transfer_inputs), size=n, replace=False))
    return transfer_inputs[chosen], transfer_targets[chosen]


def labelled_transfer(training: StudentData) -> tuple[np.ndarray, np.ndarray]:
    """The labelled transfer rows of the student's training data and their targets."""
    return training.inputs[training.is_transfer], training.targets[training.is_transfer]


def fine_tune_released(config: PipelineConfig, prepared: Prepared, plan: RunPlan,
                       student: Student, randomness: Randomness) -> Student:
    """DP-SGD fine-tuning of the distilled student on the sensitive training patients (with
    teacher-labelled anchor rows in the same batches: a planned number of them, drawn by a
    seeded generator, see :func:`anchor_rows`) at the plan's noise and schedule (noise and
    sampling from a privacy generator), recorded in the ledger as stage
    ``student_dp_sgd``."""
    inputs, labels = sensitive_inputs(prepared, student.preprocessor)
    noise = plan.noise("student_dp_sgd")
    schedule = plan.fine_tune_schedule
    network, record = fine_tune(
        student.network, inputs, labels, n_classes=prepared.data.schema.n_classes,
        config=plan.student or config.student, noise_multiplier=noise, seed=config.seed + 1,
        schedule=schedule, privacy_rng=randomness.privacy("student_fine_tune"),
        input_bounds=transfer_bounds(student.training),
        anchor=anchor_rows(*labelled_transfer(student.training), n_planned=schedule.n_examples,
                           ratio=plan.fine_tune_anchor_ratio, rng=randomness.seeded("anchor")))
    done = DpSgdSchedule(schedule.n_examples, schedule.batch_size, record.sample_rate,
                         record.steps)
    prepared.ledger.record(
        "student_dp_sgd", done.event(record.noise_multiplier),
        "DP-SGD fine-tuning of the distilled student on one row of each sensitive training "
        "patient" + (", with teacher-labelled transfer rows in its batches"
                     if plan.fine_tune_anchor_ratio else ""))
    return replace(student, network=network, record=record,
                   distillation_record=student.record)


def student_test_metrics(network, preprocessor, prepared: Prepared) -> dict:
    """Utility of a torch student on the sensitive test split (audit only)."""
    import torch

    from medistill.audit.utility import utility_metrics

    data = prepared.data
    X_test, y_test, _ = data.rows(prepared.split.test)
    x = torch.as_tensor(preprocessor.transform(as_model_input(X_test, data.schema)),
                        dtype=torch.float32)
    with torch.no_grad():
        proba = torch.softmax(network(x), dim=1).numpy()
    return utility_metrics(y_test, proba)




def _logit_difference(network, preprocessor, rows, schema) -> np.ndarray:
    import torch

    x = torch.as_tensor(preprocessor.transform(as_model_input(rows, schema)), dtype=torch.float32)
    with torch.no_grad():
        logits = network(x).numpy()
    return (logits[:, 1] - logits[:, 0]).astype(float)


def recalibrate(config: PipelineConfig, prepared: Prepared, plan: RunPlan, student: Student,
                labelled: Labelled, randomness: Randomness) -> Student:
    """DP Platt scaling of a binary student: bins of its logit fixed on the labelled transfer
    rows, one noisy (negatives, positives) histogram over one row per training patient
    (charged as stage ``recalibration``, noise from a privacy generator), a logistic fit on
    the noisy bins, folded into the student's last layer (see
    :mod:`medistill.student.recalibration`)."""
    if plan.recalibration_bins is None:
        return student
    import torch

    schema = prepared.data.schema
    synthetic = labelled.rows[np.isin(labelled.sources, SYNTHETIC_KINDS)]
    if not len(synthetic):
        return replace(student, notes=(*student.notes, (
            "No synthetic transfer rows to place the recalibration's bins on; the student "
            "was not recalibrated and nothing was charged."),))
    bins = LogitBins.from_transfer(
        _logit_difference(student.network, student.preprocessor, synthetic, schema),
        plan.recalibration_bins)
    rows = prepared.train_X.iloc[prepared.dp_rows].reset_index(drop=True)
    statistic = bins.statistic(
        _logit_difference(student.network, student.preprocessor, rows, schema),
        prepared.train_y[prepared.dp_rows])
    noise = plan.noise("recalibration")
    released = release(statistic, noise, randomness.privacy("recalibration"))
    prepared.ledger.record("recalibration", histogram_event(noise),
                           f"noisy outcome counts and logit sums in {len(bins.centres)} bins of the "
                           "student's logit, one row of each training patient")
    fit = shrunk_platt(bins, released, noise, randomness.seeded("recalibration_refits"))
    if fit is None:     # noise swamped the counts: keep the distilled risks (budget is spent)
        return replace(student, notes=(*student.notes, (
            "The DP recalibration was not applied: after its noise, the outcome histogram "
            "showed patients of one outcome class only, so no risk line could be fitted. The "
            "student's distilled risks were kept as they were; the recalibration's share of ε "
            "is still counted in the ledger."),))
    head = student.network.net[-1]
    with torch.no_grad():
        head.weight.mul_(fit.slope)
        head.bias.mul_(fit.slope)
        head.bias[1] += fit.intercept / 2
        head.bias[0] -= fit.intercept / 2
    shrunk = ("" if fit.fitted_slope is None else
              f" (fitted {fit.fitted_slope:.3g}, spread {fit.slope_sd:.2g} under the noise)")
    return replace(student, notes=(*student.notes, (
        f"The student's risks were recalibrated with DP (Platt scaling on its logit from a "
        f"noisy {len(bins.centres)}-bin outcome histogram: slope {fit.slope:.3g}{shrunk}, "
        f"intercept {fit.intercept:.3g}), charged as ledger stage 'recalibration'."),),
        recalibration=(fit.slope, fit.intercept))


__all__ = ["Student", "StudentData", "anchor_count", "anchor_rows", "expected_batch_size",
           "fine_tune_released", "fit_preprocessor", "labelled_transfer",
           "planned_sensitive_rows", "recalibrate", "sensitive_inputs", "student_data",
           "student_test_metrics", "transfer_bounds", "train_released_student"]
