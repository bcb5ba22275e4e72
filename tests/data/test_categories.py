"""Data-derived category lists pass a charged DP threshold; declared lists override."""

import numpy as np
import pandas as pd
from scipy.stats import norm

from medistill.data.categories import apply_categories, select_categories, threshold_for
from medistill.data.schema import CATEGORICAL, NUMERIC, FeatureSpec, TableSchema

SCHEMA = TableSchema(features=(FeatureSpec("dx", CATEGORICAL, ("common", "rare")),
                               FeatureSpec("site", CATEGORICAL, ("a", "b")),
                               FeatureSpec("age", NUMERIC)), label="y", classes=("0", "1"))


def _rows(n_common: int = 2000) -> pd.DataFrame:
    dx = ["common"] * n_common + ["rare"]          # "rare": one patient
    return pd.DataFrame({"dx": dx, "site": ["a"] * len(dx), "age": np.arange(len(dx), dtype=float)})


def test_15_3_a_category_held_by_one_patient_is_not_kept() -> None:
    """Issue #15 item 3 (one patient's rare diagnosis never reaches the schema)."""
    kept = [select_categories(_rows(), SCHEMA, declared={}, delta=1e-6,
                              rng=np.random.default_rng(i)).categories["dx"] for i in range(50)]
    assert all(k == ("common",) for k in kept)


def test_threshold_bounds_the_one_patient_release_probability() -> None:
    tau = threshold_for(2, 8.0, 1e-6, share=0.01)
    assert 2 * norm.sf((tau - 1) / (8.0 * np.sqrt(2))) <= 1e-8 * 1.0001
    selection = select_categories(_rows(), SCHEMA, declared={}, delta=1e-6,
                                  rng=np.random.default_rng(0))
    assert selection.threshold_delta <= 1e-8 * 1.0001
    assert selection.event.noise_multiplier == 8.0


def test_declared_lists_override_and_cost_nothing() -> None:
    selection = select_categories(_rows(), SCHEMA, declared={"dx": ("rare", "other"),
                                                              "site": ("a",)},
                                  delta=1e-6, rng=np.random.default_rng(0))
    assert selection.categories == {"dx": ("rare", "other"), "site": ("a",)}
    assert selection.event is None and selection.threshold_delta == 0.0


def test_apply_restricts_values_and_schema() -> None:
    frame, schema = apply_categories(_rows(3), SCHEMA, {"dx": ("common",), "site": ("a",)})
    assert schema.feature("dx").categories == ("common",)
    assert frame["dx"].isna().sum() == 1 and frame["site"].notna().all()


def test_a_column_with_no_category_left_is_dropped() -> None:
    frame, schema = apply_categories(_rows(3), SCHEMA, {"dx": (), "site": ("a",)})
    assert "dx" not in frame.columns and "dx" not in schema.feature_names
    assert schema.feature_names == ["site", "age"]
