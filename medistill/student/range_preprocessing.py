"""The student's kind of preprocessing fitted on ranges alone: for a DP-SGD model that has
no transfer rows of its own (the direct baseline on the DP-teacher path).

The preprocessor (:func:`~medistill.student.preprocess.make_preprocessor`: median
imputation, standard scaling, public one-hot) is fitted on rows drawn column by column from
what is public or already paid for: a charged range's noisy histogram
(:func:`~medistill.teachers.dp_ranges.sample_range`), a declared range (uniformly), a binary
column's two values, a categorical column's public categories. Nothing is read from the
sensitive rows, so fitting it is post-processing.
"""

from __future__ import annotations

from collections.abc import Mapping

import numpy as np
import pandas as pd
from sklearn.compose import ColumnTransformer

from medistill.data.schema import BINARY, CATEGORICAL, TableSchema
from medistill.student.preprocess import as_model_input, make_preprocessor
from medistill.teachers.dp_ranges import ColumnRange, sample_range

# Rows drawn to fit the preprocessor: its median and standard deviation are then within a
# few thousandths of the histogram's own.
FIT_ROWS = 20_000


def preprocessor_from_ranges(schema: TableSchema, released: Mapping[str, ColumnRange],
                             declared: Mapping[str, tuple[float, float]],
                             rng: np.random.Generator, n_rows: int = FIT_ROWS) -> ColumnTransformer:
    """The student's preprocessor fitted on ``n_rows`` rows drawn from ``released`` (charged
    noisy ranges) and ``declared`` (public ``(min, max)``) ranges; every numeric feature needs
    one of the two."""
    columns = {}
    for spec in schema.features:
        if spec.kind == CATEGORICAL:
            choices = np.asarray(spec.categories or ("",), dtype=object)
            columns[spec.name] = rng.choice(choices, n_rows)
        elif spec.kind == BINARY:
            columns[spec.name] = rng.integers(0, 2, n_rows).astype(float)
        elif spec.name in released:
            columns[spec.name] = sample_range(released[spec.name], n_rows, rng)
        elif spec.name in declared:
            low, high = declared[spec.name]
            columns[spec.name] = rng.uniform(low, high, n_rows)
        else:
            raise ValueError(f"Numeric feature '{spec.name}' has neither a declared nor a "
                             "released range.")
    return make_preprocessor(schema).fit(as_model_input(pd.DataFrame(columns), schema))


__all__ = ["FIT_ROWS", "preprocessor_from_ranges"]
