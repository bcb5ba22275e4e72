from pathlib import Path

import pandas as pd
import pytest

from medistill.data.loaders import load_table
from medistill.errors import DataError


def test_csv_and_parquet_load_the_same(tmp_path: Path) -> None:
    frame = pd.DataFrame({"a": [1.0, 2.0, None], "b": ["x", "y", "z"]})
    frame.to_csv(tmp_path / "t.csv", index=False)
    frame.to_parquet(tmp_path / "t.parquet", index=False)
    csv, pq = load_table(tmp_path / "t.csv"), load_table(tmp_path / "t.parquet")
    assert list(csv.columns) == list(pq.columns) == ["a", "b"]
    assert csv["a"].isna().sum() == pq["a"].isna().sum() == 1


def test_missing_file(tmp_path: Path) -> None:
    with pytest.raises(DataError, match="does not exist"):
        load_table(tmp_path / "missing.csv")


def test_empty_file(tmp_path: Path) -> None:
    (tmp_path / "e.csv").write_text("")
    with pytest.raises(DataError, match="empty"):
        load_table(tmp_path / "e.csv")


def test_header_only(tmp_path: Path) -> None:
    (tmp_path / "h.csv").write_text("a,b,c\n")
    with pytest.raises(DataError, match="no rows"):
        load_table(tmp_path / "h.csv")


def test_ragged_rows_name_the_line(tmp_path: Path) -> None:
    (tmp_path / "r.csv").write_text("a,b\n1,2\n3,4\n5,6,7\n")
    with pytest.raises(DataError, match=r"line 4: expected 2 fields.*found 3"):
        load_table(tmp_path / "r.csv")


def test_corrupt_parquet(tmp_path: Path) -> None:
    (tmp_path / "c.parquet").write_bytes(b"PAR1 not really")
    with pytest.raises(DataError, match="not a readable Parquet"):
        load_table(tmp_path / "c.parquet")


def test_unknown_format(tmp_path: Path) -> None:
    (tmp_path / "t.xlsx").write_text("x")
    with pytest.raises(DataError, match="unknown table format"):
        load_table(tmp_path / "t.xlsx")


def test_missing_value_codes_read_as_missing_in_csv_and_parquet(tmp_path: Path) -> None:
    """A SAS/Stata export's '.' (CSV) and a '-99' code (Parquet) are the same missing cells."""
    (tmp_path / "t.csv").write_text("age,ward,y\n50,A,0\n.,B,1\n61, . ,0\n-99,A,1\n")
    pd.DataFrame({"age": [50, -99, 61, -99], "ward": ["A", "B", "-99", "A"],
                  "y": [0, 1, 0, 1]}).to_parquet(tmp_path / "t.parquet", index=False)
    assert not pd.api.types.is_numeric_dtype(load_table(tmp_path / "t.csv")["age"])  # text
    codes = (".", "-99")
    csv = load_table(tmp_path / "t.csv", missing_values=codes)
    pq = load_table(tmp_path / "t.parquet", missing_values=codes)
    for frame in (csv, pq):
        assert frame["age"].isna().tolist() == [False, True, False, True]
        assert frame["ward"].isna().tolist() == [False, False, True, False]
        assert frame["y"].tolist() == [0, 1, 0, 1]  # codes match cells, not parts of them
    pd.testing.assert_frame_equal(csv.astype({"ward": object}), pq.astype({"ward": object}),
                                  check_dtype=False)


@pytest.mark.parametrize(("separator", "name"), [(";", "semicolons"), ("\t", "tabs"),
                                                 ("|", "vertical bars")])
def test_other_separators_refused_by_name(tmp_path: Path, separator: str, name: str) -> None:
    """A spreadsheet's 'CSV' in a comma-decimal locale (``age;sbp`` / ``61,5;130``) is
    refused before reading, naming the separator, never a value; the deployment's reader
    refuses it the same way."""
    from medistill.deploy.inputs import open_table

    path = tmp_path / "t.csv"
    path.write_text(f"age{separator}sbp{separator}y\n61,5{separator}130{separator}1\n"
                    f"70,25{separator}141{separator}0\n")
    with pytest.raises(DataError, match=f"separated by {name}.*not commas \\(3 columns") as info:
        load_table(path)
    assert "61" not in str(info.value) and f"sep={separator!r}, decimal=','" in str(info.value)
    with pytest.raises(DataError, match=f"separated by {name}.*not commas"):
        open_table(path)


def test_one_column_and_commas_in_names_are_not_refused(tmp_path: Path) -> None:
    path = tmp_path / "t.csv"
    path.write_text("score\n1\n2\n")
    assert list(load_table(path).columns) == ["score"]
    path.write_text('"a;b",c\n1,2\n')
    assert list(load_table(path).columns) == ["a;b", "c"]
