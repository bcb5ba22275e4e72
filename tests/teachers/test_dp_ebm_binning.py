"""interpret's bin merging reads a public row count, not the exact one (privacy channel 18)."""

from __future__ import annotations

import numpy as np
import pytest
from interpret.utils import _preprocessor
from interpret.utils._native import Native
from interpret.utils._privacy import private_categorical_binning, private_numeric_binning

from medistill.teachers.dp_ebm_binning import (
    categorical_binning,
    numeric_binning,
    public_merge_target,
)

QUIET = 1e-6   # interpret's secure sampler loops forever at a standard deviation of 0


def _rng(seed: int = 7):
    return Native.get_native_singleton().create_rng(seed)


def _uniform(n_per_bin: int, n_bins: int) -> np.ndarray:
    """Values at the centres of ``n_bins`` equal bins over [0, 1], ``n_per_bin`` each."""
    return np.repeat((np.arange(n_bins) + 0.5) / n_bins, n_per_bin)


def test_numeric_with_the_exact_total_is_interprets_own_result():
    X = np.random.default_rng(0).uniform(0, 10, 500)
    w = np.ones(500)
    ours = numeric_binning(private_numeric_binning, 500.0)(X, w, 3.0, 15, 0.0, 10.0, _rng())
    theirs = private_numeric_binning(X, w, 3.0, 15, 0.0, 10.0, _rng())
    np.testing.assert_array_equal(ours[0], theirs[0])
    np.testing.assert_allclose(ours[1], theirs[1])


def test_numeric_cuts_follow_the_public_total():
    """20 fine bins of 6 rows, max_bins 10: a public total of 130 (target 13) merges the
    fine bins by threes (5 cuts), one of 250 (target 25) by fives (3 cuts); the weights
    returned are still the real rows'."""
    X, w = _uniform(6, 20), np.ones(120)
    for public, n_cuts in ((130.0, 5), (250.0, 3)):
        cuts, weights = numeric_binning(private_numeric_binning, public)(X, w, QUIET, 10, 0.0,
                                                                          1.0, _rng())
        assert len(cuts) == n_cuts
        assert sum(weights) == pytest.approx(120.0, abs=1e-3)


def test_a_row_that_changes_only_the_exact_total_moves_interprets_cuts_not_ours():
    """One more row that no histogram bin counts (its value is outside the range) changes
    interpret's target and so its cuts; with the public total the cuts stay."""
    X, w = _uniform(6, 20), np.ones(120)
    X_plus, w_plus = np.append(X, 5.0), np.append(w, 120.0)   # outside [0, 1]
    assert not np.array_equal(private_numeric_binning(X, w, QUIET, 10, 0.0, 1.0, _rng())[0],
                              private_numeric_binning(X_plus, w_plus, QUIET, 10, 0.0, 1.0,
                                                      _rng())[0])
    ours = numeric_binning(private_numeric_binning, 120.0)
    np.testing.assert_array_equal(ours(X, w, QUIET, 10, 0.0, 1.0, _rng())[0],
                                  ours(X_plus, w_plus, QUIET, 10, 0.0, 1.0, _rng())[0])


def _codes(counts: list[int]) -> np.ndarray:
    return np.repeat(np.arange(1, len(counts) + 1), counts).astype(np.int64)


def test_categorical_with_the_exact_total_is_interprets_own_result():
    X = _codes([120, 60, 9, 7, 3, 1])
    w = np.ones(len(X))
    ours = categorical_binning(private_categorical_binning, float(len(X)))(X, w, 2.0, 10, _rng())
    theirs = private_categorical_binning(X, w, 2.0, 10, _rng())
    np.testing.assert_array_equal(ours[0], theirs[0])
    np.testing.assert_allclose(ours[1], theirs[1])


@pytest.mark.parametrize(("public", "values", "weights"), [
    (100.0, ["1", "2", "DPOther"], [45.0, 30.0, 25.0]),   # target 20: the exact result
    (300.0, ["DPOther"], [100.0]),                        # target 60: every category merged
    (1000.0, ["DPOther"], [200.0]),                       # target 200: interpret's floor
])
def test_categorical_merges_towards_the_public_target(public, values, weights):
    X = _codes([45, 30, 10, 10, 5])
    got = categorical_binning(private_categorical_binning, public)(X, np.ones(100), QUIET, 5,
                                                                  _rng())
    assert list(got[0]) == values
    np.testing.assert_allclose(got[1], weights, atol=1e-3)


def test_the_wrappers_are_in_place_only_within_the_block():
    numeric, categorical = (_preprocessor.private_numeric_binning,
                            _preprocessor.private_categorical_binning)
    with pytest.raises(RuntimeError, match="0 of 2 features"):
        with public_merge_target(100.0, n_features=2):
            assert _preprocessor.private_numeric_binning is not numeric
            assert _preprocessor.private_categorical_binning is not categorical
    assert _preprocessor.private_numeric_binning is numeric
    assert _preprocessor.private_categorical_binning is categorical


def test_an_error_inside_the_block_restores_interpret_and_propagates():
    numeric = _preprocessor.private_numeric_binning
    with pytest.raises(KeyError):
        with public_merge_target(100.0, n_features=1):
            raise KeyError("inside")
    assert _preprocessor.private_numeric_binning is numeric


def test_a_public_total_must_be_positive():
    with pytest.raises(ValueError, match="positive"):
        with public_merge_target(0.0, n_features=1):
            pass


def test_every_feature_of_a_fit_goes_through_the_wrappers(dp_table, dp_schema, dp_bounds,
                                                          monkeypatch):
    """A DP-EBM fit bins each of its features through the public-target wrappers, with
    the total the caller gave (plus the phantom rows' negligible weights)."""
    from contextlib import contextmanager

    import medistill.teachers.dp_ebm as dp_ebm

    seen = []
    real = dp_ebm.public_merge_target

    @contextmanager
    def watching(public_total, *, n_features):
        with real(public_total, n_features=n_features) as calls:
            yield calls
        seen.append((public_total, n_features, calls))

    monkeypatch.setattr(dp_ebm, "public_merge_target", watching)
    frame, labels = dp_table
    dp_ebm.fit_dp_ebm(frame, labels, dp_schema, epsilon=1.0, delta=1e-6, public_rows=777,
                      bounds=dp_bounds, settings=dp_ebm.DPEBMSettings(max_rounds=20))
    [(total, n_features, calls)] = seen
    assert total == pytest.approx(777, abs=1e-6)
    assert n_features == len(dp_schema.features)
    assert calls.total == n_features and calls.numeric and calls.categorical
