import dp_accounting as dpa
import numpy as np
import pandas as pd
import pytest

from medistill.data.schema import FeatureSpec, TableSchema
from medistill.errors import ConfigError, DataError
from medistill.privacy.ledger import PrivacyLedger
from medistill.transfer import munge as munge_module
from medistill.transfer.mixing import mix_sources
from medistill.transfer.munge import munge

SCHEMA = TableSchema(features=(FeatureSpec("x", "numeric"),
                               FeatureSpec("c", "categorical", ("a", "b")),
                               FeatureSpec("z", "binary")), label="y", classes=("0", "1"))
ROWS = pd.DataFrame({"x": [1.0, 1.1, 5.0, 5.2, np.nan], "c": ["a", "b", "a", "b", None],
                     "z": [0.0, 1.0, 1.0, 0.0, 1.0]})


def test_munge_refused_without_explicit_permission():
    for flag in (False, None, 1, "true"):
        with pytest.raises(ConfigError, match="allow_nonprivate"):
            munge(ROWS, SCHEMA, n=10, swap_probability=0.5, local_variance=5.0,
                  rng=np.random.default_rng(0), allow_nonprivate=flag)


def test_munge_rows_and_their_infinite_cost():
    out = munge(ROWS, SCHEMA, n=200, swap_probability=0.5, local_variance=5.0,
                rng=np.random.default_rng(0), allow_nonprivate=True)
    assert list(out.columns) == ["x", "c", "z"] and len(out) == 200
    assert set(out["c"].dropna()) <= {"a", "b"} and set(out["z"]) <= {0.0, 1.0}
    event = munge_module.privacy_events()
    assert isinstance(event, dpa.NonPrivateDpEvent)
    ledger = PrivacyLedger(delta=1e-6)
    ledger.record("transfer", event)
    assert ledger.epsilon() == float("inf") and not ledger.formal_guarantee


def test_munge_without_swaps_copies_rows():
    out = munge(ROWS, SCHEMA, n=50, swap_probability=0.0, local_variance=5.0,
                rng=np.random.default_rng(0), allow_nonprivate=True)
    keys = set(map(tuple, ROWS.astype(str).to_numpy()))
    assert set(map(tuple, out.astype(str).to_numpy())) <= keys


def test_mix_sources_sizes_and_labels():
    a = pd.DataFrame({"x": np.arange(10.0), "c": ["a"] * 10})
    b = pd.DataFrame({"c": ["b"] * 5, "x": -np.arange(5.0)})
    mixed, source = mix_sources([("public", a), ("synthetic", b)], {"public": 4, "synthetic": 5},
                                np.random.default_rng(0))
    assert len(mixed) == 9 and list(mixed.columns) == ["x", "c"]
    assert source.value_counts().to_dict() == {"public": 4, "synthetic": 5}
    assert ((source == "public") == (mixed["c"] == "a")).all()
    assert mixed.loc[source == "public", "x"].is_unique          # no repeated individuals
    with pytest.raises(DataError, match="fewer than"):
        mix_sources([("public", a)], {"public": 11}, np.random.default_rng(0))
    with pytest.raises(DataError, match="columns"):
        mix_sources([("public", a), ("s", b.rename(columns={"x": "w"}))], {"public": 1, "s": 1},
                    np.random.default_rng(0))
