import pytest
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


def test_an_empty_column_named_like_an_id_is_not_a_record_number() -> None:
    """An id-like name with a unique value per row is a record number; with no value at
    all it holds none (it stays a feature, docs/input_checks.md)."""
    n = 200
    frame = pd.DataFrame({"sample_no": [f"S{i}" for i in range(n)],
                          "visit_no": np.full(n, np.nan), "batch_id": [None] * n})
    assert _columns(frame) == {"sample_no"}


def test_row_index_is_an_identifier_under_any_name() -> None:
    """R's ``rownames`` and pandas' ``Unnamed: 0`` (consecutive whole numbers, one per row,
    in any order or as floats) are found; unique non-consecutive counts and a short table
    are not."""
    rng = np.random.default_rng(1)
    n = 120
    frame = pd.DataFrame({
        "rownames": np.arange(1, n + 1),
        "idx": rng.permutation(n).astype(float),
        "los": rng.permutation(np.arange(0, 2 * n, 2)),     # unique, but with gaps
        "age": rng.integers(20, 90, n),
    })
    assert _columns(frame) == {"rownames", "idx"}
    [finding] = [f for f in detect_identifiers(frame) if f.column == "rownames"]
    assert "consecutive whole numbers" in finding.reason and "1" not in finding.reason
    assert _columns(frame.head(40)) == set()
    with_gap = frame.assign(rownames=frame.rownames.astype(float).where(frame.index != 5))
    assert "rownames" not in _columns(with_gap)


def test_declared_columns_are_excluded() -> None:
    frame = pd.DataFrame({"name": ["a", "b"], "x": [1, 2]})
    assert _columns(frame, exclude={"name"}) == set()


def _neutral_frame(n: int = 300) -> pd.DataFrame:
    rng = np.random.default_rng(3)
    first = ["Zyxwquorth", "Amelia", "Oluwaseun", "Ines", "Kenji", "Mary-Jo", "Padraig", "Li"]
    last = ["Smith", "O'Neill", "Nakamura", "García", "Okafor", "Berg", "Novak", "Chen", "Ross"]
    notes = [f"pt seen in clinic {k}, reports improved mobility and will return next month"
             for k in range(40)]
    return pd.DataFrame({
        "contact": [f"{rng.choice(first)} {rng.choice(last)}" for _ in range(n)],
        "clin_comment": rng.choice(notes, n),                      # repeated long notes
        "reach": [f"call {rng.integers(200, 999)}-555-{i:04d} after 5pm" for i in range(n)],
        "info": [f"via <p{i}@mail.example.org>" if i % 2 else "none" for i in range(n)],
        "ref": [f"A{rng.integers(10**6, 10**7)}" for _ in range(n)],
        "code": 1_000_000 + rng.permutation(n) * 7919,
        # honest features that must not be flagged
        "visit_date": [f"2024-{1 + i % 12:02d}-{1 + i % 28:02d} 10:30" for i in range(n)],
        "specialty": rng.choice(["Internal Medicine", "General Surgery", "North Wing"], n),
        "bp": [f"{rng.integers(100, 160)}/{rng.integers(60, 95)}" for _ in range(n)],
        "count": rng.integers(0, 40, n),
        "diagnosis": rng.choice(["Type 2 diabetes mellitus without complications",
                                 "Chronic obstructive pulmonary disease, unspecified"], n),
        "weight": rng.normal(80, 10, n).round(1),
        "platelets": rng.normal(2.5e11, 4e10, n).round(),
    })


def test_16_8_identifiers_under_neutral_names_found_by_content() -> None:
    findings = {f.column: f.reason for f in detect_identifiers(_neutral_frame())}
    assert set(findings) == {"contact", "clin_comment", "reach", "info", "ref", "code"}
    assert "person names" in findings["contact"]
    assert "long free text" in findings["clin_comment"]
    assert "phone numbers" in findings["reach"]
    assert "e-mail" in findings["info"]
    assert "record numbers" in findings["ref"] and "record numbers" in findings["code"]


def test_16_8_findings_name_the_kind_never_a_value(tmp_path) -> None:
    from medistill.config import DataConfig
    from medistill.data.table import load_sensitive
    from medistill.errors import IdentifierColumnError

    frame = _neutral_frame().assign(pid=[f"P{i}" for i in range(300)], y=[0, 1] * 150)
    frame.to_csv(tmp_path / "t.csv", index=False)
    with pytest.raises(IdentifierColumnError) as info:
        load_sensitive(DataConfig(source="csv", path=tmp_path / "t.csv", label="y",
                                  id_column="pid"), seed=0)
    message = str(info.value)
    assert "'contact' (its values look like person names)" in message
    assert "data.identifiers: [contact, clin_comment, reach, info, ref, code]" in message
    for secret in ("Zyxwquorth", "555-", "@mail", "pt seen", "mobility", "Smith"):
        assert secret not in message
