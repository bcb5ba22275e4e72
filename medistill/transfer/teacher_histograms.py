"""Transfer rows from a DP-EBM teacher's own noisy per-feature histograms (free).

A fitted DP-EBM carries, per feature, the bins its private binning released and their
noisy weights (interpret's ``bins_`` / ``bin_weights_``). Both were paid for in the
teacher's ledger event; anything computed from them alone is post-processing and costs
nothing more. The model holds no joint information about features, so rows are sampled
**independently per feature** from these marginals; the teacher then labels them.

Numeric values are drawn uniformly within a bin (its edges are the declared bounds and
interpret's cuts); values that land in the reserved slot below the declared range are
missing (``NaN``). interpret merges rare categories into one "other" bin (and, when that bin
is still too light, the lightest declared category too); its weight is shared evenly among
the merged *declared* categories, and goes to the out-of-list / missing values only when
no declared category was merged (rare values are usually rare: a choice, not data). Sampling uses the generator passed in (seeded: no guarantee relies on it).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd

from medistill.data.schema import BINARY, NUMERIC
from medistill.teachers.dp_ebm import DPEBMTeacher
from medistill.teachers.dp_inputs import MISSING, OTHER


@dataclass(frozen=True)
class FeatureHistogram:
    """One feature's released marginal: numeric bins (``edges``) or ``categories``.

    ``probabilities`` has one entry per bin or category and sums to 1. For numeric features
    the first bin starts at the reserved missing slot's low edge, below ``declared_min``.
    """

    name: str
    kind: str
    probabilities: np.ndarray
    edges: np.ndarray | None = None
    categories: tuple[str, ...] = ()
    declared_min: float = np.nan

    def missing_rate(self) -> float:
        """Share of missing values in this marginal."""
        if self.kind == NUMERIC:
            lo, hi = self.edges[:-1], self.edges[1:]
            below = np.clip((self.declared_min - lo) / (hi - lo), 0.0, 1.0)
            return float(np.sum(self.probabilities * below))
        return float(sum(p for c, p in zip(self.categories, self.probabilities) if c == MISSING))

    def quantile(self, q: float) -> float:
        """The ``q`` quantile of the non-missing values of a numeric feature (piecewise linear)."""
        if self.kind != NUMERIC:
            raise ValueError(f"quantile() is for numeric features; '{self.name}' is {self.kind}.")
        lo = np.maximum(self.edges[:-1], self.declared_min)
        hi = np.maximum(self.edges[1:], self.declared_min)
        inside = np.where(hi > lo, (hi - lo) / (self.edges[1:] - self.edges[:-1]), 0.0)
        mass = self.probabilities * inside
        if mass.sum() <= 0:
            return float((self.declared_min + self.edges[-1]) / 2)
        cdf = np.concatenate([[0.0], np.cumsum(mass) / mass.sum()])
        points = np.concatenate([[lo[0]], hi])
        return float(np.interp(q, cdf, points))

    def sample(self, n: int, rng: np.random.Generator) -> np.ndarray:
        """``n`` values: floats (NaN = missing) for numeric and binary, objects otherwise."""
        index = rng.choice(len(self.probabilities), size=n, p=self.probabilities)
        if self.kind == NUMERIC:
            values = rng.uniform(self.edges[index], self.edges[index + 1])
            values[values < self.declared_min] = np.nan
            return values
        drawn = np.asarray(self.categories, dtype=object)[index]
        if self.kind == BINARY:
            return np.array([np.nan if v == MISSING else float(v) for v in drawn])
        return np.array([None if v == MISSING else v for v in drawn], dtype=object)


def _weights(teacher: DPEBMTeacher, feature_index: int) -> np.ndarray:
    model = teacher.model
    term = model.term_features_.index((feature_index,))
    return np.clip(np.asarray(model.bin_weights_[term], dtype=float), 0.0, None)


def _normalised(weights: np.ndarray) -> np.ndarray:
    total = weights.sum()
    return weights / total if total > 0 else np.full(len(weights), 1.0 / len(weights))


def feature_histograms(teacher: DPEBMTeacher) -> dict[str, FeatureHistogram]:
    """The released per-feature marginals of a fitted DP-EBM teacher (post-processing)."""
    model, encoding = teacher.model, teacher.encoding
    out = {}
    for index, spec in enumerate(encoding.schema.features):
        weights = _weights(teacher, index)
        bins = model.bins_[index][0]
        if spec.kind == NUMERIC:
            low_edge, high = (float(v) for v in model.feature_bounds_[index])
            edges = np.concatenate([[low_edge], np.asarray(bins, dtype=float), [high]])
            inner = weights[1:-1]  # interpret's layout: [missing, bins..., unseen]
            if len(inner) != len(edges) - 1:
                raise RuntimeError(f"interpret's bins of '{spec.name}' do not match their "
                                   "weights; its layout has changed.")
            out[spec.name] = FeatureHistogram(spec.name, spec.kind, _normalised(inner),
                                              edges=edges,
                                              declared_min=encoding.bounds[spec.name][0])
            continue
        domain = encoding.categories(spec.name)
        probs = dict.fromkeys(domain, 0.0)
        for category, slot in bins.items():
            probs[category] += weights[slot]
        merged = [c for c in domain if c not in bins]
        declared = [c for c in merged if c not in (OTHER, MISSING)]
        merged = declared or merged
        for category in merged:  # interpret's "other" bin, shared evenly
            probs[category] += weights[-1] / len(merged)
        out[spec.name] = FeatureHistogram(spec.name, spec.kind,
                                          _normalised(np.array([probs[c] for c in domain])),
                                          categories=domain)
    return out


class TeacherHistogramSampler:
    """Independent per-feature draws from a DP-EBM teacher's released histograms."""

    def __init__(self, teacher: DPEBMTeacher) -> None:
        self.schema = teacher.encoding.schema
        self.histograms = feature_histograms(teacher)

    def sample(self, n_rows: int, rng: np.random.Generator) -> pd.DataFrame:
        """``n_rows`` transfer rows with the schema's feature columns."""
        if not isinstance(n_rows, int | np.integer) or n_rows < 1:
            raise ValueError(f"n_rows must be a positive int. Got {n_rows!r} instead.")
        return pd.DataFrame({name: self.histograms[name].sample(int(n_rows), rng)
                             for name in self.schema.feature_names})


__all__ = ["FeatureHistogram", "TeacherHistogramSampler", "feature_histograms"]
