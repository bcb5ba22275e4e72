"""The student against the direct DP-SGD baseline over several DP-SGD seeds."""

from __future__ import annotations

import itertools

import numpy as np
import pytest
from scipy import stats

from medistill.pipeline import replicate_seed, seed_comparison


def test_difference_and_its_standard_error_match_welchs_t_test() -> None:
    student, direct = [0.851, 0.846, 0.858], [0.842, 0.850, 0.839, 0.845]
    result = seed_comparison(student, direct)
    assert result["difference"] == pytest.approx(np.mean(student) - np.mean(direct))
    welch = stats.ttest_ind(student, direct, equal_var=False)
    assert result["difference"] / result["difference_se"] == pytest.approx(welch.statistic)
    assert result["student_auroc"] == student and result["direct_auroc"] == direct
    assert result["seeds"] == 3


def test_one_seed_per_arm_has_no_standard_error() -> None:
    result = seed_comparison([0.85], [0.84])
    assert result["difference"] == pytest.approx(0.01) and result["difference_se"] is None


def test_replicate_seeds_keep_every_trainings_generators_apart() -> None:
    # train_student draws from seed, seed + 1 and seed + 2; the released student uses the
    # pipeline's seed itself.
    base = 7
    seeds = [base] + [replicate_seed(base, arm, i) for arm, i in
                      itertools.product((1, 2), range(20))]
    streams = [s + k for s in seeds for k in range(3)]
    assert len(streams) == len(set(streams))
