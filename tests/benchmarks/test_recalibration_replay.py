"""The recalibration replay (benchmarks/recalibration_replay.py): variants on a synthetic
student, the paired summary, and one tiny captured run (slow)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from benchmarks import datasets
from benchmarks import recalibration_replay as r


def _captured(n_train: int = 3000, slope: float = 0.5, bins: int = 8, noise: float = 5.0,
              seed: int = 0) -> r.Captured:
    """A student whose logit is ``1/slope`` times too wide: true risk σ(slope · d)."""
    rng = np.random.default_rng(seed)

    def patients(n: int) -> tuple[np.ndarray, np.ndarray]:
        d = rng.normal(0.0, 2.0, n)
        return d, (rng.random(n) < 1 / (1 + np.exp(-slope * d))).astype(int)

    train, train_labels = patients(n_train)
    test, test_labels = patients(4000)
    return r.Captured(rng.normal(0.0, 2.0, 20_000), train, train_labels, test, test_labels,
                      bins, noise)


def test_recalibrating_an_overconfident_student_lowers_its_test_ece() -> None:
    eces = r.variant_eces(_captured(), draws=2, priors=[0.5], extra_bins=[4],
                          rng=np.random.default_rng(1))
    assert set(eces) == {"none", "noiseless", "plain", "shrunk 0.5", "plain 4 bins",
                         "shrunk 0.5 4 bins"}
    assert len(eces["none"]) == 1 and len(eces["plain"]) == 2
    assert eces["none"][0] > 0.05
    for variant in ("noiseless", "plain", "shrunk 0.5", "plain 4 bins"):
        assert np.mean(eces[variant]) < 0.5 * eces["none"][0]


def test_the_summary_pairs_each_variant_with_plain_by_run() -> None:
    runs = [{"table": "pima", "epsilon": 1.0, "seed": s, "patients_per_bin": 100.0,
             "ece": {"none": [0.2], "plain": [0.10 + 0.01 * s, 0.12 + 0.01 * s],
                     "shrunk 0.5": [0.08 + 0.01 * s]}} for s in range(3)]
    variants, table, paired = r.summarize(runs)
    assert variants == ["none", "plain", "shrunk 0.5"]
    assert table[("pima", 1.0)]["plain"] == pytest.approx(0.12)
    mean, se, n = paired["shrunk 0.5"]
    assert (mean, n) == (pytest.approx(-0.03), 3) and se == pytest.approx(0.0, abs=1e-12)
    text = r.markdown(runs, "python -m benchmarks.recalibration_replay --tables pima")
    assert "| pima | 1 | 3 | 100 | 0.200 | 0.120 | 0.090 |" in text
    assert "| shrunk 0.5 | -0.0300 | 0.0000 | 3 |" in text


@pytest.mark.slow
def test_one_run_is_captured_at_its_recalibration(tmp_path: Path) -> None:
    section = datasets.data_section("cohort", tmp_path, n_patients=600)
    document = {"data": section, "privacy": {"target_epsilon": 3.0}, "seed": 0,
                "teachers": {"n_jobs": 1}, "audit": {"n_jobs": 1}}
    captured = r.capture(document, tmp_path / "run")
    assert captured.bins is not None and captured.noise > 0
    assert 300 <= len(captured.train) <= 600 and len(captured.test) >= 50
    assert len(captured.train) == len(captured.train_labels)
    assert not (tmp_path / "run" / "report.json").exists()      # stopped before the audit
