"""Numbers a spreadsheet wrote as text are refused by column and format, never by value."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from medistill.config import DataConfig
from medistill.data.number_text import number_format, numbers_as_text
from medistill.data.table import load_sensitive
from medistill.errors import DataError


@pytest.mark.parametrize(("text", "kind"), [
    ("1,234", "comma inside"), ("12,345.5", "comma inside"), ("3,5", "comma inside"),
    ("-0,25", "comma inside"), ("12%", "percent"), ("7.5 %", "percent"),
    ("<0.5", "comparison"), ("> 1000", "comparison"), ("≤3", "comparison"),
    ("120 mmHg", "unit"), ("5.4 mmol/L", "unit"), ("37.2 °C", "unit"),
])
def test_formats_are_recognised(text: str, kind: str) -> None:
    assert kind in number_format(text)


@pytest.mark.parametrize("text", ["12", "3.5", "-1e3", "4a", "stage 2", "1 (low)", "3 or more",
                                  "1,2,3", "never", "", "2014-03-02"])
def test_other_text_is_not_a_format(text: str) -> None:
    assert number_format(text) is None


def _column(cells: list[str], n: int = 200) -> pd.Series:
    return pd.Series([cells[i % len(cells)] for i in range(n)], dtype=object)


def test_a_column_counts_only_with_enough_numbers_and_distinct_values() -> None:
    rng = np.random.default_rng(0)
    measured = [f"{v:,}" for v in rng.integers(500, 5000, 200)]          # 1,234-style
    assert numbers_as_text(pd.Series(measured, dtype=object)) is not None
    likert = _column(["1 Never", "2 Rarely", "3 Sometimes", "4 Often", "5 Always"])
    assert numbers_as_text(likert) is None                                # few distinct values
    words = _column([f"ward {i}" for i in range(30)])
    assert numbers_as_text(words) is None                                 # no number first
    mixed = _column([str(i) for i in range(30)] + ["unknown"] * 10)       # 25 % plain text
    assert numbers_as_text(mixed) is None
    assert numbers_as_text(pd.Series(np.arange(50.0))) is None            # already numbers


def _table(tmp_path, extra: dict[str, list[str]]) -> DataConfig:
    rng = np.random.default_rng(1)
    n = 240
    frame = pd.DataFrame({"pid": [f"p{i}" for i in range(n)], "age": rng.integers(30, 90, n),
                          "y": rng.integers(0, 2, n)})
    for name, cells in extra.items():
        frame[name] = [cells[i % len(cells)] for i in range(n)]
    path = tmp_path / "t.csv"
    frame.to_csv(path, index=False)
    return DataConfig(source="csv", path=path, label="y", id_column="pid")


def test_every_such_column_is_refused_at_once_before_training(tmp_path) -> None:
    glucose = [f"{v:,}" for v in range(950, 1190, 7)]           # 950 … 1,182
    share = [f"{v}%" for v in range(10, 60, 3)]
    config = _table(tmp_path, {"glucose": glucose, "share": share})
    with pytest.raises(DataError) as info:
        load_sensitive(config, seed=0)
    message = str(info.value)
    assert "'glucose' with a comma inside the number" in message
    assert "first in row 10" in message                         # 1,006: the 9th cell, line 10
    assert "'share' with a percent sign" in message
    assert "data.feature_types.glucose: categorical" in message
    for value in ("1,006", "13%"):
        assert value not in message


def test_declared_categories_are_taken_as_declared(tmp_path) -> None:
    share = [f"{v}%" for v in range(10, 60, 3)]
    config = _table(tmp_path, {"share": share}).model_copy(
        update={"feature_types": {"share": "categorical"}})
    data = load_sensitive(config, seed=0)
    assert data.schema.feature("share").kind == "categorical"


def test_a_mostly_numeric_column_names_the_format_of_its_first_text_cell(tmp_path) -> None:
    lab = [str(v) for v in range(40, 80)] * 2 + ["<5"]
    config = _table(tmp_path, {"lab": lab})
    with pytest.raises(DataError, match=r"column 'lab' is numeric but row 82 .*comparison "
                                        r"sign") as info:
        load_sensitive(config, seed=0)
    assert "<5" not in str(info.value)


def test_a_spreadsheet_error_value_is_named_as_one(tmp_path) -> None:
    lab = [str(v) for v in range(40, 80)] * 2 + ["#DIV/0!"]
    config = _table(tmp_path, {"lab": lab})
    with pytest.raises(DataError, match=r"row 82 .*spreadsheet error value .*data.missing_"
                                        r"values: \['#DIV/0!'"):
        load_sensitive(config, seed=0)
    declared = config.model_copy(update={"missing_values": ("#DIV/0!",)})
    assert load_sensitive(declared, seed=0).schema.feature("lab").kind == "numeric"
