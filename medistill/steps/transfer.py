"""Make the transfer rows and have the teachers label them by noisy vote."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd

from medistill.config import PipelineConfig
from medistill.plan import RunPlan, aggregator_for
from medistill.privacy.randomness import Randomness
from medistill.steps.prepare import Prepared
from medistill.steps.teachers import Teachers
from medistill.transfer.sources import TransferSet, build_transfer


@dataclass(frozen=True)
class Labelled:
    """Transfer rows the teachers answered, their labels (codes or soft), and each row's
    source kind."""

    rows: pd.DataFrame
    labels: np.ndarray
    sources: np.ndarray
    n_asked: int

    @property
    def n_answered(self) -> int:
        return len(self.rows)


def make_transfer(config: PipelineConfig, prepared: Prepared, plan: RunPlan,
                  randomness: Randomness, public: pd.DataFrame | None,
                  teachers: Teachers | None = None) -> TransferSet:
    """Every planned source's rows, each source's DP cost recorded in the ledger. On the
    DP-teacher path, rows sampled from the teacher's own noisy histograms (already paid)."""
    if plan.dp_teacher is not None:
        return teacher_histogram_rows(plan, teachers, randomness)
    noises = {"synthesizer": plan.noise("transfer_synthesizer"),
              "schema_statistics": plan.noise("schema_statistics")}
    rngs = {"marginals": randomness.privacy("transfer"), "transfer": randomness.seeded("transfer")}
    sensitive = prepared.train_X.iloc[prepared.dp_rows].reset_index(drop=True)
    return build_transfer(plan.transfer_sizes, config=config, schema=prepared.data.schema,
                          sensitive_rows=sensitive, noises=noises, ledger=prepared.ledger,
                          rngs=rngs, public=public)


def teacher_histogram_rows(plan: RunPlan, teachers: Teachers, randomness: Randomness) -> TransferSet:
    """``plan.n_teacher_rows`` rows drawn feature by feature from the DP teacher's noisy
    histograms (post-processing of its ledger entry: free)."""
    from medistill.transfer.teacher_histograms import TeacherHistogramSampler

    n = plan.n_teacher_rows
    rows = TeacherHistogramSampler(teachers.histogram_source).sample(n, randomness.seeded("transfer"))
    return TransferSet(rows=rows, source=np.full(n, "teacher_histograms", dtype=object),
                       sizes={"teacher_histograms": n})


def label_transfer(config: PipelineConfig, prepared: Prepared, plan: RunPlan,
                   teachers: Teachers, transfer: TransferSet, randomness: Randomness) -> Labelled:
    """The first ``plan.n_queries`` transfer rows labelled by the configured aggregator
    (its events recorded in the ledger); unanswered rows (Confident-GNMax) are dropped."""
    if plan.dp_teacher is not None:      # free: post-processing of the DP teacher
        labels = teachers.dp_teacher.predict_proba(transfer.rows).astype(np.float32)
        return Labelled(transfer.rows, labels, transfer.source, len(transfer.rows))
    n = plan.n_queries
    empty = Labelled(transfer.rows.iloc[:0], np.empty(0, np.int64), np.empty(0, object), 0)
    if not n or teachers.ensemble is None:
        return empty
    rows = transfer.rows.iloc[:n].reset_index(drop=True)
    aggregator = aggregator_for(config, plan.n_teachers, rng=randomness.privacy("labels"))(
        plan.noise("labels"))
    ensemble = teachers.ensemble
    votes = (ensemble.teacher_probabilities(rows) if aggregator.input == "probabilities"
             else ensemble.vote_histogram(rows))
    labels = aggregator.aggregate(votes)
    answered = np.asarray(getattr(aggregator, "answered_", np.ones(n, dtype=bool)))
    if len(labels) == n:          # "abstain" keeps every row
        labels = labels[answered]
    prepared.ledger.record("labels", aggregator.privacy_events(),
                           f"{aggregator.name} on {n} transfer rows ({int(answered.sum())} "
                           f"answered), {plan.n_teachers} teachers")
    return Labelled(rows=rows[answered].reset_index(drop=True), labels=labels,
                    sources=transfer.source[:n][answered], n_asked=n)




def transfer_summary(config: PipelineConfig, prepared: Prepared, plan: RunPlan,
                     transfer: TransferSet) -> dict:
    """Each source's size, labelled rows, ledger stage and ε alone, and its fidelity to the
    sensitive test split (an internal-review metric, like the rest of the audit)."""
    from medistill.transfer.fidelity import fidelity_summary
    from medistill.transfer.sources import LEDGER_STAGE

    ledger, data = prepared.ledger, prepared.data
    X_test, _, _ = data.rows(prepared.split.test)
    entries = {e.stage: e for e in ledger.entries}
    labelled = transfer.source[:plan.n_queries]
    sources = []
    for kind, n in transfer.sizes.items():
        stage = LEDGER_STAGE[kind]
        entry = entries.get(stage) if stage else None
        rows = transfer.of(kind)
        eps = ledger.epsilon_alone(entry) if entry is not None else (0.0 if kind != "munge" else None)
        sources.append({
            "kind": kind, "n_rows": int(n), "n_labelled": int(np.sum(labelled == kind)),
            "ledger_stage": stage if entry is not None else None,
            "epsilon": None if eps is None or not np.isfinite(eps) else float(eps),
            "fidelity": fidelity_summary(X_test, rows, data.schema) if len(rows) else None})
    return {"source": config.transfer.source, "resolved": plan.transfer_kind,
            "sources": sources, "notes": transfer.notes}


def public_individuals_ledger(config: PipelineConfig, plan: RunPlan, labelled: Labelled,
                              record) -> tuple[object | None, tuple[str, ...]]:
    """The second ledger, for public transfer individuals used in DP-SGD (or None), and a
    note when their guarantee is weak."""
    from medistill.transfer.sources import public_ledger

    n_public = int(np.sum(labelled.sources == "public_table"))
    if not n_public:
        return None, ()
    ledger = public_ledger(config.transfer.public, n_public, accountant=config.privacy.accountant,
                           sample_rate=record.sample_rate, steps=record.steps,
                           noise_multiplier=record.noise_multiplier, repeats=plan.repeats)
    epsilon = ledger.epsilon()
    if plan.repeats > 1 and epsilon > config.privacy.target_epsilon:
        return ledger, (
            f"The public transfer individuals' guarantee is weak (ε = {epsilon:.3g}): to weigh "
            f"α, each of the {n_public} labelled public rows entered DP-SGD {plan.repeats} "
            "times, and a row repeated r times is charged as one of r-fold sensitivity. More "
            "labelled public rows (a larger label budget) or a smaller student.alpha lowers it.",)
    return ledger, ()


__all__ = ["Labelled", "label_transfer", "make_transfer", "public_individuals_ledger",
           "transfer_summary"]
