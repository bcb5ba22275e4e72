"""The DP synthesizer as the transfer source, end to end on a small cohort."""

from pathlib import Path

from rich.console import Console

from medistill.config import parse_config
from medistill.pipeline import run_pipeline


def test_dp_synthesizer_transfer_is_charged_and_reported(tmp_path: Path) -> None:
    config = parse_config({
        "data": {"source": "builtin", "builtin": {"name": "cohort", "n_patients": 1500}},
        "privacy": {"target_epsilon": 4.0},
        "teachers": {"reference": "logistic_regression"},
        "transfer": {"source": "dp_synthesizer", "n_rows": 800},
        "labels": {"n_queries": 20},
        "student": {"epochs": 3},
        "audit": {"reference_models": 0, "bootstrap": 0, "memory": False, "speed_repeats": 20,
                  "throughput_batch": 500, "baselines": False}})
    report = run_pipeline(config, tmp_path / "run", console=Console(quiet=True)).report
    stages = [row["stage"] for row in report["privacy"]["ledger"]]
    assert "transfer_synthesizer" in stages and "schema_statistics" not in stages
    assert report["run"]["transfer"]["source"] == "dp_synthesizer"
    assert report["run"]["transfer"]["epsilon_cost"] > 0
    assert 0.98 * 4.0 <= report["privacy"]["epsilon"] <= 4.0
    assert 0.6 <= report["utility"]["student"]["auroc"] <= 0.92
