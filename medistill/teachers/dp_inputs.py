"""Inputs of the DP teachers, encoded from public information only.

A DP teacher may not read ranges, category lists or missingness patterns off the sensitive
rows: each is a channel (see ``docs/teachers.md``). This module turns a feature frame into
model inputs using only the table schema (public metadata: names, kinds, declared category
lists) and **declared bounds** for every numeric feature — a public range from the pipeline
file, or one read off charged noisy histograms (:mod:`medistill.teachers.dp_ranges`). Never
the data's min/max.

- numeric: clipped to its bounds; a missing value is mapped to a reserved slot just below
  the lower bound (the DP-EBM gives it its own bins; the linear teacher gets an indicator);
- binary: the categories ``"0"``, ``"1"`` and ``MISSING``;
- categorical: the declared categories, ``OTHER`` (a value outside the list) and ``MISSING``.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass

import numpy as np
import pandas as pd

from medistill.data.schema import BINARY, NUMERIC, TableSchema
from medistill.errors import ConfigError, DataError

MISSING = "__missing__"
OTHER = "__other__"
# interpret's default max_bins; the pipeline's plan may choose fewer
# (medistill.teachers.dp_ebm.public_max_bins).
DEFAULT_MAX_BINS = 32

Bounds = Mapping[str, tuple[float, float]]


def check_bounds(schema: TableSchema, bounds: Bounds) -> dict[str, tuple[float, float]]:
    """Validated bounds for every numeric feature of ``schema`` (a ConfigError otherwise)."""
    numeric = [f.name for f in schema.features if f.kind == NUMERIC]
    missing = [name for name in numeric if name not in bounds]
    if missing:
        shown = ", ".join(f"'{m}'" for m in missing[:8]) + (" ..." if len(missing) > 8 else "")
        raise ConfigError(
            f"The DP teacher needs a public range for every numeric feature; none is declared "
            f"for {shown}. A DP teacher may not read ranges off the sensitive rows (their "
            "min/max would leak the most extreme patients).",
            hint="Declare one per column (e.g. transfer.priors.<column>: {min: ..., max: ...}) "
                 "or leave the column out of transfer.priors: the pipeline then estimates its "
                 "range from noisy histograms charged to the privacy budget (ledger stage "
                 "'dp_teacher_ranges').")
    checked = {}
    for name in numeric:
        try:
            lo, hi = (float(v) for v in bounds[name])
        except (TypeError, ValueError) as exc:
            raise ConfigError(f"The public range of feature '{name}' must be a pair (min, max) "
                              f"of numbers. Got {bounds[name]!r} instead.") from exc
        if not (math.isfinite(lo) and math.isfinite(hi) and lo < hi):
            raise ConfigError(f"The public range of feature '{name}' must be finite with min < "
                              f"max. Got ({lo}, {hi}) instead.")
        checked[name] = (lo, hi)
    return checked


@dataclass(frozen=True)
class PublicEncoding:
    """How a DP teacher reads a feature frame: the schema plus declared numeric bounds."""

    schema: TableSchema
    bounds: dict[str, tuple[float, float]]
    missing_width_bins: int = 2 * (DEFAULT_MAX_BINS - 1)  # interpret's uniform bins

    @classmethod
    def build(cls, schema: TableSchema, bounds: Bounds, *,
              max_bins: int = DEFAULT_MAX_BINS) -> PublicEncoding:
        return cls(schema, check_bounds(schema, bounds), 2 * (max_bins - 1))

    def missing_slot(self, name: str) -> tuple[float, float]:
        """(low edge, value) of the reserved missing slot below a numeric feature's range.

        interpret's private binning splits ``[low edge, max]`` into ``missing_width_bins``
        equal bins; the slot is exactly the first of them, so a bin edge falls on ``min``.
        """
        lo, hi = self.bounds[name]
        width = (hi - lo) / (self.missing_width_bins - 1)
        return lo - width, lo - width / 2

    def categories(self, name: str) -> tuple[str, ...]:
        """The full public domain of a binary or categorical feature."""
        spec = self.schema.feature(name)
        if spec.kind == BINARY:
            return ("0", "1", MISSING)
        return (*spec.categories, OTHER, MISSING)

    def _require_columns(self, frame: pd.DataFrame) -> None:
        absent = [n for n in self.schema.feature_names if n not in frame.columns]
        if absent:
            raise DataError(f"The DP teacher's input lacks the feature column(s) "
                            f"{', '.join(absent[:8])}; it expects the schema's "
                            f"{len(self.schema.feature_names)} features.")

    def numeric(self, frame: pd.DataFrame, name: str) -> np.ndarray:
        """A numeric column clipped to its bounds, missing values in the reserved slot."""
        lo, hi = self.bounds[name]
        values = pd.to_numeric(frame[name], errors="coerce").to_numpy(dtype=float)
        out = np.clip(values, lo, hi)
        out[~np.isfinite(values)] = self.missing_slot(name)[1]
        return out

    def category_codes(self, frame: pd.DataFrame, name: str) -> np.ndarray:
        """Category strings of a binary/categorical column, within its public domain."""
        spec = self.schema.feature(name)
        column = frame[name]
        if spec.kind == BINARY:
            values = pd.to_numeric(column, errors="coerce").to_numpy(dtype=float)
            return np.where(np.isnan(values), MISSING, np.where(values == 1, "1", "0"))
        text = column.astype("string")
        missing = text.isna().to_numpy()
        text = text.fillna(MISSING).to_numpy(dtype=object)
        known = np.isin(text, np.asarray(spec.categories, dtype=object))
        return np.where(missing, MISSING, np.where(known, text, OTHER)).astype(object)

    def ebm_frame(self, frame: pd.DataFrame) -> pd.DataFrame:
        """The frame the DP-EBM is fitted on / predicts from (no missing values)."""
        self._require_columns(frame)
        cols = {}
        for spec in self.schema.features:
            cols[spec.name] = (self.numeric(frame, spec.name) if spec.kind == NUMERIC
                               else self.category_codes(frame, spec.name))
        return pd.DataFrame(cols, index=range(len(frame)))

    def ebm_feature_types(self) -> list[str]:
        return ["continuous" if f.kind == NUMERIC else "nominal" for f in self.schema.features]

    def linear_matrix(self, frame: pd.DataFrame) -> np.ndarray:
        """Inputs of the DP linear teacher, every entry in [-1, 1].

        Numeric: scaled to [-1, 1] by the declared bounds, 0 when missing, plus a missing
        indicator; binary and categorical: one-hot over the public domain.
        """
        self._require_columns(frame)
        blocks = []
        for spec in self.schema.features:
            if spec.kind == NUMERIC:
                lo, hi = self.bounds[spec.name]
                raw = pd.to_numeric(frame[spec.name], errors="coerce").to_numpy(dtype=float)
                missing = ~np.isfinite(raw)
                scaled = 2 * (np.clip(raw, lo, hi) - lo) / (hi - lo) - 1
                blocks += [np.where(missing, 0.0, scaled), missing.astype(float)]
            else:
                codes = self.category_codes(frame, spec.name)
                blocks += [(codes == c).astype(float) for c in self.categories(spec.name)]
        return np.column_stack(blocks).astype(np.float32)

    def linear_width(self) -> int:
        """Number of columns of :meth:`linear_matrix`."""
        return sum(2 if f.kind == NUMERIC else len(self.categories(f.name))
                   for f in self.schema.features)


__all__ = ["MISSING", "OTHER", "PublicEncoding", "check_bounds"]
