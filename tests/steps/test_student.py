"""The student step (steps/student.py) on a real DP-teacher run: distilled for free, then
fine-tuned by DP-SGD on the training patients only, and charged once."""

from __future__ import annotations

import re
from pathlib import Path

import numpy as np
import pytest
from rich.console import Console

from benchmarks.common import Artifacts
from medistill.config import parse_config
from medistill.pipeline import run_pipeline
from medistill.plan import RunFacts, plan_run
from medistill.privacy.ledger import PrivacyLedger, epsilon_of, event_from_entry
from medistill.privacy.randomness import Randomness
from medistill.student.train import DpSgdRecord, DpSgdSchedule
from medistill.teachers.dp_ranges import ranges_event


# ----------------------------------------------------------------------------- neighbours
# The fine-tuning (and the PATE path's student) on two prepared datasets that differ by one
# patient, under one plan: what DP-SGD sees must differ in that patient's row only.

@pytest.fixture(scope="module")
def neighbours():
    """A DP-teacher configuration and its reproducible prepared data twice, the second with
    one DP training patient fewer."""
    from dataclasses import replace

    from medistill.steps.prepare import prepare

    config = parse_config({"data": {"source": "builtin", "builtin": {"n_patients": 700}},
                           "privacy": {"target_epsilon": 1.0, "reproducible_noise": True},
                           "student": {"fine_tune_epochs": 1, "hidden_layers": [4]}})
    a, b = prepare(config, Randomness(0, True)), prepare(config, Randomness(0, True))
    return config, a, replace(b, dp_rows=b.dp_rows[1:])


def _fresh(prepared):
    """``prepared`` with an empty ledger (the steps record into it)."""
    from dataclasses import replace

    return replace(prepared, ledger=PrivacyLedger(delta=prepared.ledger.delta))


def _facts(schema, n_charged: int) -> RunFacts:
    """Charged facts claiming ``n_charged`` training patients (not the exact count)."""
    positives = n_charged // 5
    return RunFacts(schema=schema, class_counts=(n_charged - positives, positives), delta=1e-5)


def _distilled(config, prepared, n_transfer: int = 1500):
    """A stand-in distilled student: its preprocessing, a network and ``n_transfer``
    teacher-labelled transfer rows (random inputs, soft targets; no sensitive row)."""
    import torch

    from medistill.steps.student import Student, StudentData
    from medistill.student.model import StudentMLP
    from medistill.student.preprocess import as_model_input, make_preprocessor

    schema = prepared.data.schema
    pre = make_preprocessor(schema).fit(as_model_input(prepared.train_X, schema))
    width = pre.transform(as_model_input(prepared.train_X.iloc[:2], schema)).shape[1]
    rng = np.random.default_rng(3)
    p = rng.uniform(0.05, 0.95, n_transfer).astype(np.float32)
    training = StudentData(rng.normal(size=(n_transfer, width)).astype(np.float32),
                           np.c_[1 - p, p], np.ones(n_transfer, dtype=bool))
    network = StudentMLP(width, 2, (4,), generator=torch.Generator().manual_seed(0))
    return Student(network=network, record=DpSgdRecord(0.0, 1.0, 1), preprocessor=pre,
                   training=training)


