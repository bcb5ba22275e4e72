"""The cleaning of noisy numeric marginals: post-processing that keeps transfer values in range."""

import numpy as np
import pandas as pd

from medistill.data.schema import FeatureSpec, TableSchema
from medistill.transfer.dp_marginals import (
    GRID_EDGES, clean_numeric_histogram, release_marginals, sample_marginal)


def _fine_counts(values: np.ndarray) -> np.ndarray:
    bins = np.searchsorted(GRID_EDGES, values, side="right") - 1
    return np.bincount(bins, minlength=len(GRID_EDGES) - 1).astype(float)


def test_noise_only_bins_are_dropped_at_moderate_noise():
    rng = np.random.default_rng(0)
    counts = _fine_counts(rng.normal(120, 15, size=20_000))
    std = 60.0
    weights, informative = clean_numeric_histogram(counts + rng.normal(0, std, counts.shape), std)
    assert informative
    kept = np.flatnonzero(weights)
    assert GRID_EDGES[kept[0]] > 40 and GRID_EDGES[kept[-1] + 1] < 250
    assert (weights >= 0).all()


def test_small_table_under_strong_noise_merges_bins_instead_of_losing_the_column():
    rng = np.random.default_rng(1)
    counts = _fine_counts(rng.normal(120, 15, size=2_000))
    std = 200.0  # no single fine bin stands 4 std above zero
    noisy = counts + rng.normal(0, std, counts.shape)
    assert not (noisy > 4 * std).any()
    weights, informative = clean_numeric_histogram(noisy, std)
    assert informative
    kept = np.flatnonzero(weights)
    assert 20 < GRID_EDGES[kept[0]] <= 120 <= GRID_EDGES[kept[-1] + 1] < 1_000


def test_pure_noise_keeps_one_coarse_bin_and_says_it_is_uninformative():
    rng = np.random.default_rng(2)
    std = 10.0
    weights, informative = clean_numeric_histogram(rng.normal(0, std, 800), std)
    assert not informative
    kept = np.flatnonzero(weights)
    assert 1 <= len(kept) <= 64 and kept[-1] - kept[0] < 64


def test_released_marginal_samples_stay_near_the_real_range():
    rng = np.random.default_rng(3)
    frame = pd.DataFrame({"sbp": rng.normal(125, 15, size=3_000)})
    schema = TableSchema(features=(FeatureSpec("sbp", "numeric"),), label="y", classes=("0", "1"))
    marginal = release_marginals(frame, schema, ["sbp"], noise_multiplier=17.5, rng=rng)["sbp"]
    values = sample_marginal(marginal, 5_000, np.random.default_rng(4))
    assert marginal.informative
    assert np.nanmin(values) > 25 and np.nanmax(values) < 600
    assert abs(np.nanmedian(values) - 125) < 40
