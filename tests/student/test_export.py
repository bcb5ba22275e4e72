"""ONNX export: preprocessing inside, parity with torch + scikit-learn, metadata."""

import numpy as np
import onnx
import onnxruntime as ort
import pandas as pd
import pytest
import torch

from medistill.data.schema import FeatureSpec, TableSchema
from medistill.student.export import OUTPUT_NAME, build_student_onnx, onnx_feeds
from medistill.student.model import StudentMLP
from medistill.student.preprocess import as_model_input, make_preprocessor

SCHEMA = TableSchema(
    features=(FeatureSpec("age", "numeric"), FeatureSpec("smoker", "binary"),
              FeatureSpec("sex", "categorical", ("female", "male")),
              FeatureSpec("ward", "categorical", ("A", "B", "C"))),
    label="y", classes=("0", "1"))


def _frame(n: int, rng: np.random.Generator) -> pd.DataFrame:
    return pd.DataFrame({"age": rng.uniform(18, 90, n), "smoker": rng.integers(0, 2, n).astype(float),
                         "sex": rng.choice(["female", "male"], n).astype(object),
                         "ward": rng.choice(["A", "B", "C"], n).astype(object)})


@pytest.fixture(scope="module")
def exported():
    rng = np.random.default_rng(0)
    train = _frame(500, rng)
    pre = make_preprocessor(SCHEMA).fit(as_model_input(train, SCHEMA))
    torch.manual_seed(0)
    net = StudentMLP(pre.transform(as_model_input(train.head(2), SCHEMA)).shape[1], 2, (8, 4)).eval()
    model = build_student_onnx(pre, net, SCHEMA, {"epsilon": "2.5", "delta": "1e-06",
                                                   "accountant": "pld", "medistill_version": "0.1.0"})
    return pre, net, model


def _reference(pre, net, frame: pd.DataFrame) -> np.ndarray:
    x = torch.as_tensor(pre.transform(as_model_input(frame, SCHEMA)), dtype=torch.float32)
    with torch.no_grad():
        return torch.softmax(net(x), dim=1).numpy()


def test_parity_on_random_rows_with_missing_and_unseen(exported) -> None:
    pre, net, model = exported
    rng = np.random.default_rng(1)
    frame = _frame(300, rng)
    frame.loc[::7, "age"] = np.nan
    frame.loc[::11, "smoker"] = np.nan
    frame.loc[::5, "sex"] = None
    frame.loc[::3, "ward"] = "NEVER-SEEN"
    session = ort.InferenceSession(model.SerializeToString())
    got = session.run([OUTPUT_NAME], onnx_feeds(frame, SCHEMA))[0]
    np.testing.assert_allclose(got, _reference(pre, net, frame), atol=1e-5)
    np.testing.assert_allclose(got.sum(axis=1), 1.0, atol=1e-6)


def test_inputs_are_raw_named_columns(exported) -> None:
    _, _, model = exported
    inputs = {i.name: i.type.tensor_type for i in model.graph.input}
    assert list(inputs) == ["age", "smoker", "sex", "ward"]
    assert inputs["age"].elem_type == onnx.TensorProto.FLOAT
    assert inputs["sex"].elem_type == onnx.TensorProto.STRING
    assert [o.name for o in model.graph.output] == [OUTPUT_NAME]


def test_metadata_records_privacy_and_version(exported) -> None:
    _, _, model = exported
    meta = {p.key: p.value for p in model.metadata_props}
    assert meta["epsilon"] == "2.5" and meta["delta"] == "1e-06"
    assert meta["accountant"] == "pld" and meta["medistill_version"] == "0.1.0"
    assert '"classes": ["0", "1"]' in meta["schema"]
    assert model.ir_version == 8
    assert {o.domain: o.version for o in model.opset_import}[""] == 17


def test_schema_metadata_carries_missing_value_codes(exported) -> None:
    import json
    from dataclasses import replace

    pre, net, model = exported
    plain = json.loads({p.key: p.value for p in model.metadata_props}["schema"])
    assert "missing_values" not in plain  # models without codes keep their old metadata
    coded = build_student_onnx(pre, net, replace(SCHEMA, missing_values=(".", "-99")), {})
    schema = json.loads({p.key: p.value for p in coded.metadata_props}["schema"])
    assert schema["missing_values"] == [".", "-99"]
    assert {k: v for k, v in schema.items() if k != "missing_values"} == plain


def test_17_empty_and_constant_columns_export_to_finite_probabilities() -> None:
    """Empty and constant columns stay features (docs/input_checks.md). The student's
    preprocessing fitted on transfer rows in which one column never has a value and others
    have one value (a zero spread: StandardScaler's scale is then 1, not 0) gives finite
    inputs, and the exported graph finite probabilities that match torch + scikit-learn,
    whatever later rows hold in those columns."""
    schema = TableSchema(
        features=(FeatureSpec("age", "numeric"), FeatureSpec("spare", "numeric"),
                  FeatureSpec("unit", "numeric"), FeatureSpec("flag", "binary"),
                  FeatureSpec("site", "categorical", ("north",))),
        label="y", classes=("0", "1"))
    rng = np.random.default_rng(2)
    train = pd.DataFrame({"age": rng.uniform(18, 90, 400), "spare": np.nan, "unit": 7.5,
                          "flag": 0.0, "site": "north"})
    pre = make_preprocessor(schema).fit(as_model_input(train, schema))
    z = pre.transform(as_model_input(train, schema))
    assert np.isfinite(z).all() and np.allclose(z[:, 1:4], 0.0)
    torch.manual_seed(0)
    net = StudentMLP(z.shape[1], 2, (8, 4)).eval()
    model = build_student_onnx(pre, net, schema, {"epsilon": "2.5", "delta": "1e-06",
                                                  "pipeline_sha256": "abc",
                                                  "medistill_version": "0.1.0"})
    later = pd.DataFrame({"age": [40.0, np.nan, 70.0], "spare": [np.nan, 3.0, 1e6],
                          "unit": [7.5, 9.0, np.nan], "flag": [0.0, 1.0, np.nan],
                          "site": ["north", "south", None]})
    got = ort.InferenceSession(model.SerializeToString()).run(
        [OUTPUT_NAME], onnx_feeds(later, schema))[0]
    assert np.isfinite(got).all()
    x = torch.as_tensor(pre.transform(as_model_input(later, schema)), dtype=torch.float32)
    with torch.no_grad():
        np.testing.assert_allclose(got, torch.softmax(net(x), dim=1).numpy(), atol=1e-5)
