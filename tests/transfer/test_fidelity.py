import numpy as np
import pandas as pd
import pytest

from medistill.data.schema import FeatureSpec, TableSchema
from medistill.transfer.fidelity import correlation_error, fidelity_report, total_variation

SCHEMA = TableSchema(features=(FeatureSpec("x", "numeric"), FeatureSpec("y", "numeric"),
                               FeatureSpec("c", "categorical", ("a", "b"))),
                     label="t", classes=("0", "1"))


def test_total_variation_by_hand():
    # p = (a .5, b .5), q = (a .25, b .25, missing .5): TV = ½(.25 + .25 + .5) = .5
    real = pd.DataFrame({"x": [0.0] * 4, "y": [0.0] * 4, "c": ["a", "a", "b", "b"]})
    syn = pd.DataFrame({"x": [0.0] * 4, "y": [0.0] * 4, "c": ["a", "b", None, None]})
    report = fidelity_report(real, syn, SCHEMA)
    assert report["columns"]["c"] == {"metric": "tv", "value": pytest.approx(0.5)}
    assert total_variation(pd.Series(["a", "z"]), pd.Series(["a", "a"])) == pytest.approx(0.5)


def test_ks_by_hand():
    # real {1,2,3,4}, synthetic {3,4,5,6}: largest CDF gap is at 2 (0.5 vs 0) → 0.5
    real = pd.DataFrame({"x": [1.0, 2, 3, 4], "y": [1.0, 2, 3, 4], "c": ["a"] * 4})
    syn = pd.DataFrame({"x": [3.0, 4, 5, 6], "y": [1.0, 2, 3, np.nan], "c": ["a"] * 4})
    report = fidelity_report(real, syn, SCHEMA)
    assert report["columns"]["x"]["value"] == pytest.approx(0.5)
    assert report["columns"]["y"]["value"] == pytest.approx(0.25)   # {1,2,3} vs {1,2,3,4}
    assert report["max_ks"] == pytest.approx(0.5) and report["mean_ks"] == pytest.approx(0.375)


def test_correlation_error_by_hand():
    # real: y = x, c = a iff x large → corr(x,y)=1, corr(x,1[a])=corr(y,1[a])=r, 1[b] = -1[a]
    x = np.array([1.0, 2, 3, 4])
    real = pd.DataFrame({"x": x, "y": x, "c": ["b", "b", "a", "a"]})
    syn = pd.DataFrame({"x": x, "y": -x, "c": ["b", "b", "a", "a"]})
    r = np.corrcoef(x, [0, 0, 1, 1])[0, 1]
    # columns x, y, 1[a], 1[b]; pairs: (x,y) 1 vs -1 → 2; (x,a) r vs r → 0; (x,b) 0;
    # (y,a) r vs -r → 2r; (y,b) -r vs r → 2r; (a,b) -1 vs -1 → 0
    expected = (2 + 4 * r) / 6
    assert correlation_error(real, syn, SCHEMA) == pytest.approx(expected)
    assert fidelity_report(real, real, SCHEMA)["correlation_error"] == pytest.approx(0.0)


def test_constant_column_counts_as_uncorrelated():
    real = pd.DataFrame({"x": [1.0, 2, 3], "y": [5.0, 5, 5], "c": ["a", "a", "a"]})
    syn = pd.DataFrame({"x": [1.0, 2, 3], "y": [1.0, 2, 3], "c": ["a", "a", "a"]})
    # pairs (x,y) 0 vs 1, others 0 (constant one-hot columns) → 1/6
    assert correlation_error(real, syn, SCHEMA) == pytest.approx(1 / 6)
