"""Public-only encoding of the DP teachers' inputs (ranges: tests/teachers/test_dp_ranges.py)."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from medistill.errors import ConfigError, DataError
from medistill.teachers.dp_ebm import DPEBMSettings
from medistill.teachers.dp_inputs import (
    MISSING,
    OTHER,
    PublicEncoding,
    check_bounds,
)


def test_every_numeric_feature_needs_a_declared_range(dp_schema):
    with pytest.raises(ConfigError, match="'sbp'") as info:
        check_bounds(dp_schema, {"age": (18, 100)})
    assert "min/max" in str(info.value)
    with pytest.raises(ConfigError, match="pair"):
        check_bounds(dp_schema, {"age": "old", "sbp": (60, 220)})
    with pytest.raises(ConfigError, match="finite"):
        check_bounds(dp_schema, {"age": (18, float("inf")), "sbp": (60, 220)})
    assert check_bounds(dp_schema, {"age": (18, 100), "sbp": (60, 220), "extra": (0, 1)}) == {
        "age": (18.0, 100.0), "sbp": (60.0, 220.0)}


@pytest.mark.parametrize("max_bins", [None, 8, 16])
def test_missing_slot_is_interprets_first_uniform_bin(dp_schema, dp_bounds, max_bins):
    """The slot below the range is interpret's first uniform bin at the teacher's max_bins
    (None: the encoding's default, which is the DP-EBM's)."""
    if max_bins is None:
        encoding = PublicEncoding.build(dp_schema, dp_bounds)
        max_bins = DPEBMSettings().max_bins
    else:
        encoding = PublicEncoding.build(dp_schema, dp_bounds, max_bins=max_bins)
    low_edge, value = encoding.missing_slot("age")
    edges = np.histogram_bin_edges([], bins=2 * (max_bins - 1), range=(low_edge, 100.0))
    assert edges[1] == pytest.approx(18.0)
    assert low_edge < value < 18.0


def test_encoding_maps_values_into_the_public_domain(dp_schema, dp_bounds):
    encoding = PublicEncoding.build(dp_schema, dp_bounds)
    frame = pd.DataFrame({"age": [10.0, 50.0, np.nan], "sbp": [300.0, np.nan, 120.0],
                          "smoker": [1.0, np.nan, 0.0], "site": ["east", "mars", None]})
    ebm = encoding.ebm_frame(frame)
    assert not ebm.isna().any().any()
    assert ebm["age"].tolist()[:2] == [18.0, 50.0] and ebm["age"][2] < 18.0
    assert ebm["sbp"][0] == 220.0
    assert ebm["smoker"].tolist() == ["1", MISSING, "0"]
    assert ebm["site"].tolist() == ["east", OTHER, MISSING]
    linear = encoding.linear_matrix(frame)
    assert linear.shape == (3, encoding.linear_width())
    assert np.abs(linear).max() <= 1.0
    with pytest.raises(DataError, match="site"):
        encoding.ebm_frame(frame.drop(columns=["site"]))
