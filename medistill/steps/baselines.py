"""Audit-only trainings: the direct DP-SGD baseline, student replicates over seeds, and the
reference students of the membership attacks. None of them is ever released or written."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd

from medistill.config import PipelineConfig
from medistill.plan import RunPlan, ranges_fraction
from medistill.privacy.ledger import epsilon_of, event_from_entry
from medistill.privacy.planner import StagePlan, plan_budget
from medistill.steps.prepare import Prepared
from medistill.steps.student import (
    Student,
    anchor_rows,
    expected_batch_size,
    labelled_transfer,
    sensitive_inputs,
    student_test_metrics,
    transfer_bounds,
)
from medistill.student.preprocess import as_model_input
from medistill.student.train import DpSgdSchedule, fine_tune, train_student

# Ledger stages whose cost the direct baseline pays too (off the DP-teacher path it trains on
# the student's preprocessing, made from the transfer rows these stages paid for).
TRANSFER_STAGES = ("patient_counts", "feature_selection", "category_selection",
                   "schema_statistics",
                   "transfer_synthesizer", "transfer_munge")
# On the DP-teacher path the student's preprocessing is fitted on rows drawn from the DP
# teacher's own noisy histograms: the baseline does not reuse it (that would borrow the
# teacher's ε) but buys noisy ranges of its own within the same total ε.
OWN_RANGES = "direct_ranges"


def replicate_seed(seed: int, arm: int, index: int) -> int:
    """Seed of the ``index``-th audit training of ``arm`` (1: direct baseline, 2: student
    replicate). ``train_student`` draws from seed, seed + 1 and seed + 2, and the released
    student uses the pipeline's seed, so audit seeds start at seed + 10 and are spaced by 5:
    no two trainings share a random stream."""
    return seed + 10 * (index + 1) + 5 * (arm - 1)


def seed_comparison(student_auroc: list[float], direct_auroc: list[float]) -> dict:
    """Mean AUROCs of the two arms, their difference and its standard error (Welch)."""
    s, d = np.asarray(student_auroc, float), np.asarray(direct_auroc, float)
    se = (float(np.sqrt(s.var(ddof=1) / len(s) + d.var(ddof=1) / len(d)))
          if len(s) > 1 and len(d) > 1 else None)
    return {"seeds": min(len(s), len(d)), "student_auroc": s.tolist(), "direct_auroc": d.tolist(),
            "student_mean": float(s.mean()), "direct_mean": float(d.mean()),
            "difference": float(s.mean() - d.mean()), "difference_se": se}


@dataclass(frozen=True)
class DirectBaseline:
    """The direct DP-SGD students (audit only): their mean metrics for the report, and the
    networks themselves for benchmarks that attack them."""

    metrics: dict
    networks: tuple


@dataclass(frozen=True)
class DirectBudget:
    """The direct baseline's part of the run's ε: what it pays of the ledger (``spent``),
    its DP-SGD schedule and noise, and its own ranges' columns and noise (none off the
    DP-teacher path, where it reuses the student's paid-for preprocessing)."""

    spent: tuple
    schedule: DpSgdSchedule
    noise: float
    own_preprocessing: bool
    columns: tuple[str, ...]
    ranges_noise: float | None

    def events(self) -> list:
        from medistill.teachers.dp_ranges import ranges_event

        ranges = [ranges_event(self.ranges_noise)] if self.columns else []
        return [*self.spent, self.schedule.event(self.noise), *ranges]


def direct_budget(config: PipelineConfig, plan: RunPlan, ledger, facts, n_patients: int
                  ) -> DirectBudget:
    """Plan the direct baseline at the run's total ε. Off the DP-teacher path it pays the
    stages of the transfer rows the student's preprocessing was fitted on. On it, it buys
    noisy ranges of the undeclared numeric columns (sized as the DP teacher's are,
    :func:`~medistill.plan.ranges_fraction`); its DP-SGD takes the rest, on a schedule for
    ``n_patients`` rows (the planned number, from the charged count)."""
    from medistill.teachers.dp_ranges import ranges_event

    spent = tuple(event_from_entry(e) for e in ledger.entries if e.stage in TRANSFER_STAGES)
    own_preprocessing = "teacher_histograms" in plan.transfer_kinds
    columns = tuple(plan.marginal_columns) if own_preprocessing else ()
    schedule = DpSgdSchedule.for_data(n_patients, config.student.resolved_batch_size(n_patients),
                                      config.student.epochs)
    ranges_share = ranges_fraction(config, facts, len(columns)) if columns else 0.0
    stages = [StagePlan("student_dp_sgd", 1.0 - ranges_share, schedule.event, 50.0,
                        "direct DP-SGD")]
    if columns:
        stages.append(StagePlan(OWN_RANGES, ranges_share, ranges_event, 1e4,
                                "the direct baseline's numeric ranges"))
    noises = plan_budget(stages, target_epsilon=config.privacy.target_epsilon,
                         delta=ledger.delta, accountant=config.privacy.accountant, spent=spent)
    return DirectBudget(spent, schedule, noises["student_dp_sgd"], own_preprocessing, columns,
                        noises.get(OWN_RANGES))


