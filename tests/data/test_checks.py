"""#16.4: input checks before any training (medistill/data/checks.py through load_sensitive)."""

from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from medistill.config import DataConfig
from medistill.data.checks import (
    MAX_CLASSES,
    MIN_PATIENTS,
    check_headers,
    holds_dates,
    leakage_notes,
    normalise_label_spellings,
    uninformative,
)
from medistill.data.table import load_sensitive
from medistill.errors import DataError

N = 300


def _frame(n: int = N, seed: int = 0) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    return pd.DataFrame({"pid": [f"P{i}" for i in range(n)], "age": rng.normal(60, 10, n).round(1),
                         "sbp": rng.normal(130, 15, n).round(), "ward": rng.choice(["A", "B"], n),
                         "y": rng.integers(0, 2, n)})


def _load(tmp_path: Path, frame: pd.DataFrame | str, **kw):
    path = tmp_path / "t.csv"
    if isinstance(frame, str):
        path.write_text(frame)
    else:
        frame.to_csv(path, index=False)
    config = {"source": "csv", "path": path, "label": "y", "id_column": "pid", **kw}
    return load_sensitive(DataConfig(**config), seed=0)


def _csv_with_header(header: str, n: int = N) -> str:
    rows = "".join(f"P{i},{50 + i % 30},{60 + i % 7},{i % 2}\n" for i in range(n))
    return header + "\n" + rows


def test_16_4_clean_table_loads_without_notes(tmp_path: Path) -> None:
    data = _load(tmp_path, _frame())
    assert data.schema.feature_names == ["age", "sbp", "ward"] and data.notes == ()


def test_16_4_duplicate_headers(tmp_path: Path) -> None:
    with pytest.raises(DataError, match=r"t.csv': column 'age' is repeated"):
        _load(tmp_path, _csv_with_header("pid,age,age,y"))


@pytest.mark.parametrize("header", ["pid,Age,age,y", "pid,age ,age,y", "pid,heart rate,heart  rate,y"])
def test_16_4_headers_differing_only_in_case_or_spaces(tmp_path: Path, header: str) -> None:
    with pytest.raises(DataError, match="differ only in upper/lower case or spaces"):
        _load(tmp_path, _csv_with_header(header))


def test_16_4_check_headers_accepts_distinct_names() -> None:
    check_headers(["", "age", "age_1", "bp.sys", "HbA1c (%)"], source="t")
    with pytest.raises(DataError, match="columns 1, 3 have no name"):
        check_headers(["", "age", " "], source="t")


@pytest.mark.parametrize("bad", [np.inf, -np.inf, 1e308, -2e16])
def test_16_4_inf_and_huge_values(tmp_path: Path, bad: float) -> None:
    frame = _frame()
    frame.loc[41, "sbp"] = bad
    with pytest.raises(DataError, match=r"column 'sbp' holds 1 infinite or huge number.*row 42 "
                                        r"\(line 43") as info:
        _load(tmp_path, frame)
    assert "e+308" not in str(info.value) and "inf," not in str(info.value)


def test_16_4_continuous_label(tmp_path: Path) -> None:
    frame = _frame().assign(y=lambda f: f["age"] / 7)
    with pytest.raises(DataError, match="label column 'y' holds continuous numbers"):
        _load(tmp_path, frame)


def test_16_4_too_many_label_classes(tmp_path: Path) -> None:
    frame = _frame().assign(y=lambda f: np.arange(len(f)) % (MAX_CLASSES + 5))
    with pytest.raises(DataError, match=f"25 distinct values; at most {MAX_CLASSES} classes"):
        _load(tmp_path, frame)


def test_16_4_label_spellings_merged_with_note(tmp_path: Path) -> None:
    frame = _frame()
    frame["y"] = np.where(frame["y"] == 1, "yes", "no").astype(object)
    frame.loc[::3, "y"] = frame.loc[::3, "y"].str.capitalize() + " "
    data = _load(tmp_path, frame)
    assert data.schema.classes == ("no", "yes")
    [note] = data.notes
    assert note.kind == "label_spelling" and note.column == "y"
    assert "Yes" not in note.message and "yes" not in note.message


