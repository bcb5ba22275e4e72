"""Shared data of the student tests: a built-in cohort, preprocessed, split by patient."""

import numpy as np
import pytest

from medistill.config import DataConfig
from medistill.data.splits import split_patients
from medistill.data.table import load_sensitive
from medistill.student.preprocess import as_model_input, make_preprocessor


@pytest.fixture(scope="module")
def arrays():
    """(train inputs, train labels, test inputs, test labels) of 2,500 cohort patients."""
    data = load_sensitive(DataConfig(source="builtin", builtin={"n_patients": 2500}), seed=0)
    split = split_patients(data.patient_ids, data.labels, test=0.25, holdout=0.05, seed=0)
    X = as_model_input(data.features, data.schema)
    pre = make_preprocessor(data.schema).fit(X.iloc[split.train])
    to = lambda idx: pre.transform(X.iloc[idx]).astype(np.float32)  # noqa: E731
    return to(split.train), data.labels[split.train], to(split.test), data.labels[split.test]

