"""Bootstrap intervals of the utility metrics, resampling patients rather than rows."""

from __future__ import annotations

import numpy as np
import pytest

from medistill.audit.bootstrap import METRICS, bootstrap_metrics
from medistill.audit.utility import utility_metrics


def _predictions(n: int, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    y = (rng.random(n) < 0.3).astype(int)
    p1 = np.clip(0.3 + 0.35 * (y - 0.3) + rng.normal(0, 0.2, n), 0.01, 0.99)
    return y, np.c_[1 - p1, p1]


def _width(ci: list[float]) -> float:
    return ci[1] - ci[0]


def test_intervals_cover_the_point_estimate_and_shrink_with_more_patients() -> None:
    y, p = _predictions(400, np.random.default_rng(0))
    small = bootstrap_metrics(y, p, n_boot=60, rng=np.random.default_rng(1))
    assert set(small) == set(METRICS)
    point = utility_metrics(y, p)
    for name, (lo, hi) in small.items():
        assert lo <= point[name] <= hi, name
    y4, p4 = _predictions(1600, np.random.default_rng(0))
    large = bootstrap_metrics(y4, p4, n_boot=60, rng=np.random.default_rng(1))
    for name in ("auroc", "accuracy", "brier"):
        assert _width(large[name]) < 0.8 * _width(small[name]), name  # ~0.5 expected


def test_same_seed_same_intervals() -> None:
    y, p = _predictions(200, np.random.default_rng(0))
    a = bootstrap_metrics(y, p, n_boot=20, rng=np.random.default_rng(5))
    b = bootstrap_metrics(y, p, n_boot=20, rng=np.random.default_rng(5))
    assert a == b


def test_cluster_bootstrap_is_not_fooled_by_repeated_rows() -> None:
    """Five identical rows per patient carry the information of one: resampling rows gives
    intervals about √5 too narrow; resampling patients gives exactly the intervals of one
    row per patient (the same seed draws the same patients)."""
    y, p = _predictions(200, np.random.default_rng(0))
    per_patient = bootstrap_metrics(y, p, n_boot=80, rng=np.random.default_rng(1))
    ids = np.repeat(np.arange(200), 5)
    y5, p5 = y[ids], p[ids]
    rows = bootstrap_metrics(y5, p5, n_boot=80, rng=np.random.default_rng(1))
    clusters = bootstrap_metrics(y5, p5, n_boot=80, rng=np.random.default_rng(1),
                                 groups=np.array([f"PT{i:04d}" for i in ids]))
    for name in ("auroc", "accuracy", "brier"):
        reference = _width(per_patient[name])
        assert clusters[name] == pytest.approx(per_patient[name], abs=1e-9), name
        assert _width(rows[name]) < 0.7 * reference, name


def test_cluster_rows_are_taken_whole() -> None:
    """Patients whose rows are all positive or all negative: any whole-patient resample
    keeps each patient's rows together, so accuracy moves in steps of one patient."""
    ids = np.repeat(np.arange(6), [1, 2, 3, 1, 2, 3])
    y = np.repeat([1, 0, 1, 0, 1, 0], [1, 2, 3, 1, 2, 3])
    p = np.c_[1 - y, y].astype(float)
    ci = bootstrap_metrics(y, p, n_boot=30, rng=np.random.default_rng(0), groups=ids)
    assert ci["accuracy"] == [1.0, 1.0] and ci["auroc"] == [1.0, 1.0]


def test_undefined_metrics_are_none_and_inputs_are_checked() -> None:
    y = np.zeros(20, dtype=int)
    p = np.c_[np.full(20, 0.8), np.full(20, 0.2)]
    assert bootstrap_metrics(y, p, n_boot=5, rng=np.random.default_rng(0))["auroc"] == [None, None]
    with pytest.raises(ValueError):
        bootstrap_metrics(y, p[:10], rng=np.random.default_rng(0))
    with pytest.raises(ValueError):
        bootstrap_metrics(y, p, rng=np.random.default_rng(0), groups=np.arange(3))


def test_cluster_resampler_keeps_patients_whole() -> None:
    from medistill.audit.bootstrap import cluster_resampler

    ids = np.array(["a", "a", "a", "b", "c", "c"])
    draw = cluster_resampler(ids, len(ids), np.random.default_rng(0))
    for _ in range(20):
        rows = draw()
        picked = ids[rows]
        # every drawn patient comes with all of their rows, as many times as drawn
        for patient, size in (("a", 3), ("b", 1), ("c", 2)):
            assert np.sum(picked == patient) % size == 0
        assert len(set(picked)) <= 3
    plain = cluster_resampler(None, 5, np.random.default_rng(0))()
    assert len(plain) == 5 and plain.max() < 5
    with pytest.raises(ValueError, match="one id per row"):
        cluster_resampler(ids[:2], 6, np.random.default_rng(0))
