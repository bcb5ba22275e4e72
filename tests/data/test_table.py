import numpy as np
import pandas as pd
import pytest

from medistill.config import DataConfig
from medistill.data.table import load_sensitive
from medistill.errors import DataError, IdentifierColumnError


def _config(path, **kw) -> DataConfig:
    base = {"source": "csv", "path": path, "label": "cv_event_1y", "id_column": "patient_id",
            "identifiers": ("name", "mrn", "phone")}
    return DataConfig(**{**base, **kw})


def test_schema_is_inferred(cohort_csv) -> None:
    data = load_sensitive(_config(cohort_csv), seed=0)
    kinds = {f.name: f.kind for f in data.schema.features}
    assert kinds["sex"] == "categorical" and kinds["age"] == "numeric"
    assert kinds["diabetes"] == "binary"
    assert data.schema.classes == ("0", "1")
    assert not {"name", "mrn", "phone", "patient_id", "cv_event_1y"} & set(data.features.columns)
    assert set(data.schema.feature("smoking").categories) == {"current", "former", "never"}


def test_undeclared_identifiers_stop_the_run(cohort_csv) -> None:
    with pytest.raises(IdentifierColumnError, match=r"'name'.*'mrn'.*'phone'.*data.identifiers"):
        load_sensitive(_config(cohort_csv, identifiers=()), seed=0)


def test_identifier_declared_as_feature_is_kept(tmp_path) -> None:
    frame = pd.DataFrame({"pid": range(200), "zip": [f"Z{i % 5}" for i in range(200)],
                          "y": [0, 1] * 100})
    frame.to_csv(tmp_path / "t.csv", index=False)
    config = DataConfig(source="csv", path=tmp_path / "t.csv", label="y", id_column="pid",
                        feature_types={"zip": "categorical"}, min_category_count=1)
    assert load_sensitive(config, seed=0).schema.feature_names == ["zip"]


def test_label_column_absent(cohort_csv) -> None:
    with pytest.raises(DataError, match="label column 'outcome' is not in the table"):
        load_sensitive(_config(cohort_csv, label="outcome"), seed=0)


def test_label_typo_is_suggested(cohort_csv) -> None:
    with pytest.raises(DataError, match="Did you mean 'cv_event_1y'"):
        load_sensitive(_config(cohort_csv, label="cv_event_1"), seed=0)


def test_single_class_label(tmp_path, cohort_table) -> None:
    frame = cohort_table.assign(cv_event_1y=0)
    frame.to_csv(tmp_path / "one.csv", index=False)
    with pytest.raises(DataError, match="single class"):
        load_sensitive(_config(tmp_path / "one.csv"), seed=0)


def test_non_numeric_junk_names_column_and_line(tmp_path, cohort_table) -> None:
    frame = cohort_table.head(200).copy()
    frame["age"] = frame["age"].astype(object)
    frame.loc[17, "age"] = "abc"
    frame.to_csv(tmp_path / "junk.csv", index=False)
    with pytest.raises(DataError, match=r"column 'age' is numeric but row 19 ") as info:
        load_sensitive(_config(tmp_path / "junk.csv", min_category_count=1), seed=0)
    assert "abc" not in str(info.value)  # 16.6: never a cell value
    assert "data.missing_values" in info.value.hint


def test_missing_value_codes_are_missing_cells(tmp_path, cohort_table) -> None:
    frame = cohort_table.head(300).astype({"age": object, "smoking": object})
    frame.loc[[3, 40], "age"] = "."
    frame.loc[5, "smoking"] = " . "
    frame.to_csv(tmp_path / "sas.csv", index=False)
    with pytest.raises(DataError, match=r"column 'age' is numeric but row 5 "):
        load_sensitive(_config(tmp_path / "sas.csv", min_category_count=1), seed=0)
    data = load_sensitive(_config(tmp_path / "sas.csv", missing_values=(".",)), seed=0)
    assert data.schema.missing_values == (".",)
    assert data.features["age"].isna().sum() == cohort_table.head(300)["age"].isna().sum() + 2
    assert pd.isna(data.features.loc[3, "age"]) and pd.isna(data.features.loc[5, "smoking"])
    assert "." not in data.schema.feature("smoking").categories