def test_anchors_and_divisor_of_the_fine_tuning_follow_the_plan_not_the_patients(
        neighbours, monkeypatch) -> None:
    """Two prepared datasets one patient apart, one anchored plan from a charged count of 480
    patients, one seed: the fine-tuning gets the same anchor set, round(ratio · planned
    patients) rows (not the exact counts), and divides by the same planned expected batch."""
    from dataclasses import replace

    import medistill.steps.student as student_step

    config, a, b = neighbours
    a, b = _fresh(a), _fresh(b)
    plan = plan_run(config, _facts(a.data.schema, 480))
    n_planned = plan.fine_tune_schedule.n_examples
    assert n_planned not in (len(a.dp_rows), len(b.dp_rows))
    assert plan.fine_tune_anchor_ratio == 1.0          # anchored: few patients at ε = 1
    seen = []

    def spy(network, inputs, labels, **kwargs):
        seen.append((inputs, kwargs["anchor"]))
        return original(network, inputs, labels, **kwargs)

    original = student_step.fine_tune
    monkeypatch.setattr(student_step, "fine_tune", spy)
    records = []
    for prepared in (a, b):
        student = _distilled(config, prepared)
        tuned = student_step.fine_tune_released(config, prepared, plan, student,
                                                Randomness(0, True))
        records.append(tuned.record)
    (inputs_a, anchor_a), (inputs_b, anchor_b) = seen
    assert len(inputs_a) == len(inputs_b) + 1          # the patients differ by one
    assert len(anchor_a[0]) == round(plan.fine_tune_anchor_ratio * n_planned) == n_planned
    assert np.array_equal(anchor_a[0], anchor_b[0]) and np.array_equal(anchor_a[1], anchor_b[1])
    planned = plan.fine_tune_schedule.expected_batch_size(n_planned)
    assert [r.expected_batch_size for r in records] == [pytest.approx(planned)] * 2
    # half the ratio, half the anchors: still of the planned count
    half = replace(plan, fine_tune_anchor_ratio=0.5)
    student_step.fine_tune_released(config, a, half, _distilled(config, a), Randomness(0, True))
    assert len(seen[-1][1][0]) == round(0.5 * n_planned)


