"""The DP teachers (steps/teachers.py) on a real run: what they read, what they cost, how one
is chosen."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from rich.console import Console

from benchmarks.common import Artifacts, plan_of
from medistill.config import parse_config
from medistill.pipeline import run_pipeline


@pytest.mark.slow
def test_dp_teachers_read_only_training_patients_and_selection_is_charged(
        tmp_path: Path, cohort_table, monkeypatch) -> None:
    """Every row either DP teacher fits on, and every row the private selection scores, is
    a training patient's (never test or holdout) and never a canary the audit left out;
    together they are exactly the patients the DP stages may see. Each fit and the selection
    are in the ledger, which stays within the target; the report names the chosen teacher
    and carries the canary audit."""
    import medistill.teachers.dp_ebm as dp_ebm
    import medistill.teachers.dp_linear as dp_linear
    import medistill.teachers.dp_ranges as dp_ranges
    import medistill.teachers.private_selection as private_selection

    table = cohort_table.copy()
    table["tag"] = np.arange(len(table), dtype=float)   # one distinct value per patient
    csv = tmp_path / "tagged.csv"
    table.to_csv(csv, index=False)
    seen: dict[str, set[float]] = {"dp_ebm": set(), "dp_linear": set(), "selection": set(),
                                   "ranges": set()}
    settings: list = []
    public_rows: list = []   # the row count interpret's bin merging reads

    def spy(name, original, frame_arg: int = 0):
        def wrapped(*args, **kwargs):
            seen[name].update(args[frame_arg]["tag"].tolist())
            settings.append((name, kwargs.get("settings")))
            public_rows.append((name, kwargs.get("public_rows")))
            return original(*args, **kwargs)
        return wrapped

    monkeypatch.setattr(dp_ebm, "fit_dp_ebm", spy("dp_ebm", dp_ebm.fit_dp_ebm))
    monkeypatch.setattr(dp_linear, "fit_dp_linear", spy("dp_linear", dp_linear.fit_dp_linear))
    monkeypatch.setattr(private_selection, "select_teacher",
                        spy("selection", private_selection.select_teacher, frame_arg=1))
    monkeypatch.setattr(dp_ranges, "release_ranges", spy("ranges", dp_ranges.release_ranges))
    import medistill.steps.student as student_step

    fine_tuned_on: list[np.ndarray] = []   # the patients (train-split rows) the fine-tuning reads

    def fine_tuning_inputs(prepared, preprocessor):
        fine_tuned_on.append(prepared.dp_rows.copy())
        return sensitive_inputs(prepared, preprocessor)

    sensitive_inputs = student_step.sensitive_inputs
    monkeypatch.setattr(student_step, "sensitive_inputs", fine_tuning_inputs)
    raw = {"data": {"source": "csv", "path": str(csv), "label": "cv_event_1y",
                    "id_column": "patient_id", "identifiers": ["name", "mrn", "phone"],
                    # a row index on purpose (it traces rows): declared, or it is refused
                    "feature_types": {"tag": "numeric"}},
           "privacy": {"target_epsilon": 3.0},
           "teachers": {"dp_teacher": "select", "reference": "logistic_regression",
                        "dp_teacher_rows": 3000},
           "audit": {"reference_models": 0, "baseline_seeds": 1, "speed_repeats": 10,
                     "bootstrap": 0, "memory": False}}
    keep = Artifacts("prepare", "plan", "canaries")
    report = run_pipeline(parse_config(raw), tmp_path / "run", console=Console(quiet=True),
                          observer=keep).report
    prepared = keep.get("prepare")
    tags = {name: set(prepared.data.rows(getattr(prepared.split, name))[0]["tag"].tolist())
            for name in ("train", "test", "holdout")}
    assert all(seen.values()), "a DP teacher or the selection was not called"
    for name, rows in seen.items():
        assert rows <= tags["train"], name
        assert not rows & (tags["test"] | tags["holdout"]), name
    # Candidates fit on the same patients; the selection scores the others.
    assert seen["dp_ebm"] == seen["dp_linear"] and not seen["dp_ebm"] & seen["selection"]
    assert 0.1 <= len(seen["selection"]) / len(seen["selection"] | seen["dp_ebm"]) <= 0.3
    # The canary audit: the left-out canaries reach no DP stage; the rest is what they see.
    audited = keep.get("canaries")
    train_tags = prepared.data.rows(prepared.split.train)[0]["tag"].to_numpy()
    left_out = set(train_tags[audited.canary_rows[~audited.canary_in]].tolist())
    allowed = set(train_tags[audited.dp_rows].tolist())
    assert len(left_out) >= 10 and plan_of(keep).n_canaries == len(audited.canary_rows)
    assert seen["dp_ebm"] | seen["selection"] == seen["ranges"] == allowed
    assert fine_tuned_on and all(set(train_tags[rows].tolist()) == allowed
                                 for rows in fine_tuned_on)
    assert not allowed & left_out
    canary = report["mia"]["student"]["canary"]
    assert canary["n_canaries"] == len(audited.canary_rows)
    assert 0.0 <= canary["epsilon_lower_bound"] <= report["privacy"]["epsilon"]

    stages = [entry.stage for entry in prepared.ledger.entries]
    # The DP-EBM records its binning and its boosting; the others one entry each.
    assert stages.count("dp_teacher") == 2
    assert stages.count("dp_linear_teacher") == stages.count("teacher_selection") == 1
    assert 0.98 * 3.0 <= prepared.ledger.epsilon() <= 3.0
    section = report["run"]["dp_teacher"]
    assert section["kind"] in {"dp_ebm", "dp_linear"}
    # the DP-EBM is fitted with the bins the plan chose, and the report says which
    plan = plan_of(keep)
    assert [s.max_bins for name, s in settings if name == "dp_ebm"] == [plan.dp_ebm_max_bins]
    # ... and merges them towards the planned (charged) row count, not the exact one
    assert [n for name, n in public_rows if name == "dp_ebm"] == [plan.dp_ebm_rows]
    assert section["dp_ebm_max_bins"] == plan.dp_ebm_max_bins in (16, 32)
    assert set(section["selection"]["noisy_score_sums"]) == {"dp_ebm", "dp_linear"}
    assert section["n_labelled"] == 3000
    # Bands: the chosen DP teacher learns (cohort AUROC ≈ 0.8 without noise) but is no
    # better than the non-private reference allows.
    dp, teacher = report["utility"]["dp_teacher"]["auroc"], report["utility"]["teacher"]["auroc"]
    assert 0.6 <= dp <= teacher + 0.03


def test_selection_split_moves_no_one_when_a_patient_is_added() -> None:
    """Who validates the candidate teachers depends on each patient's own id and the
    secret key only: a neighbouring dataset (one patient more, anywhere in file order)
    leaves every other patient on the same side. A permutation of the row count did not."""
    from medistill.steps.teachers import selection_split

    ids = np.array([f"p{i:04d}" for i in range(3000)])
    key = b"k" * 32
    validate, fit = selection_split(ids, 0.2, key=key)
    assert 0.17 <= len(validate) / len(ids) <= 0.23
    assert not set(validate) & set(fit) and len(validate) + len(fit) == len(ids)
    plus = np.insert(ids, 1234, "new-patient")
    v_plus, _ = selection_split(plus, 0.2, key=key)
    before = set(ids[validate])
    after = set(plus[v_plus]) - {"new-patient"}
    assert before == after
    # another key, another split: the key is what makes it unpredictable
    other, _ = selection_split(ids, 0.2, key=b"j" * 32)
    assert set(ids[other]) != before
