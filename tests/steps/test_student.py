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
from medistill.privacy.ledger import epsilon_of, event_from_entry
from medistill.student.train import DpSgdSchedule
from medistill.teachers.dp_ranges import ranges_event


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
    config, n = parse_config(raw), len(prepared.dp_rows)
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
