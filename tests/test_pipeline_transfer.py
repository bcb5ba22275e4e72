"""Transfer sources end to end on small cohorts: what is charged, what is reported."""

from pathlib import Path

import numpy as np
import pytest

pytestmark = pytest.mark.slow  # every test here runs the whole pipeline
from rich.console import Console

from medistill.config import parse_config
from medistill.data.builtin import builtin_table
from medistill.errors import ConfigError
from medistill.privacy.ledger import PrivacyLedger
from medistill.pipeline import run_pipeline

# These tests cover the PATE path's transfer sources and labels (dp_teacher: none).
# K is pinned: with "auto" it follows the noisy patient count, and at 3-4 teachers the
# labels' share needs more noise than is useful (max 4·K): a refusal, seen in CI runs of
# three tests here.
FAST = {"teachers": {"reference": "logistic_regression", "dp_teacher": "none", "n_teachers": 8},
        "student": {"epochs": 3},
        "audit": {"reference_models": 0, "bootstrap": 0, "memory": False, "speed_repeats": 20,
                  "throughput_batch": 500, "baselines": False}}


def _config(transfer: dict, *, n_patients: int = 1500, epsilon: float = 4.0,
            n_queries: int | str = 20, **extra):
    raw = {"data": {"source": "builtin", "builtin": {"name": "cohort", "n_patients": n_patients}},
           "privacy": {"target_epsilon": epsilon, **extra.pop("privacy", {})},
           "transfer": transfer, "labels": {"n_queries": n_queries}, **FAST}
    raw.update(extra)
    return parse_config(raw)


def _run(config, folder: Path) -> dict:
    return run_pipeline(config, folder, console=Console(quiet=True)).report


def test_dp_synthesizer_transfer_is_charged_and_reported(tmp_path: Path) -> None:
    report = _run(_config({"source": "dp_synthesizer", "n_rows": 800}), tmp_path / "run")
    stages = [row["stage"] for row in report["privacy"]["ledger"]]
    assert "transfer_synthesizer" in stages and "schema_statistics" not in stages
    # Canaries ride along where the student's DP-SGD touches sensitive rows (PATE, α < 1);
    # the one-run bound never exceeds the ledger's ε.
    canary = report["mia"]["student"]["canary"]
    assert canary["n_canaries"] >= 20
    assert canary["epsilon_lower_bound"] <= report["privacy"]["epsilon"]
    transfer = report["run"]["transfer"]
    assert transfer["source"] == "dp_synthesizer" and transfer["n_rows"] == 800
    assert transfer["epsilon_cost"] > 0
    (part,) = transfer["sources"]
    assert part["kind"] == "dp_synthesizer" and part["ledger_stage"] == "transfer_synthesizer"
    assert 0 < part["fidelity"]["mean_ks"] < 0.6   # fresh noise; the budget also pays counts and categories
    assert 0.98 * 4.0 <= report["privacy"]["epsilon"] <= 4.0
    assert 0.6 <= report["utility"]["student"]["auroc"] <= 0.92


def test_default_source_is_the_synthesizer_and_falls_back_for_tiny_budgets(tmp_path: Path) -> None:
    config = _config({}, n_patients=600, epsilon=0.3, n_queries="auto")
    assert config.transfer.source == "auto"
    report = _run(config, tmp_path / "tiny")
    assert report["run"]["transfer"]["resolved"] == "schema_prior"
    assert any("schema prior was used instead" in c for c in report["privacy"]["caveats"])
    stages = [row["stage"] for row in report["privacy"]["ledger"]]
    assert "schema_statistics" in stages and "transfer_synthesizer" not in stages


def _public_table(folder: Path) -> Path:
    """Another hospital's release: renamed columns, one column absent, odd categories."""
    table, *_ = builtin_table("cohort", n_patients=900, seed=7)
    public = table.drop(columns=["patient_id", "outcome", "hdl"], errors="ignore")
    public = public.rename(columns={"age": "AGE_YEARS", "sbp": "systolic"})
    if "smoking" in public:
        public.loc[public.index[:25], "smoking"] = "ex-smoker"
    path = folder / "public.csv"
    public.to_csv(path, index=False)
    return path


