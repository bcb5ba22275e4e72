"""Fixtures of the DP-teacher tests: a small mixed table with a known schema and ranges."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from medistill.data.schema import BINARY, CATEGORICAL, NUMERIC, FeatureSpec, TableSchema


def make_dp_table(n: int, seed: int) -> tuple[pd.DataFrame, np.ndarray]:
    """Numeric, binary and categorical features (with missing values) and a binary label."""
    rng = np.random.default_rng(seed)
    age = rng.uniform(20, 90, n)
    sbp = rng.normal(130, 20, n)
    sbp[rng.random(n) < 0.1] = np.nan
    smoker = rng.integers(0, 2, n).astype(float)
    site = rng.choice(["north", "south", "east"], n, p=[0.5, 0.3, 0.2]).astype(object)
    site[rng.random(n) < 0.05] = None
    logit = (0.06 * (age - 55) + 0.03 * np.nan_to_num(sbp - 130) + 0.8 * smoker
             + np.where(site == "east", 1.0, 0.0) - 0.5)
    labels = (rng.random(n) < 1 / (1 + np.exp(-logit))).astype(np.int64)
    frame = pd.DataFrame({"age": age, "sbp": sbp, "smoker": smoker, "site": site})
    return frame, labels


DP_SCHEMA = TableSchema(
    features=(FeatureSpec("age", NUMERIC), FeatureSpec("sbp", NUMERIC),
              FeatureSpec("smoker", BINARY),
              FeatureSpec("site", CATEGORICAL, ("east", "north", "south", "west"))),
    label="event", classes=("0", "1"))
DP_BOUNDS = {"age": (18.0, 100.0), "sbp": (60.0, 220.0)}


@pytest.fixture(scope="module")
def dp_table() -> tuple[pd.DataFrame, np.ndarray]:
    return make_dp_table(2000, seed=3)


@pytest.fixture(scope="module")
def dp_test_table() -> tuple[pd.DataFrame, np.ndarray]:
    return make_dp_table(2000, seed=4)


@pytest.fixture(scope="module")
def dp_schema() -> TableSchema:
    return DP_SCHEMA


@pytest.fixture(scope="module")
def dp_bounds() -> dict[str, tuple[float, float]]:
    return dict(DP_BOUNDS)
