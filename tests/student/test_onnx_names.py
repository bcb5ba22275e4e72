"""#16.5: clinical column names (dots, brackets, percent signs, spaces) survive ONNX export."""

import numpy as np
import onnx
import onnxruntime as ort
import pytest
from onnx import TensorProto, helper

from medistill.errors import DataError
from medistill.student.onnx_names import rename_inputs


def _graph() -> onnx.ModelProto:
    """a + b -> 'x' (an internal value), then x * a -> 'out'."""
    inputs = [helper.make_tensor_value_info(n, TensorProto.FLOAT, [None, 1]) for n in ("a", "b")]
    nodes = [helper.make_node("Add", ["a", "b"], ["x"]), helper.make_node("Mul", ["x", "a"], ["out"])]
    output = helper.make_tensor_value_info("out", TensorProto.FLOAT, [None, 1])
    return helper.make_model(helper.make_graph(nodes, "g", inputs, [output]),
                             opset_imports=[helper.make_opsetid("", 17)])


def _run(model: onnx.ModelProto, feeds: dict[str, float]) -> float:
    onnx.checker.check_model(model, full_check=True)
    session = ort.InferenceSession(model.SerializeToString(), providers=["CPUExecutionProvider"])
    return float(session.run(["out"], {k: np.array([[v]], np.float32)
                                        for k, v in feeds.items()})[0][0, 0])


def test_16_5_rename_to_clinical_names() -> None:
    model = rename_inputs(_graph(), {"a": "HbA1c (%)", "b": "bp.sys [mmHg]"})
    assert [i.name for i in model.graph.input] == ["HbA1c (%)", "bp.sys [mmHg]"]
    assert _run(model, {"HbA1c (%)": 2.0, "bp.sys [mmHg]": 3.0}) == 10.0


def test_16_5_wanted_name_of_an_internal_value_is_moved_aside() -> None:
    model = rename_inputs(_graph(), {"a": "x"})
    assert _run(model, {"x": 2.0, "b": 3.0}) == 10.0


def test_16_5_inputs_may_swap_names() -> None:
    model = rename_inputs(_graph(), {"a": "b", "b": "a"})
    assert _run(model, {"b": 2.0, "a": 3.0}) == 10.0


def test_16_5_output_name_refused() -> None:
    with pytest.raises(DataError, match="cannot be named 'out'"):
        rename_inputs(_graph(), {"a": "out"})