def test_public_table_gets_its_own_ledger(tmp_path: Path) -> None:
    path = _public_table(tmp_path)
    config = _config({"source": "public_table", "n_rows": 700,
                      "public": {"path": str(path), "missing": "impute",
                                 "column_map": {"AGE_YEARS": "age", "systolic": "sbp"}}},
                     n_queries=60, epsilon=6.0,  # K fixed: from noisy counts it can be 4
                     teachers={"reference": "logistic_regression", "n_teachers": 10,
                               "dp_teacher": "none"})
    report = _run(config, tmp_path / "run")
    transfer = report["run"]["transfer"]
    assert transfer["sources"][0]["kind"] == "public_table"
    assert transfer["sources"][0]["n_rows"] == 700 and transfer["epsilon_cost"] == 0.0
    caveats = " ".join(report["privacy"]["caveats"])
    assert "'hdl' is missing" in caveats
    assert "preprocessing statistics" in caveats  # no synthetic rows to take them from
    second = report["privacy"]["transfer_ledger"]
    assert second is not None and second["unit"] == "public transfer individual"
    assert second["epsilon"] > 0 and second["delta"] == pytest.approx(1 / (10 * 60), rel=0.05)
    # Recomputable from its own entries, like the main ledger.
    ledger = PrivacyLedger.from_dict({"name": "x", "accountant": second["accountant"],
                                      "delta": second["delta"], "entries": second["ledger"]})
    assert ledger.epsilon() == pytest.approx(second["epsilon"], rel=1e-9)
    stages = [row["stage"] for row in report["privacy"]["ledger"]]
    assert "transfer_synthesizer" not in stages and "schema_statistics" not in stages


def test_mix_of_synthetic_and_public_rows(tmp_path: Path) -> None:
    path = _public_table(tmp_path)
    config = _config({"source": "mix", "mix": {"dp_synthesizer": 600, "public_table": 300},
                      "public": {"path": str(path), "missing": "impute",
                                 "column_map": {"AGE_YEARS": "age", "systolic": "sbp"}}},
                     n_queries=60, epsilon=6.0)
    report = _run(config, tmp_path / "run")
    sizes = {p["kind"]: p["n_rows"] for p in report["run"]["transfer"]["sources"]}
    assert sizes == {"dp_synthesizer": 600, "public_table": 300}
    labelled = {p["kind"]: p["n_labelled"] for p in report["run"]["transfer"]["sources"]}
    assert sum(labelled.values()) == 60 and min(labelled.values()) > 0
    assert report["privacy"]["transfer_ledger"] is not None
    assert not any("preprocessing statistics" in c for c in report["privacy"]["caveats"])


def test_munge_needs_allow_nonprivate_and_then_says_so_first(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="MUNGE"):
        _run(_config({"source": "munge", "n_rows": 400}), tmp_path / "refused")
    assert not (tmp_path / "refused").exists()
    config = _config({"source": "munge", "n_rows": 400},
                     privacy={"allow_nonprivate": True})
    report = _run(config, tmp_path / "run")
    assert report["privacy"]["formal_guarantee"] is False
    assert report["privacy"]["epsilon"] is None
    assert report["privacy"]["caveats"][0].startswith("No formal privacy guarantee")
    assert "transfer_munge" in report["privacy"]["caveats"][0]
    assert report["run"]["transfer"]["epsilon_cost"] is None
    md = (tmp_path / "run" / "report.md").read_text()
    assert "No formal privacy guarantee" in md.split("##")[0] + md.split("##")[1]
    # No MUNGE row (a perturbed sensitive row) is written to the run folder.
    assert sorted(p.name for p in (tmp_path / "run").iterdir()) == sorted(
        ["report.json", "report.html", "report.md", "student.onnx", "ledger.json",
         "pipeline.yaml", "manifest.json", "model_card.json", "model_card.md"])
    assert np.isfinite(report["utility"]["student"]["auroc"])


def test_labels_only_student_without_affordable_labels_is_a_clear_error(tmp_path: Path) -> None:
    from medistill.errors import PrivacyBudgetError

    config = _config({"source": "schema_prior"}, n_patients=600, epsilon=1.0,
                     n_queries="auto", student={"alpha": 1.0, "epochs": 1})
    with pytest.raises(PrivacyBudgetError, match="student.alpha: 1"):
        _run(config, tmp_path / "run")
    assert not (tmp_path / "run").exists()
