"""The built-in FHIR cohort is reproducible: same seed, same table, in the same order."""

import pandas as pd

from medistill.config import DataConfig
from medistill.data.table import load_sensitive


def test_builtin_fhir_cohort_is_reproducible() -> None:
    config = DataConfig(source="builtin", builtin={"n_patients": 300}, fhir_jobs=2)
    a = load_sensitive(config, seed=4)
    b = load_sensitive(config, seed=4)
    pd.testing.assert_frame_equal(a.features, b.features)
    assert (a.patient_ids == b.patient_ids).all() and (a.labels == b.labels).all()
    assert not any(str(p).startswith("PT") for p in a.patient_ids)  # salted keys, not FHIR ids
