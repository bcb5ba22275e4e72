"""The door checks on their own: line bookkeeping, number parsing, JSON rows."""

from __future__ import annotations

import numpy as np
import pyarrow as pa
import pytest
from hypothesis import given
from hypothesis import strategies as st

from medistill.deploy.inputs import (
    RawChunk,
    RowProblem,
    _line_numbers,
    check_columns,
    missing_tokens,
    prepare,
    rows_chunk,
)
from medistill.deploy.model import Feature, ModelSchema
from medistill.errors import DataError

SCHEMA = ModelSchema("y", ("0", "1"), (Feature("age", "numeric"), Feature("smoker", "binary"),
                                       Feature("ward", "categorical", ("A", "B"))))


@given(st.sets(st.integers(2, 60), max_size=20), st.integers(0, 30), st.integers(0, 30))
def test_line_numbers_skip_dropped_lines(skipped, parsed, n) -> None:
    skipped = sorted(skipped)
    data_lines = [line for line in range(2, 200) if line not in set(skipped)]
    got = _line_numbers(parsed, n, skipped).tolist()
    assert got == data_lines[parsed:parsed + n]


def _chunk(**columns) -> RawChunk:
    n = len(next(iter(columns.values())))
    return RawChunk({k: pa.array(v) for k, v in columns.items()}, np.arange(n) + 2)


def test_numbers_booleans_blanks_and_junk() -> None:
    chunk = _chunk(age=[" 50 ", "1e3", "", None, "abc", "1e999", "NaN", "-.5"],
                   smoker=["true", "FALSE", "1", "0", None, "1", "0", "x"],
                   ward=["A", "B", "C", None, "", "A", "A", "B"])
    prepared = prepare(chunk, SCHEMA, key_column=None, source="t", unit="line")
    assert [str(p) for p in prepared.problems] == [
        "line 6, column 'age': not a number", "line 7, column 'age': not a finite number",
        "line 9, column 'smoker': not a number"]
    assert prepared.valid.tolist() == [True, True, True, True, False, False, True, False]
    np.testing.assert_array_equal(prepared.feeds["age"].ravel(),
                                  np.array([50, 1000, np.nan, np.nan, np.nan], np.float32))
    np.testing.assert_array_equal(prepared.feeds["smoker"].ravel(), [1, 0, 1, 0, 0])
    assert prepared.feeds["ward"].ravel().tolist() == ["A", "B", "C", "", "A"]
    assert prepared.feeds["age"].shape == (5, 1) and prepared.feeds["age"].dtype == np.float32
    assert prepared.unseen == {"ward": 1}


def test_typed_columns() -> None:
    chunk = RawChunk({"age": pa.array([1, None, 3], pa.int64()),
                      "smoker": pa.array([True, False, None]),
                      "ward": pa.array(["A", "B", "A"]).dictionary_encode()}, np.arange(1, 4))
    prepared = prepare(chunk, SCHEMA, key_column=None, source="t", unit="row")
    assert prepared.n_valid == 3 and not prepared.problems
    np.testing.assert_array_equal(prepared.feeds["smoker"].ravel(), [1, 0, np.nan])
    chunk.columns["age"] = pa.array([[1], [2], [3]])
    with pytest.raises(DataError, match="column 'age' has type list"):
        prepare(chunk, SCHEMA, key_column=None, source="t", unit="row")


def test_padded_cells_are_read_as_training_read_them() -> None:
    """Training trims the spaces around a category and a number (an export's fixed-width
    "No "): scoring must see the same values, not an unknown category."""
    padded = RawChunk({"age": pa.array([" 50 ", "61"]), "smoker": pa.array(["1 ", " 0"]),
                       "ward": pa.array(["A  ", " B"])}, np.arange(1, 3))
    plain = RawChunk({"age": pa.array(["50", "61"]), "smoker": pa.array(["1", "0"]),
                      "ward": pa.array(["A", "B"])}, np.arange(1, 3))
    got = prepare(padded, SCHEMA, key_column=None, source="t", unit="row")
    want = prepare(plain, SCHEMA, key_column=None, source="t", unit="row")
    assert not got.problems and got.n_valid == 2
    for name in ("age", "smoker", "ward"):
        np.testing.assert_array_equal(got.feeds[name], want.feeds[name])


