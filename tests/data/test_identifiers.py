import numpy as np
import pandas as pd

from medistill.data.identifiers import detect_identifiers


def _columns(frame: pd.DataFrame, **kw) -> set[str]:
    return {f.column for f in detect_identifiers(frame, **kw)}


def test_cohort_identifiers_are_found(cohort_table: pd.DataFrame) -> None:
    found = _columns(cohort_table, exclude={"cv_event_1y"})
    assert {"name", "mrn", "phone", "patient_id"} <= found
    assert not found & {"age", "bmi", "sex", "smoking", "glucose", "n_encounters"}


def test_value_based_detection_without_telling_names() -> None:
    rng = np.random.default_rng(0)
    n = 200
    frame = pd.DataFrame({
        "contact": [f"user{i}@hospital.org" for i in range(n)],
        "tel": [f"+44 20 7946 {i:04d}" for i in range(n)],
        "notes": [f"patient reports pain level {i} after visit {i * 7}" for i in range(n)],
        "record_no": np.arange(n) + 1000,
        "weight": rng.normal(80, 10, n),          # unique floats: a feature, not an id
        "ward": rng.choice(["A", "B", "C"], n),
    })
    assert _columns(frame) == {"contact", "tel", "notes", "record_no"}


def test_declared_columns_are_excluded() -> None:
    frame = pd.DataFrame({"name": ["a", "b"], "x": [1, 2]})
    assert _columns(frame, exclude={"name"}) == set()