def direct_dp_sgd(config: PipelineConfig, prepared: Prepared, student: Student,
                  plan: RunPlan) -> DirectBaseline:
    """Students of the same architecture trained by DP-SGD on sensitive rows only (no
    teacher) at the same total ε (:func:`direct_budget`): what distillation has to beat.
    One per seed of ``audit.baseline_seeds``; metrics are their means, with each seed's
    AUROC. On the DP-teacher path each seed buys its own ranges and fits the student's kind
    of preprocessing on them (the student's was fitted on the DP teacher's rows)."""
    from medistill.teachers.dp_ranges import ranges_event

    ledger, data = prepared.ledger, prepared.data
    # sized, like the released student, on the planned patients (charged count), not the exact
    planned = max(1, prepared.facts.without_excluded_canaries(plan.n_canaries).n_train)
    budget = direct_budget(config, plan, ledger, prepared.facts, planned)
    per_seed, networks = [], []
    for i in range(config.audit.baseline_seeds):
        seed = replicate_seed(config.seed, 1, i)
        preprocessor = (_own_preprocessor(config, prepared, list(budget.columns),
                                          budget.ranges_noise, np.random.default_rng(seed + 3))
                        if budget.own_preprocessing else student.preprocessor)
        inputs, labels = sensitive_inputs(prepared, preprocessor)
        network, _ = train_student(inputs, labels,
                                   n_classes=data.schema.n_classes, config=config.student,
                                   noise_multiplier=budget.noise, seed=seed,
                                   schedule=budget.schedule,
                                   expected_batch_size=budget.schedule.expected_batch_size())
        per_seed.append(student_test_metrics(network, preprocessor, prepared))
        networks.append(network)
    means = {key: float(np.mean([m[key] for m in per_seed])) for key in per_seed[0]}
    preprocessing = {"source": "own_ranges" if budget.own_preprocessing else "student",
                     "ranged_columns": len(budget.columns)}
    if budget.columns:
        preprocessing.update(ranges_noise_multiplier=budget.ranges_noise,
                             ranges_epsilon=epsilon_of([ranges_event(budget.ranges_noise)],
                                                       ledger.delta, config.privacy.accountant))
    return DirectBaseline({**means, "auroc_per_seed": [m["auroc"] for m in per_seed],
                           "seeds": len(per_seed),
                           "epsilon": epsilon_of(budget.events(), ledger.delta,
                                                 config.privacy.accountant),
                           "noise_multiplier": budget.noise, "preprocessing": preprocessing},
                          tuple(networks))


def _own_preprocessor(config: PipelineConfig, prepared: Prepared, columns: list[str],
                      noise: float | None, rng: np.random.Generator):
    """The baseline's preprocessing: declared ranges, and noisy ranges of ``columns`` released
    from one row per training patient (audit only, never written: seeded noise like the
    rest of the baseline), their histograms sampled to fit the student's kind of
    preprocessor."""
    from medistill.student.range_preprocessing import preprocessor_from_ranges
    from medistill.teachers.dp_ranges import release_ranges

    declared = {name: (p.min, p.max) for name, p in config.transfer.priors.items()}
    released = {}
    if columns:
        rows = prepared.train_X.iloc[prepared.dp_rows].reset_index(drop=True)
        released = release_ranges(rows, columns, noise_multiplier=noise, rng=rng)
    return preprocessor_from_ranges(prepared.data.schema, released, declared, rng)


def distillation_gain(config: PipelineConfig, prepared: Prepared, plan: RunPlan,
                      student: Student, direct: dict) -> dict:
    """The student's AUROC against the direct baseline's, over seeds: the released student
    plus ``audit.baseline_seeds - 1`` retrainings on the same rows at the same noise (audit
    only, never written); the difference of means with its standard error."""
    train = student.training
    auroc = [student_test_metrics(student.network, student.preprocessor, prepared)["auroc"]]
    sensitive = (sensitive_inputs(prepared, student.preprocessor)
                 if plan.fine_tune_schedule is not None else None)
    for i in range(1, config.audit.baseline_seeds):
        seed = replicate_seed(config.seed, 2, i)
        replicate, _ = train_student(train.inputs, train.targets,
                                     n_classes=prepared.data.schema.n_classes,
                                     config=plan.student or config.student,
                                     is_transfer=train.is_transfer,
                                     noise_multiplier=student.transfer_record.noise_multiplier,
                                     seed=seed, schedule=plan.schedule, alpha=plan.alpha,
                                     input_bounds=transfer_bounds(train),
                                     expected_batch_size=expected_batch_size(plan, train))
        if sensitive is not None:
            replicate = _fine_tuned(replicate, *sensitive, config, plan, student, seed + 1)
        auroc.append(student_test_metrics(replicate, student.preprocessor, prepared)["auroc"])
    return seed_comparison(auroc, direct["auroc_per_seed"])