def test_label_cell_equal_to_a_code_is_refused_with_its_line(tmp_path, cohort_table) -> None:
    frame = cohort_table.head(300).astype({"cv_event_1y": object})
    frame.loc[9, "cv_event_1y"] = "-99"
    frame.to_csv(tmp_path / "coded.csv", index=False)
    with pytest.raises(DataError, match=r"label column 'cv_event_1y' is empty in row 11;"):
        load_sensitive(_config(tmp_path / "coded.csv", missing_values=("-99",)), seed=0)


def test_loaded_categories_are_only_candidates(tmp_path) -> None:
    """The loader keeps every category as a candidate; which reach a model is decided by a
    declared list or the charged DP threshold (tests/data/test_categories.py)."""
    rng = np.random.default_rng(0)
    frame = pd.DataFrame({"ward": ["A"] * 120 + ["B"] * 79 + ["RARE"], "y": rng.integers(0, 2, 200)})
    frame.to_csv(tmp_path / "w.csv", index=False)
    data = load_sensitive(DataConfig(source="csv", path=tmp_path / "w.csv", label="y"), seed=0)
    assert data.schema.feature("ward").categories == ("A", "B", "RARE")
    assert any("charged DP threshold" in c for c in data.caveats)


def test_builtin_breast_cancer() -> None:
    data = load_sensitive(DataConfig(source="builtin", builtin={"name": "breast_cancer"}), seed=0)
    assert data.features.shape == (569, 30) and data.schema.n_classes == 2


def test_nested_parquet_columns_are_refused_by_name_unless_left_out(tmp_path) -> None:
    """A Parquet list or struct column (a FHIR-on-Spark export) is refused by name, not a
    pandas traceback; left out by data.features it is dropped before any check reads it."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    rng = np.random.default_rng(3)
    n = 240
    path = tmp_path / "t.parquet"
    pq.write_table(pa.table({"pid": [f"p{i}" for i in range(n)], "age": rng.integers(30, 90, n),
                             "sbp": rng.normal(130, 15, n), "y": rng.integers(0, 2, n),
                             "codes": pa.array([[1, 2]] * n),
                             "address": pa.array([{"city": "x"}] * n)}), path)
    config = DataConfig(source="parquet", path=path, label="y", id_column="pid")
    with pytest.raises(DataError, match="'codes', 'address' hold lists or records"):
        load_sensitive(config, seed=0)
    kept = load_sensitive(config.model_copy(update={"features": ("age", "sbp")}), seed=0)
    assert kept.schema.feature_names == ["age", "sbp"]


def _features_of(path, frame: pd.DataFrame) -> list[tuple[str, str]]:
    frame.to_csv(path, index=False)
    schema = load_sensitive(DataConfig(source="csv", path=path, label="y", id_column="pid"),
                            seed=0).schema
    return [(f.name, f.kind) for f in schema.features]


@pytest.mark.parametrize(("column", "everyone", "one_patient"), [
    ("flag", 0, 1),              # a 0/1 column that is 0 for all but one patient
    ("dose", 7.5, 8.0),          # a constant measurement
    ("site", "north", "south"),  # a constant category
    ("lab", np.nan, 1.0),        # empty but for one patient
])
def test_17_one_patient_does_not_change_the_feature_columns(tmp_path, column, everyone,
                                                            one_patient) -> None:
    """Channel 17: which columns are features (and so the exported model's inputs) must not
    depend on the sensitive values. A neighbouring table (one patient's value changed, or
    one patient added) has the same feature columns, of the same kinds, as the table where
    the column is empty or constant. (Category lists are only candidates here: the charged
    selection picks them, tests/data/test_categories.py.)"""
    rng = np.random.default_rng(3)
    n = 300
    frame = pd.DataFrame({"pid": [f"P{i}" for i in range(n)], "age": rng.normal(60, 9, n),
                          column: [everyone] * n, "y": rng.integers(0, 2, n)})
    changed = frame.copy()
    changed.loc[17, column] = one_patient
    added = pd.concat([frame, changed.iloc[[17]].assign(pid="P-new")], ignore_index=True)
    features = _features_of(tmp_path / "t.csv", frame)
    assert [name for name, _ in features] == ["age", column]
    assert _features_of(tmp_path / "changed.csv", changed) == features
    assert _features_of(tmp_path / "added.csv", added) == features
