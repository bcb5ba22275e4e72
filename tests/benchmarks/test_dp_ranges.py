"""The DP ranges benchmark (benchmarks/dp_ranges.py): the paired summary, the column
figures, and one tiny captured run (slow)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from benchmarks import datasets
from benchmarks.common import minimal_document
from benchmarks import dp_ranges as b
from medistill.teachers.dp_ranges import ColumnRange


def _runs() -> list[dict]:
    def variant(auroc: float) -> dict:
        return {"auroc": auroc, "overlap": 1.0, "holds_central_90": 0.5, "median_width": 2.0}

    return [{"table": "pima", "epsilon": 1.0, "seed": s,
             "variants": {"published": variant(0.80 + 0.01 * s),
                          "2026-11-30": variant(0.75 + 0.01 * s + 0.01 * (s % 2))}}
            for s in range(4)]


def test_the_summary_pairs_each_variant_with_the_published_release_by_run() -> None:
    text = b.markdown(_runs(), "python -m benchmarks.dp_ranges --tables pima")
    assert "| pima | 1 | 4 | 0.815 | 0.770 | -0.045 ± 0.003 |" in text
    assert "| 2026-11-30 | -0.0450 | 0.0029 | 4 |" in text
    assert "| pima | 1 | 1.00 / 0.50 / 2.0 | 1.00 / 0.50 / 2.0 |" in text


def test_column_figures_measure_overlap_coverage_and_width() -> None:
    values = np.linspace(0.0, 100.0, 101)
    captured = b.Captured(pd.DataFrame({"a": values, "b": values}), np.zeros(101), None,
                          None, None, ["a", "b"], 1.0, 1.0, 1e-6, 32)
    ranges = {"a": ColumnRange(-10.0, 110.0, True, 3),      # holds all, 1.22 × wide
              "b": ColumnRange(200.0, 300.0, True, 3)}      # off the data
    got = b.column_figures(captured, ranges)
    assert got["overlap"] == 0.5 and got["holds_central_90"] == 0.5
    assert got["median_width"] == pytest.approx((120 / 98 + 100 / 98) / 2)


@pytest.mark.slow
def test_one_run_is_captured_before_its_teacher_and_scored(tmp_path: Path) -> None:
    document = minimal_document(datasets.data_section("breast_cancer", tmp_path), 3.0, 0)
    captured = b.capture(document, tmp_path / "run")
    assert len(captured.columns) == 30 and captured.noise > 0
    assert 0 < captured.teacher_epsilon < 3.0
    assert 250 <= len(captured.train) <= 460 and len(captured.test) >= 50
    scored = b.score_variants(captured, {"published": b.VARIANTS["published"]})
    assert 0.8 <= scored["published"]["auroc"] <= 1.0
    assert not (tmp_path / "run" / "report.json").exists()      # stopped before the audit


def test_a_single_run_has_no_standard_error_shown() -> None:
    text = b.markdown(_runs()[:1], "python -m benchmarks.dp_ranges --tables pima")
    assert "nan" not in text
    assert "| pima | 1 | 1 | 0.800 | 0.750 | -0.050 |" in text
    assert "| 2026-11-30 | -0.0500 | – | 1 |" in text
