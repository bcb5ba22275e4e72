import numpy as np
import pandas as pd
import pytest

from medistill.data.schema import FeatureSpec, TableSchema
from medistill.errors import DataError
from medistill.transfer.public_table import align_public_table

SCHEMA = TableSchema(features=(FeatureSpec("age", "numeric"),
                               FeatureSpec("smoking", "categorical", ("current", "former", "never")),
                               FeatureSpec("diabetes", "binary"),
                               FeatureSpec("sbp", "numeric")),
                     label="outcome", classes=("0", "1"))


def _public():
    return pd.DataFrame({"Age_years": ["40", "55.5", "", "70"],
                         "smoking": ["Never", "ex-smoker", "current", None],
                         "diabetes": ["yes", "no", "2", None],
                         "systolic": [120, 130, 140, 150],
                         "outcome": [0, 1, 0, 1], "mrn": ["a", "b", "c", "d"]})


def test_aligns_mismatched_columns_and_categories():
    aligned, notes = align_public_table(_public(), SCHEMA, source="registry.csv",
                                        column_map={"Age_years": "age", "systolic": "sbp"})
    assert list(aligned.columns) == ["age", "smoking", "diabetes", "sbp"]
    np.testing.assert_allclose(aligned["age"], [40.0, 55.5, np.nan, 70.0])
    assert aligned["smoking"].tolist() == ["never", None, "current", None]
    np.testing.assert_allclose(aligned["diabetes"], [1.0, 0.0, np.nan, np.nan])
    assert aligned["sbp"].dtype == float
    text = " ".join(notes)
    assert "'ex-smoker' (1)" in text and "former" in text      # unseen and never-seen categories
    assert "other than 0/1" in text and "dropped 2" in text     # bad binary, outcome + mrn dropped


def test_missing_columns_refused_with_a_mapping_hint():
    with pytest.raises(DataError) as err:
        align_public_table(_public(), SCHEMA, source="registry.csv")
    message = str(err.value)
    assert "'age'" in message and "'sbp'" in message and "column_map" in message
    assert "registry.csv" in message and "Age_years" in message


def test_missing_columns_imputed_when_asked():
    aligned, notes = align_public_table(_public(), SCHEMA, source="r", missing="impute",
                                        column_map={"Age_years": "age"})
    assert aligned["sbp"].isna().all() and len(aligned) == 4
    assert any("'sbp' is missing" in n for n in notes)


def test_bad_number_and_bad_map_name_the_problem():
    frame = _public().assign(systolic=["120", "high", "1", "2"])
    with pytest.raises(DataError, match="'sbp'.*not a number"):
        align_public_table(frame, SCHEMA, source="r", column_map={"Age_years": "age",
                                                                  "systolic": "sbp"})
    with pytest.raises(DataError, match="nope"):
        align_public_table(_public(), SCHEMA, source="r", column_map={"nope": "age"})
    with pytest.raises(DataError, match="not feature columns"):
        align_public_table(_public(), SCHEMA, source="r", column_map={"Age_years": "weight"})