def test_pate_students_divisor_counts_planned_patients_and_the_labelled_rows(
        neighbours) -> None:
    """On the PATE path the released student's data mixes labelled transfer rows and one
    row per patient; its divisor is the plan's rate times the planned patients plus the
    labelled rows, the same for two datasets one patient apart."""
    import pandas as pd

    from medistill.steps.student import planned_sensitive_rows, train_released_student
    from medistill.steps.transfer import Labelled
    from medistill.transfer.sources import TransferSet

    _, a, b = neighbours
    a, b = _fresh(a), _fresh(b)
    config = parse_config({"data": {"source": "builtin", "builtin": {"n_patients": 700}},
                           "privacy": {"target_epsilon": 8.0},
                           "teachers": {"dp_teacher": "none", "n_teachers": 10},
                           "labels": {"n_queries": 100}, "student": {"alpha": 0.5, "epochs": 1},
                           "audit": {"canaries": 0}})
    plan = plan_run(config, _facts(a.data.schema, 480))
    assert plan.student_touches_sensitive and plan.n_queries == 100
    assert planned_sensitive_rows(plan) == 480 not in (len(a.dp_rows), len(b.dp_rows))
    # stand-in labelled transfer rows (test-split features; the step only needs their shape)
    rows = a.data.rows(a.split.test)[0].iloc[:100].reset_index(drop=True)
    rows = pd.concat([rows] * (100 // len(rows) + 1)).iloc[:100].reset_index(drop=True)
    sources = np.full(len(rows), "dp_synthesizer")
    labelled = Labelled(rows, np.random.default_rng(0).integers(0, 2, len(rows)), sources, 100)
    transfer = TransferSet(rows, sources, {"dp_synthesizer": len(rows)})
    divisors = []
    for prepared in (a, b):
        student = train_released_student(config, prepared, plan, labelled, transfer,
                                         Randomness(0, True))
        assert int(student.training.is_transfer.sum()) == plan.repeats * 100
        divisors.append(student.record.expected_batch_size)
    expected = plan.schedule.sample_rate * (480 + plan.repeats * 100)
    assert divisors == [pytest.approx(expected)] * 2
    assert expected == pytest.approx(plan.schedule.expected_batch_size())


@pytest.mark.slow
def test_fine_tuning_reads_only_training_patients_and_is_charged_once(
        tmp_path: Path, cohort_csv: Path, monkeypatch) -> None:
    import medistill.steps.baselines as baselines_step
    import medistill.steps.student as student_step

    seen: dict[str, list[tuple[np.ndarray, np.ndarray]]] = {"released": [], "audit": []}

    def spy(name, original):
        def wrapped(network, inputs, labels, **kwargs):
            seen[name].append((inputs.copy(), np.asarray(labels).copy()))
            return original(network, inputs, labels, **kwargs)
        return wrapped

    monkeypatch.setattr(student_step, "fine_tune", spy("released", student_step.fine_tune))
    monkeypatch.setattr(baselines_step, "fine_tune", spy("audit", baselines_step.fine_tune))
    raw = {"data": {"source": "csv", "path": str(cohort_csv), "label": "cv_event_1y",
                    "id_column": "patient_id", "identifiers": ["name", "mrn", "phone"]},
           "privacy": {"target_epsilon": 3.0},
           "teachers": {"reference": "logistic_regression", "dp_teacher_rows": 3000},
           "audit": {"reference_models": 2, "baseline_seeds": 2, "speed_repeats": 10,
                     "bootstrap": 0, "memory": False}}
    keep = Artifacts("canaries", "plan")
    report = run_pipeline(parse_config(raw), tmp_path / "run", console=Console(quiet=True),
                          observer=keep).report
    prepared = keep.get("canaries")
    plan = keep.get("plan")[0]
    # The released student's fine-tuning saw one row per DP training patient; the audit's
    # replicate and reference models are fine-tuned as it was (on their own rows).
    assert len(seen["released"]) == 1
    inputs, labels = seen["released"][0]
    assert len(inputs) == len(prepared.dp_rows)
    assert np.array_equal(labels, prepared.train_y[prepared.dp_rows])
    assert len(seen["audit"]) >= 1

    # ledger.json ships in the release package: its descriptions name no exact patient count
    counts = {str(len(prepared.dp_rows)), str(len(prepared.split.train))}
    for entry in prepared.ledger.entries:
        assert not counts & set(re.findall(r"\d+", entry.description)), entry.description
    entries = [e for e in prepared.ledger.entries if e.stage == "student_dp_sgd"]
    assert len(entries) == 1
    schedule, noise = plan.fine_tune_schedule, plan.noise("student_dp_sgd")
    assert epsilon_of([event_from_entry(entries[0])], prepared.ledger.delta, "pld") == \
        pytest.approx(epsilon_of([schedule.event(noise)], prepared.ledger.delta, "pld"), rel=1e-6)
    assert 0.98 * 3.0 <= prepared.ledger.epsilon() <= 3.0
    section = report["run"]["student"]
    assert section["fine_tune"]["noise_multiplier"] == pytest.approx(noise)
    assert section["noise_multiplier"] == pytest.approx(noise) and section["steps"] == schedule.steps
    # Bands: it learns (cohort AUROC ≈ 0.8 without noise), no better than the reference
    # teacher allows; and the direct DP-SGD baseline is there to compare with.
    utility = report["utility"]
    assert 0.65 <= utility["student"]["auroc"] <= utility["teacher"]["auroc"] + 0.03
    assert utility["baselines"]["dp_sgd_direct"]["auroc"] > 0.5
    # The direct baseline does not reuse the student's preprocessing (fitted on the DP
    # teacher's rows): it buys its own ranges, and with them its ε is the run's target.
    direct = utility["baselines"]["dp_sgd_direct"]
    own = direct["preprocessing"]
    assert own["source"] == "own_ranges" and own["ranged_columns"] == len(plan.marginal_columns) > 0
    # sized on the planned patients (charged count), as the released student's fine-tuning
    config, n = parse_config(raw), plan.fine_tune_schedule.n_examples
    sgd = DpSgdSchedule.for_data(n, config.student.resolved_batch_size(n), config.student.epochs)
    entries, delta = prepared.ledger.entries, prepared.ledger.delta
    paid = [*(event_from_entry(e) for e in entries if e.stage in baselines_step.TRANSFER_STAGES),
            sgd.event(direct["noise_multiplier"]), ranges_event(own["ranges_noise_multiplier"])]
    assert "patient_counts" in {e.stage for e in entries}
    assert direct["epsilon"] == pytest.approx(epsilon_of(paid, delta, "pld"), rel=1e-6)
    assert 0.98 * 3.0 <= direct["epsilon"] <= 3.0
    assert own["ranges_epsilon"] == pytest.approx(
        epsilon_of([ranges_event(own["ranges_noise_multiplier"])], delta, "pld"), rel=1e-6)
    assert 0.8 * 0.03 * 3.0 <= own["ranges_epsilon"] < direct["epsilon"]   # alone, sub-additive