def _fine_tuned(network, inputs: np.ndarray, labels: np.ndarray, config: PipelineConfig,
                plan: RunPlan, student: Student, seed: int):
    """An audit-only replicate of the released student's fine-tuning (seeded noise)."""
    tuned, _ = fine_tune(network, inputs, labels, n_classes=len(student.training.targets[0]),
                         config=plan.student or config.student,
                         noise_multiplier=student.record.noise_multiplier, seed=seed,
                         schedule=plan.fine_tune_schedule,
                         input_bounds=transfer_bounds(student.training),
                         anchor=anchor_rows(*labelled_transfer(student.training),
                                            n_planned=plan.fine_tune_schedule.n_examples,
                                            ratio=plan.fine_tune_anchor_ratio,
                                            rng=np.random.default_rng(seed)))
    return tuned


def reference_student_factory(config: PipelineConfig, prepared: Prepared, plan: RunPlan,
                              student: Student):
    """Re-runs the student's own training (same transfer rows, noise and schedule) on a
    subset of an attack population: the reference models of LiRA and RMIA."""
    # The closures capture only what a reference model needs (they may be shipped to a
    # cluster's workers): never the sensitive data or the released student's training set.
    schema, n_classes = prepared.data.schema, prepared.data.schema.n_classes
    train = student.training
    transfer_x, transfer_y = train.inputs[train.is_transfer], train.targets[train.is_transfer]
    preprocessor = student.preprocessor
    bounds = transfer_bounds(train)
    student_config = plan.student or config.student
    noise = student.transfer_record.noise_multiplier
    batch, alpha = plan.schedule.batch_size, plan.alpha
    # DP-teacher path: the population rows enter only the fine-tuning, as the released
    # student's patients did
    tune = plan.fine_tune_schedule
    tune_noise, anchor_ratio = student.record.noise_multiplier, plan.fine_tune_anchor_ratio

    def factory(features: pd.DataFrame, labels: np.ndarray):
        population = preprocessor.transform(as_model_input(features, schema))

        def fit(indices: np.ndarray, seed: int):
            import torch

            if tune is not None:
                net, _ = train_student(transfer_x, transfer_y, n_classes=n_classes,
                                       config=student_config,
                                       is_transfer=np.ones(len(transfer_x), bool),
                                       noise_multiplier=noise, seed=seed, batch_size=batch,
                                       alpha=alpha, input_bounds=bounds)
                # as the released student: the plan's schedule, divisor and anchor count
                x = population[indices].astype(np.float32)
                net, _ = fine_tune(net, x, labels[indices], n_classes=n_classes,
                                   config=student_config, noise_multiplier=tune_noise,
                                   seed=seed + 1, schedule=tune, input_bounds=bounds,
                                   anchor=anchor_rows(transfer_x, transfer_y,
                                                      n_planned=tune.n_examples,
                                                      ratio=anchor_ratio,
                                                      rng=np.random.default_rng(seed)))
            else:
                x = np.vstack([transfer_x, population[indices]]).astype(np.float32)
                y = np.vstack([transfer_y, np.eye(n_classes, dtype=np.float32)[labels[indices]]])
                flags = np.r_[np.ones(len(transfer_x), bool), np.zeros(len(indices), bool)]
                net, _ = train_student(x, y, n_classes=n_classes, config=student_config,
                                       is_transfer=flags, noise_multiplier=noise, seed=seed,
                                       batch_size=batch, alpha=alpha, input_bounds=bounds)

            def predict(rows: pd.DataFrame) -> np.ndarray:
                z = preprocessor.transform(as_model_input(rows, schema))
                with torch.no_grad():
                    return torch.softmax(net(torch.as_tensor(z, dtype=torch.float32)), 1).numpy()
            return predict
        return fit
    return factory




def nonprivate_logistic_regression(config: PipelineConfig, prepared: Prepared) -> dict:
    """A non-private logistic regression on all training rows: the simplest model the
    hospital could fit without this kit (audit only)."""
    from medistill.audit.utility import utility_metrics
    from medistill.teachers.models import make_teacher

    data = prepared.data
    model = make_teacher("logistic_regression", data.schema, random_state=config.seed)
    model.fit(prepared.train_X, prepared.train_y)
    X_test, y_test, _ = data.rows(prepared.split.test)
    return utility_metrics(y_test, model.predict_proba(X_test))


__all__ = ["TRANSFER_STAGES", "DirectBaseline", "direct_dp_sgd", "distillation_gain",
           "nonprivate_logistic_regression", "reference_student_factory", "replicate_seed",
           "seed_comparison"]
