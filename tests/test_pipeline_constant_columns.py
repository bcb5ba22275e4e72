"""Channel 17 end to end: a table with an all-empty and a constant column runs on the
default path (DP-EBM teacher), and both columns are inputs of the exported student and of
the model card; ``medistill predict`` scores a file that has them."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import onnxruntime as ort
import pandas as pd
import pytest
from rich.console import Console
from typer.testing import CliRunner

from medistill.cli import app
from medistill.config import parse_config
from medistill.pipeline import run_pipeline

pytestmark = pytest.mark.slow  # runs the whole pipeline

ADDED = ("spare_lab", "site", "rare_flag")   # empty, constant text, 0/1 with one patient at 1


def _table(cohort_table: pd.DataFrame) -> pd.DataFrame:
    frame = cohort_table.head(1200).drop(columns=["name", "mrn", "phone"]).copy()
    frame["spare_lab"] = np.nan
    frame["site"] = "north"
    frame["rare_flag"] = 0
    frame.loc[frame.index[5], "rare_flag"] = 1
    return frame


def test_17_empty_and_constant_columns_reach_the_student_and_the_card(
        tmp_path: Path, cohort_table: pd.DataFrame) -> None:
    frame = _table(cohort_table)
    csv = tmp_path / "records.csv"
    frame.to_csv(csv, index=False)
    config = parse_config({
        "data": {"source": "csv", "path": str(csv), "label": "cv_event_1y",
                 "id_column": "patient_id", "sensitive_attributes": ["sex", "site"]},
        "privacy": {"target_epsilon": 3.0},
        "teachers": {"reference": "hist_gradient_boosting", "n_jobs": 1},
        "student": {"epochs": 3, "fine_tune_epochs": 3},
        "audit": {"reference_models": 2, "bootstrap": 0, "memory": False,
                  "speed_repeats": 20, "throughput_batch": 500, "baselines": False,
                  "n_jobs": 1}})
    out = tmp_path / "run"
    report = run_pipeline(config, out, console=Console(quiet=True)).report

    inputs = [i.name for i in ort.InferenceSession(str(out / "student.onnx")).get_inputs()]
    card = json.loads((out / "model_card.json").read_text())
    assert set(ADDED) <= set(inputs)
    assert [f["name"] for f in card["inputs"]["features"]] == inputs
    notes = {n["column"]: n["kind"] for n in report["input_checks"]}
    assert notes["spare_lab"] == "kept_empty" and notes["site"] == "kept_constant"
    assert 0.5 < report["utility"]["student"]["auroc"] <= 1.0

    scored = tmp_path / "scored.csv"
    result = CliRunner().invoke(app, ["predict", str(csv), "--model", str(out),
                                      "--out", str(scored)], catch_exceptions=False)
    assert result.exit_code == 0, result.output
    probability = pd.read_csv(scored)["probability"].to_numpy()
    assert len(probability) == len(frame) and np.isfinite(probability).all()
    assert ((probability >= 0) & (probability <= 1)).all()