def test_16_4_label_spellings_left_alone_when_unambiguous() -> None:
    values, notes = normalise_label_spellings(pd.Series(["Yes", "No ", None]), label="y")
    assert values.tolist() == ["Yes", "No", None] and notes == []


def test_16_4_blank_label_cells_are_missing(tmp_path: Path) -> None:
    """A label cell of spaces only (an export's blank) is a missing label, refused with its
    line, not a class of its own named ''."""
    values, _ = normalise_label_spellings(pd.Series(["Yes", "   ", "No"]), label="y")
    assert values[0] == "Yes" and pd.isna(values[1]) and values[2] == "No"
    frame = _frame().astype({"y": object})
    frame.loc[3, "y"] = "   "
    with pytest.raises(DataError, match="the label column 'y' is empty in row 5"):
        _load(tmp_path, frame)


def test_date_columns_dropped_with_a_note(tmp_path: Path) -> None:
    """ISO dates in a CSV and a Parquet datetime column are not features (each day would be
    a rare category of its own); the note names the column, never a date; declaring the
    column keeps it."""
    frame = _frame()
    frame["visit"] = pd.Timestamp("2014-01-01") + pd.to_timedelta(np.arange(N) % 300, unit="D")
    frame["born"] = [f"{1 + i % 28}/{1 + i % 12}/19{40 + i % 50}" for i in range(N)]
    data = _load(tmp_path, frame)
    assert {f.name for f in data.schema.features} == {"age", "sbp", "ward"}
    notes = {n.column: n for n in data.notes if n.kind == "dropped_date"}
    assert set(notes) == {"visit", "born"}
    assert "2014" not in notes["visit"].message and "data.feature_types.visit" in notes["visit"].message
    parquet = tmp_path / "t.parquet"
    frame.to_parquet(parquet)
    data = load_sensitive(DataConfig(source="parquet", path=parquet, label="y", id_column="pid"),
                          seed=0)
    assert {n.column for n in data.notes if n.kind == "dropped_date"} == {"visit", "born"}
    frame["clinic_day"] = [f"2014-01-0{1 + i % 5}" for i in range(N)]
    kept = _load(tmp_path, frame, feature_types={"clinic_day": "categorical"})
    assert "clinic_day" in {f.name for f in kept.schema.features}
    assert "born" not in {f.name for f in kept.schema.features}


def test_holds_dates_needs_most_cells_to_be_dates() -> None:
    assert holds_dates(pd.Series(["2014-01-02", "2014-03-04 10:22:01", None, " "]))
    assert not holds_dates(pd.Series(["2014-01-02"] * 9 + ["ward 3"] * 2))
    assert not holds_dates(pd.Series([20140102, 20140103]))
    assert not holds_dates(pd.Series(["1-2", "3-4"]))


def test_16_4_too_few_rows(tmp_path: Path) -> None:
    with pytest.raises(DataError, match=f"30 patients .* too few; medistill needs at least "
                                        f"{MIN_PATIENTS}"):
        _load(tmp_path, _frame(30))


def test_16_4_tiny_class_refused(tmp_path: Path) -> None:
    frame = _frame().assign(y=0)
    frame.loc[:4, "y"] = 1
    with pytest.raises(DataError, match="class\\(es\\) '1' of 'y' have fewer than 10 patients"):
        _load(tmp_path, frame)


def test_one_patients_many_records_never_make_a_class(tmp_path: Path) -> None:
    """A label value held by one patient's twelve records is still one patient: refused, so
    no single patient decides whether a class exists (privacy channel 21)."""
    frame = _frame().assign(y="no")
    frame.loc[:19, "y"] = "yes"
    extra = pd.concat([frame.iloc[[20]]] * 12, ignore_index=True).assign(y="transferred")
    with pytest.raises(DataError, match="'transferred' of 'y' have fewer than 10 patients"):
        _load(tmp_path, pd.concat([frame, extra], ignore_index=True))


