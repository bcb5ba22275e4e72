"""The schema-prior sampler never reads sensitive rows."""
import inspect

import numpy as np
import pandas as pd

from medistill.config import NumericPrior
from medistill.data.schema import FeatureSpec, TableSchema
from medistill.transfer.dp_marginals import release_marginals
from medistill.transfer.schema_prior import SchemaPriorSampler, columns_needing_marginals

SCHEMA = TableSchema(features=(FeatureSpec("age", "numeric"), FeatureSpec("bmi", "numeric"),
                               FeatureSpec("sex", "categorical", ("female", "male")),
                               FeatureSpec("smoker", "binary")),
                     label="y", classes=("0", "1"))
PRIORS = {"age": NumericPrior(min=18, max=90),
          "bmi": NumericPrior(min=15, max=60, distribution="lognormal", mean=27, sd=5)}
CATEGORIES = {"sex": ("female", "male")}
POISON = 123456.789


def _poisoned(n=500):
    return pd.DataFrame({"age": np.full(n, POISON), "bmi": np.full(n, -POISON),
                         "sex": ["POISON"] * n, "smoker": np.full(n, 7.0)})


def test_constructor_takes_no_rows():
    params = set(inspect.signature(SchemaPriorSampler).parameters)
    assert params == {"schema", "priors", "categories", "marginals"}


def test_poisoned_sensitive_table_never_reaches_the_output():
    sensitive = _poisoned()
    needed = columns_needing_marginals(SCHEMA, PRIORS, CATEGORIES)
    assert needed == ["smoker"]
    # The only route from sensitive rows: DP marginals of the undeclared columns.
    marginals = release_marginals(sensitive, SCHEMA, needed, noise_multiplier=1.0,
                                  rng=np.random.default_rng(0))
    sampler = SchemaPriorSampler(SCHEMA, priors=PRIORS, categories=CATEGORIES, marginals=marginals)
    out = sampler.sample(5000, np.random.default_rng(1))
    assert out["age"].between(18, 90).all() and out["bmi"].between(15, 60).all()
    assert set(out["sex"]) <= {"female", "male"}
    assert set(out["smoker"].dropna()) <= {0.0, 1.0}
    assert not out.isin([POISON, -POISON, "POISON", 7.0]).any().any()
    # Declared columns do not depend on the sensitive table at all.
    clean = SchemaPriorSampler(SCHEMA, priors=PRIORS, categories=CATEGORIES, marginals=marginals)
    again = clean.sample(5000, np.random.default_rng(1))
    pd.testing.assert_frame_equal(out[["age", "bmi", "sex"]], again[["age", "bmi", "sex"]])
