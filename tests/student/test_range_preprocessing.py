"""The student's kind of preprocessing fitted on ranges alone (the direct baseline's)."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from medistill.data.schema import BINARY, CATEGORICAL, NUMERIC, FeatureSpec, TableSchema
from medistill.student.preprocess import as_model_input
from medistill.student.range_preprocessing import preprocessor_from_ranges
from medistill.teachers.dp_ranges import release_ranges


def _schema() -> TableSchema:
    return TableSchema(features=(FeatureSpec("year", NUMERIC), FeatureSpec("marker", NUMERIC),
                                 FeatureSpec("dose", NUMERIC), FeatureSpec("smoker", BINARY),
                                 FeatureSpec("ward", CATEGORICAL, ("a", "b", "c"))),
                       label="outcome", classes=("no", "yes"))


def _patients(n: int = 600, seed: int = 0) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    marker = rng.lognormal(np.log(3.0), 1.5, n)
    marker[rng.random(n) < 0.1] = np.nan
    return pd.DataFrame({"year": rng.integers(1975, 1996, n).astype(float), "marker": marker,
                         "dose": rng.uniform(0, 40, n), "smoker": rng.integers(0, 2, n).astype(float),
                         "ward": rng.choice(["a", "b", "c"], n)})


def test_a_year_and_a_heavy_tail_stay_informative_on_600_patients() -> None:
    """Ranges released at the noise the baseline plans for 600 patients; the fitted
    preprocessing neither flattens the year (≈ 1985) nor lets the heavy tail crush the rest,
    and it imputes missing values with a finite number."""
    schema, frame = _schema(), _patients()
    released = release_ranges(frame, ["year", "marker"], noise_multiplier=2.0,
                              rng=np.random.default_rng(7))
    preprocessor = preprocessor_from_ranges(schema, released, {"dose": (0.0, 40.0)},
                                            np.random.default_rng(0))
    z = preprocessor.transform(as_model_input(frame, schema))
    assert z.shape == (len(frame), 3 + 1 + 3) and np.isfinite(z).all()
    year, marker, dose, smoker = z[:, 0], z[:, 1], z[:, 2], z[:, 3]
    assert 0.5 <= year.std() <= 2.5 and abs(year.mean()) <= 1.0
    observed = np.isfinite(frame["marker"].to_numpy())
    assert np.corrcoef(marker[observed], np.log(frame["marker"][observed]))[0, 1] > 0.5
    # the bulk is spread, not squashed into a sliver by the tail
    assert np.subtract(*np.quantile(marker[observed], [0.9, 0.1])) >= 0.3
    assert dose.min() >= -1.8 and dose.max() <= 1.8 and dose.std() >= 0.8   # uniform on 0–40
    assert len(np.unique(smoker)) == 2 and np.allclose(np.abs(smoker), 1.0, atol=0.05)
    assert np.array_equal(z[:, 4:].argmax(1), frame["ward"].map({"a": 0, "b": 1, "c": 2}))


def test_the_same_draws_give_the_same_preprocessing() -> None:
    schema, frame = _schema(), _patients()
    released = release_ranges(frame, ["year", "marker"], noise_multiplier=2.0,
                              rng=np.random.default_rng(7))
    fits = [preprocessor_from_ranges(schema, released, {"dose": (0.0, 40.0)},
                                     np.random.default_rng(5)) for _ in range(2)]
    rows = as_model_input(frame, schema)
    assert np.array_equal(fits[0].transform(rows), fits[1].transform(rows))


def test_a_numeric_feature_without_a_range_is_refused() -> None:
    schema, frame = _schema(), _patients()
    released = release_ranges(frame, ["year"], noise_multiplier=2.0, rng=np.random.default_rng(7))
    with pytest.raises(ValueError, match="'marker' has neither a declared nor a released range"):
        preprocessor_from_ranges(schema, released, {"dose": (0.0, 40.0)}, np.random.default_rng(0))