def test_16_4_free_text_declared_categorical(tmp_path: Path) -> None:
    frame = _frame()
    frame["note"] = [f"seen on ward, feeling {i} better" for i in range(N)]
    with pytest.raises(DataError, match="column 'note' is declared categorical but looks like "
                                        "free text") as info:
        _load(tmp_path, frame, feature_types={"note": "categorical"})
    assert "feeling" not in str(info.value)


def test_16_4_free_text_inferred_categorical(tmp_path: Path) -> None:
    frame = _frame()
    frame["comment"] = [f"ok {i}" for i in range(N)]
    with pytest.raises(DataError, match="column 'comment' is not numeric but looks like free "
                                        "text"):
        _load(tmp_path, frame, features=("age", "comment"))


def test_17_empty_and_constant_columns_stay_features_with_a_note(tmp_path: Path) -> None:
    frame = _frame().assign(empty=np.nan, site="north", flag=1.0, memo=" ")
    frame.loc[::2, "flag"] = np.nan     # one value plus missing cells: constant once imputed
    data = _load(tmp_path, frame)
    assert data.schema.feature_names == ["age", "sbp", "ward", "empty", "site", "flag", "memo"]
    kinds = {n.column: n.kind for n in data.notes}
    assert kinds == {"empty": "kept_empty", "site": "kept_constant", "flag": "kept_constant",
                     "memo": "kept_empty"}
    for note in data.notes:
        assert "kept as a feature" in note.message and "north" not in note.message
        assert "data.features" in note.message and "data.identifiers" in note.message
    assert data.features["memo"].isna().all()      # cells of spaces are missing, not ''
    assert not any("dropped" in c for c in data.caveats)


def test_17_the_note_of_a_listed_column_says_how_to_unlist_it(tmp_path: Path) -> None:
    frame = _frame().assign(empty=np.nan, site="north")
    data = _load(tmp_path, frame, features=("age", "empty"))
    assert data.schema.feature_names == ["age", "empty"]
    (note,) = data.notes
    assert note.column == "empty" and "remove it from data.features" in note.message
    left_out = _load(tmp_path, frame, features=("age", "ward"))
    assert left_out.schema.feature_names == ["age", "ward"] and left_out.notes == ()


def test_17_uninformative() -> None:
    assert uninformative(pd.Series([" ", None, ""], dtype=object)) == "empty"
    assert uninformative(pd.Series([np.nan, np.nan])) == "empty"
    assert uninformative(pd.Series([2.0, 2.0, np.nan])) == "constant"
    assert uninformative(pd.Series(["a ", "a", None], dtype=object)) == "constant"
    assert uninformative(pd.Series([1.0, 2.0])) is None


def test_16_4_label_leakage_warning(tmp_path: Path) -> None:
    frame = _frame()
    frame["discharge_code"] = np.where(frame["y"] == 1, "D1", "D0")
    frame["days_to_event"] = np.where(frame["y"] == 1, frame["age"] / 100, np.nan)
    data = _load(tmp_path, frame)
    leaks = [n for n in data.notes if n.kind == "label_leakage"]
    assert {n.column for n in leaks} == {"discharge_code", "days_to_event"}
    assert all(n.severity == "warning" and "predicts the label 'y' perfectly" in n.message
               for n in leaks)


def test_16_4_leakage_by_threshold_and_not_on_honest_columns() -> None:
    rng = np.random.default_rng(1)
    y = rng.integers(0, 3, 400)
    frame = pd.DataFrame({"score": y * 10 + rng.uniform(0, 9, 400),   # three disjoint ranges
                          "overlap": y * 10 + rng.uniform(0, 15, 400),
                          "ward": rng.choice(["A", "B"], 400)})
    notes = leakage_notes(frame, y, {"ward": "categorical"}, label="y")
    assert [n.column for n in notes] == ["score"]
