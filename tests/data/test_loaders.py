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


def test_non_utf8_csv_names_the_line_and_the_encoding(tmp_path: Path) -> None:
    """A Windows-1252 export is refused naming the first line that is not UTF-8 (not a
    byte offset of pandas' read buffer), the likely encoding and the conversion; a UTF-16
    export is recognised by its byte-order mark; neither quotes a cell."""
    path = tmp_path / "t.csv"
    rows = "".join(f"{i},{60 + i % 20},{i % 2}\n" for i in range(3000))
    path.write_bytes(("site,age,y\n" + rows + "Hôpital Nord,61,1\n").encode("cp1252"))
    with pytest.raises(DataError, match=r"is not UTF-8 text: line 3002 .*Windows-1252") as info:
        load_table(path)
    assert "Hôpital" not in str(info.value)
    assert "iconv -f CP1252 -t UTF-8" in str(info.value)
    assert "encoding='cp1252'" in str(info.value)
    path.write_bytes("site,age,y\nHôpital,61,1\n".encode("utf-16"))
    with pytest.raises(DataError, match="is UTF-16 text"):
        load_table(path)


def test_first_foreign_line_finds_no_line_in_utf8(tmp_path: Path) -> None:
    from medistill.data.text_encoding import first_foreign_line

    path = tmp_path / "t.csv"
    path.write_text("a,b\nHôpital,2\n", encoding="utf-8")
    assert first_foreign_line(path) is None
    path.write_bytes(b"a,b\nx,2\n\x81\x8d,3\n")       # not UTF-8, not Windows-1252 either
    assert first_foreign_line(path) == 3
    with pytest.raises(DataError, match="line 3 ") as info:
        load_table(path)
    assert "Windows-1252" not in str(info.value) and "iconv -f LATIN1" in str(info.value)


def test_a_comma_at_the_end_of_each_line_is_read_as_meant(tmp_path: Path) -> None:
    """pandas turns the first columns into an index when the data lines have more fields
    than the header, shifting every value one column left; here they stay in place."""
    path = tmp_path / "t.csv"
    path.write_text("pid,age,y\np1,61,1,\np2,70,0,\n")
    frame = load_table(path)
    assert list(frame.columns) == ["pid", "age", "y"]
    assert frame["pid"].tolist() == ["p1", "p2"] and frame["y"].tolist() == [1, 0]


@pytest.mark.parametrize(("text", "message"), [
    ("pid,age,y\np1,61,1\np2,70,0,9\n", "line 3: expected 3 fields like the header, found 4"),
    ("pid,age,y\np1,61,1,5\np2,70,0\n", "line 2 has 4 fields but the header line has 3"),
    ("Extract of 2024-05-01\npid,age,y\np1,61,1\n", "line 2 has 3 fields .* has 1;.*title"),
    ("sep=,\npid,age,y\np1,61,1\n", "Excel's 'sep=' instruction"),
])
def test_lines_longer_than_the_header_are_refused_by_line(tmp_path: Path, text: str,
                                                           message: str) -> None:
    """Real extra fields, a title line or Excel's ``sep=`` line above the header are refused
    naming the line, never read shifted."""
    path = tmp_path / "t.csv"
    path.write_text(text)
    with pytest.raises(DataError, match=message):
        load_table(path)


def test_empty_unnamed_columns_of_a_spreadsheet_are_dropped(tmp_path: Path) -> None:
    """Each line ending in ``,,`` (a spreadsheet's empty columns) reads as the named columns;
    an unnamed column with values is still refused."""
    path = tmp_path / "t.csv"
    path.write_text("pid,age,y,,\np1,61,1,,\np2,70,0,,\n")
    assert list(load_table(path).columns) == ["pid", "age", "y"]
    path.write_text("pid,age,y,,\np1,61,1,3,\np2,70,0,,4\n")
    with pytest.raises(DataError, match="columns 4, 5 have no name"):
        load_table(path)