def test_json_rows() -> None:
    rows = [{"age": 50, "smoker": True, "ward": "A", "id": 7},
            {"age": "62.5", "ward": None},
            {"age": float("nan"), "smoker": False, "ward": "Z"}]
    chunk = rows_chunk(rows, ["age", "smoker", "ward", "id"])
    prepared = prepare(chunk, SCHEMA, key_column="id", source="rows", unit="rows[]")
    assert prepared.n_valid == 3
    np.testing.assert_array_equal(prepared.feeds["age"].ravel(), [50, 62.5, np.nan])
    np.testing.assert_array_equal(prepared.feeds["smoker"].ravel(), [1, np.nan, 0])
    assert prepared.keys.tolist() == ["7", None, None]
    with pytest.raises(DataError, match=r"rows\[1\]\.age is a list"):
        rows_chunk([{"age": 1}, {"age": [1]}], ["age"])
    bad = prepare(rows_chunk([{"age": "x", "smoker": 1, "ward": "A"}], ["age", "smoker", "ward"]),
                  SCHEMA, key_column=None, source="rows", unit="rows[]")
    assert str(bad.problems[0]) == "rows[0], column 'age': not a number"


def test_missing_columns_listed_together() -> None:
    with pytest.raises(DataError, match=r"missing 2 column\(s\) the model needs: 'age', 'ward'"):
        check_columns(["smoker", "other"], SCHEMA, "in.csv")


def test_problem_rendering() -> None:
    assert str(RowProblem(3, None, "bad", "line", "Patient.ndjson")) == \
        "Patient.ndjson line 3: bad"
    assert RowProblem(3, "age", "bad", "row").to_dict() == \
        {"file": None, "row": 3, "column": "age", "reason": "bad"}


CODED = ModelSchema(SCHEMA.label, SCHEMA.classes, SCHEMA.features, missing_values=(".", "-99"))


def test_schema_metadata_missing_values() -> None:
    old = '{"label": "y", "classes": ["0", "1"], "features": [{"name": "age", "kind": "numeric"}]}'
    assert ModelSchema.from_metadata(old, source="m").missing_values == ()  # older models
    coded = old[:-1] + ', "missing_values": [".", "-99"]}'
    assert ModelSchema.from_metadata(coded, source="m").missing_values == (".", "-99")
    with pytest.raises(DataError, match="'schema' metadata is not valid"):
        ModelSchema.from_metadata(old[:-1] + ', "missing_values": "."}', source="m")


def test_declared_codes_are_missing_only_for_their_model() -> None:
    chunk = _chunk(age=["50", ".", " . ", "-99", " -99.0", "7"],
                   smoker=["1", "0", ".", "-99", "1", "0"],
                   ward=["A", ".", "B", " -99", "C", "A"])
    coded = prepare(chunk, CODED, key_column=None, source="t", unit="line")
    assert coded.n_valid == 6 and not coded.problems
    np.testing.assert_array_equal(coded.feeds["age"].ravel(),
                                  np.array([50, np.nan, np.nan, np.nan, np.nan, 7], np.float32))
    np.testing.assert_array_equal(coded.feeds["smoker"].ravel(), [1, 0, np.nan, np.nan, 1, 0])
    assert coded.feeds["ward"].ravel().tolist() == ["A", "", "B", "", "C", "A"]
    assert coded.unseen == {"ward": 1}  # 'C' only: the codes are missing, not unseen
    plain = prepare(chunk, SCHEMA, key_column=None, source="t", unit="line")
    assert [str(p) for p in plain.problems] == [
        "line 3, column 'age': not a number", "line 4, column 'age': not a number",
        "line 4, column 'smoker': not a number"]
    np.testing.assert_array_equal(plain.feeds["age"].ravel(), [50, -99, -99, 7])


def test_declared_codes_in_typed_columns_and_json_rows() -> None:
    typed = RawChunk({"age": pa.array([-99, 40], pa.int64()), "smoker": pa.array([-99.0, 1.0]),
                      "ward": pa.array([".", "A"]).dictionary_encode()}, np.arange(1, 3))
    prepared = prepare(typed, CODED, key_column=None, source="t", unit="row")
    np.testing.assert_array_equal(prepared.feeds["age"].ravel(), [np.nan, 40])
    np.testing.assert_array_equal(prepared.feeds["smoker"].ravel(), [np.nan, 1])
    assert prepared.feeds["ward"].ravel().tolist() == ["", "A"] and not prepared.unseen
    rows = [{"age": ".", "smoker": -99, "ward": "."}, {"age": 61, "smoker": 0, "ward": "B"}]
    chunk = rows_chunk(rows, ["age", "smoker", "ward"], missing_tokens(CODED))
    prepared = prepare(chunk, CODED, key_column=None, source="rows", unit="rows[]")
    assert prepared.n_valid == 2 and not prepared.unseen
    np.testing.assert_array_equal(prepared.feeds["age"].ravel(), [np.nan, 61])
    np.testing.assert_array_equal(prepared.feeds["smoker"].ravel(), [np.nan, 0])
    refused = prepare(rows_chunk(rows, ["age", "smoker", "ward"]), SCHEMA, key_column=None,
                      source="rows", unit="rows[]")
    assert str(refused.problems[0]) == "rows[0], column 'age': not a number"
