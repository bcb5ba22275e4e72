"""The pipeline through a Dask cluster: the CLI's --scheduler, a clear exit 2 when the
scheduler is unreachable, and one small end-to-end run compared with a local one."""

from __future__ import annotations

import socket
from pathlib import Path

import pytest
from rich.console import Console
from typer.testing import CliRunner

from medistill.cli import app
from medistill.config import parse_config
from medistill.pipeline import run_pipeline

FAST = {"data": {"source": "builtin", "builtin": {"name": "cohort", "n_patients": 1500}},
        # The reproducible test mode: privacy draws follow the seed, so everything compares.
        "privacy": {"target_epsilon": 4.0, "reproducible_noise": True},
        # The PATE path: its K teachers are what runs on the cluster; the DP-EBM's noise
        # is interpret's own and cannot follow the seed.
        "teachers": {"reference": "logistic_regression", "dp_teacher": "none"},
        "labels": {"n_queries": 20}, "transfer": {"source": "dp_synthesizer", "n_rows": 800},
        "student": {"epochs": 3},
        "audit": {"reference_models": 2, "bootstrap": 0, "memory": False, "speed_repeats": 20,
                  "throughput_batch": 500, "baselines": False}}


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_unreachable_scheduler_exits_2_before_any_work(tmp_path: Path) -> None:
    out = tmp_path / "run"
    address = f"tcp://127.0.0.1:{_free_port()}"
    pipeline = tmp_path / "pipeline.yaml"
    pipeline.write_text("data: {source: builtin, builtin: {name: cohort, n_patients: 300}}\n"
                        "privacy: {target_epsilon: 3}\ncompute: {connect_timeout: 1}\n")
    result = CliRunner().invoke(app, ["run", str(pipeline), "--out", str(out),
                                      "--scheduler", address], catch_exceptions=False)
    assert result.exit_code == 2, result.output
    assert "Cannot reach the Dask scheduler" in result.output and address in result.output
    assert "Traceback" not in result.output
    assert not out.exists() and not list(tmp_path.glob(".run.tmp-*"))


def test_a_malformed_scheduler_address_exits_2(tmp_path: Path) -> None:
    result = CliRunner().invoke(app, ["demo", "--out", str(tmp_path / "run"),
                                      "--scheduler", "my-cluster"], catch_exceptions=False)
    assert result.exit_code == 2 and "--scheduler" in result.output


@pytest.mark.slow
def test_pipeline_on_dask_matches_the_local_run(dask_cluster, tmp_path: Path) -> None:
    local = run_pipeline(parse_config(FAST), tmp_path / "local",
                         console=Console(quiet=True)).report
    on_dask = {**FAST, "compute": {"backend": "dask", "scheduler": dask_cluster.scheduler_address}}
    run = run_pipeline(parse_config(on_dask), tmp_path / "dask", console=Console(quiet=True))
    report = run.report

    compute = report["run"]["compute"]
    # the K teachers, and 2 reference models for the student and 2 for the teacher
    tasks = report["run"]["ensemble"]["n_teachers"] + 4
    assert compute == {"backend": "dask", "scheduler": dask_cluster.scheduler_address,
                       "n_workers": 2, "tasks": tasks}
    assert local["run"]["compute"] == {"backend": "local", "scheduler": None,
                                       "n_workers": None, "tasks": tasks}
    # the same ledger, teachers, student and teacher audit (reproducible noise)
    assert report["privacy"]["ledger"] == local["privacy"]["ledger"]
    assert report["utility"]["student"] == local["utility"]["student"]
    assert not report["privacy"]["formal_guarantee"]
    assert report["privacy"]["epsilon"] == pytest.approx(local["privacy"]["epsilon"], abs=1e-12)
    for who in ("teacher", "ensemble"):
        assert report["utility"][who] == local["utility"][who]
    assert report["mia"]["teacher"]["attacks"] == local["mia"]["teacher"]["attacks"]
    assert 0.65 <= report["utility"]["teacher"]["auroc"] <= 0.95
    assert 0.5 <= report["utility"]["student"]["auroc"] <= 0.92
    # nothing of the cluster's folders is left in the run folder
    assert not [p for p in run.run_dir.rglob("*") if "dask" in p.name]
