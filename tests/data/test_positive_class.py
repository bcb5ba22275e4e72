"""The positive class of a binary label: declared, read from the class names, or sorted with
a warning — and every output follows it."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from medistill.config import DataConfig
from medistill.data.positive_class import order_binary_classes
from medistill.data.schema import encode_labels
from medistill.data.table import load_sensitive
from medistill.errors import DataError


def _encode(values: list, positive: str | None = None):
    return encode_labels(pd.Series(values, dtype=object), source="t.csv", label="outcome",
                         positive=positive)


@pytest.mark.parametrize(("values", "positive"), [
    (["survived", "died", "survived"], "died"), (["Normal", "Abnormal"], "Abnormal"),
    (["control", "case"], "case"), (["benign", "malignant"], "malignant"),
    (["Alive", "Dead"], "Dead"), (["Negative", "Positive"], "Positive"),
])
def test_the_outcome_is_read_from_the_class_names(values: list, positive: str) -> None:
    codes, classes, notes = _encode(values)
    assert classes[1] == positive
    assert [classes[c] for c in codes] == values          # every row keeps its class
    assert notes[0].kind == "positive_class" and notes[0].severity == "info"
    assert f"probability of '{positive}'" in notes[0].message


@pytest.mark.parametrize(("values", "positive"), [
    ([0, 1, 1], "1"), ([1, 2, 2], "2"), ([True, False], "True"), (["no", "yes"], "yes"),
    (["Y", "N"], "Y")])
def test_plain_labels_keep_the_sorted_order_without_a_note(values: list, positive: str) -> None:
    _, classes, notes = _encode(values)
    assert classes[1] == positive and notes == []


def test_names_that_say_nothing_keep_the_sorted_order_with_a_warning() -> None:
    _, classes, notes = _encode(["ward A", "ward B", "ward A"])
    assert classes == ("ward A", "ward B")
    assert notes[0].severity == "warning" and "data.positive_class" in notes[0].message


def test_a_declared_class_wins_whatever_its_name() -> None:
    codes, classes, notes = _encode(["died", "survived", "died"], positive="survived")
    assert classes == ("died", "survived") and codes.tolist() == [0, 1, 0] and notes == []
    _, classes, _ = _encode(["ward A", "ward B"], positive=" Ward a ")    # case and spaces
    assert classes[1] == "ward A"
    _, classes, _ = _encode(["yes", "no"], positive="false")             # YAML's `no`
    assert classes[1] == "no"
    with pytest.raises(DataError, match="does not have; its classes are 'died', 'survived'"):
        _encode(["died", "survived"], positive="dead")
    with pytest.raises(DataError, match="two classes; 'outcome' has 3"):
        _encode(["a", "b", "c"], positive="a")


def test_multi_class_labels_are_left_alone() -> None:
    codes = np.array([0, 1, 2])
    assert order_binary_classes(codes, ("a", "b", "c"), declared=None, source="s", label="l",
                                numeric=False)[1] == ("a", "b", "c")


def test_the_config_keeps_yaml_scalars_as_class_names(tmp_path) -> None:
    base = {"source": "csv", "path": tmp_path / "t.csv", "label": "y"}
    assert DataConfig(**base, positive_class=1).positive_class == "1"
    assert DataConfig(**base, positive_class=True).positive_class == "true"
    assert DataConfig(**base).positive_class is None


def test_the_schema_and_notes_of_a_run_follow_the_positive_class(tmp_path) -> None:
    rng = np.random.default_rng(4)
    n = 240
    path = tmp_path / "t.csv"
    pd.DataFrame({"pid": [f"p{i}" for i in range(n)], "age": rng.integers(30, 90, n),
                  "status": rng.choice(["Survived", "Died"], n)}).to_csv(path, index=False)
    config = DataConfig(source="csv", path=path, label="status", id_column="pid")
    data = load_sensitive(config, seed=0)
    assert data.schema.classes == ("Survived", "Died")
    frame = pd.read_csv(path)
    assert (data.labels == (frame["status"] == "Died").to_numpy()).all()
    assert any(n.kind == "positive_class" for n in data.notes)
