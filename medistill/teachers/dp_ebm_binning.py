"""interpret's private binning with a public merge target instead of the exact row count.

interpret's DP-EBM noises one histogram per feature and then merges bins
(``interpret/utils/_privacy.py``: ``private_numeric_binning``,
``private_categorical_binning``) until each holds ``total / max_bins`` noisy weight, where
``total`` is the *exact* sum of the sample weights — the training-set size, which the
Gaussian analysis of the histograms does not cover. One patient more or less moves the
target and so, possibly, the released cut points.

:func:`public_merge_target` runs a fit with both functions wrapped so that the total they
read is a public number (the plan's expected row count, from the charged patient count),
while every histogram count, every noise draw and every merge rule stays interpret's own:

* numeric: one *ballast* row is appended with a value outside the declared range, which
  ``np.histogram(range=...)`` ignores, and weight ``public − exact``; the histogram is
  unchanged and the total becomes ``public``.
* categorical: a ballast category (a code that sorts after every real one) with weight
  ``2·public − exact``, and twice the ``max_bins``: the target is ``public / max_bins``
  again, and the ballast, far heavier than any target, is always a bin of its own and is
  removed from the result. Where every real category falls under the target (interpret then
  returns one "DPOther" bin set to the target), the ballast is absorbed instead; the
  wrapper returns what interpret returns there: one "DPOther" bin at the (public) target.

Each wrapper counts its calls; :func:`public_merge_target` checks after the fit that every
feature went through one of them, so a change in interpret's code that bypasses the
wrappers stops the run instead of silently reading the exact count again.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass

import numpy as np

from interpret.utils import _preprocessor

DP_OTHER = "DPOther"
# A category code that sorts after every real code as text (interpret compares the codes
# as strings), so the real categories draw their noise in the order interpret gives them.
BALLAST_CODE = int("9" * 18)


def _weights(X_col: np.ndarray, sample_weight: np.ndarray | None) -> np.ndarray:
    return (np.ones(len(X_col)) if sample_weight is None
            else np.asarray(sample_weight, dtype=np.float64))


def numeric_binning(original: Callable, public_total: float) -> Callable:
    """interpret's numeric binning whose merge target reads ``public_total``."""

    def binning(X_col, sample_weight, noise_scale, max_bins, min_feature_val, max_feature_val,
                rng=None):
        weights = _weights(X_col, sample_weight)
        X = np.append(np.asarray(X_col, dtype=np.float64), np.inf)  # outside any range
        w = np.append(weights, public_total - float(np.sum(weights)))
        return original(X, w, noise_scale, max_bins, min_feature_val, max_feature_val, rng)

    return binning


def categorical_binning(original: Callable, public_total: float) -> Callable:
    """interpret's categorical binning whose merge target reads ``public_total``."""

    def binning(X_col, sample_weight, noise_scale, max_bins, rng=None):
        weights = _weights(X_col, sample_weight)
        X = np.append(np.asarray(X_col, dtype=np.int64), np.int64(BALLAST_CODE))
        w = np.append(weights, 2.0 * public_total - float(np.sum(weights)))
        values, bin_weights = original(X, w, noise_scale, 2 * max_bins, rng)
        values, bin_weights = np.asarray(values), np.asarray(bin_weights, dtype=np.float64)
        ballast = values == str(BALLAST_CODE)
        if not ballast.any():  # absorbed: every real category was under the target
            return np.asarray([DP_OTHER]), np.asarray([public_total / max_bins])
        return values[~ballast], bin_weights[~ballast]

    return binning


@dataclass
class BinningCalls:
    """How many features went through the wrapped numeric and categorical binning."""

    numeric: int = 0
    categorical: int = 0

    @property
    def total(self) -> int:
        return self.numeric + self.categorical


def _counted(function: Callable, calls: BinningCalls, kind: str) -> Callable:
    def counted(*args, **kwargs):
        setattr(calls, kind, getattr(calls, kind) + 1)
        return function(*args, **kwargs)

    return counted


@contextmanager
def public_merge_target(public_total: float, *, n_features: int) -> Iterator[BinningCalls]:
    """Within the block, interpret's DP binning merges towards ``public_total / max_bins``.

    Raises ``RuntimeError`` after the block if fewer than ``n_features`` features were
    binned through the wrappers (interpret's code has changed: re-read it).
    """
    if not public_total > 0:
        raise ValueError(f"public_total must be positive; got {public_total!r}.")
    numeric, categorical = (_preprocessor.private_numeric_binning,
                            _preprocessor.private_categorical_binning)
    calls = BinningCalls()
    _preprocessor.private_numeric_binning = _counted(
        numeric_binning(numeric, public_total), calls, "numeric")
    _preprocessor.private_categorical_binning = _counted(
        categorical_binning(categorical, public_total), calls, "categorical")
    try:
        yield calls
    finally:
        _preprocessor.private_numeric_binning = numeric
        _preprocessor.private_categorical_binning = categorical
    if calls.total < n_features:
        raise RuntimeError(f"interpret binned {calls.total} of {n_features} features outside "
                           "medistill's public merge target; its DP code has changed: re-read "
                           "it before trusting the DP-EBM's ledger entry.")


__all__ = ["BALLAST_CODE", "BinningCalls", "categorical_binning", "numeric_binning",
           "public_merge_target"]
