"""The content hash embedded in a model's own metadata (#16.3)."""

from __future__ import annotations

import onnx
from onnx import TensorProto, helper

from medistill.integrity import CONTENT_KEY, PLACEHOLDER, matches_embedded, seal


def _model() -> onnx.ModelProto:
    graph = helper.make_graph([helper.make_node("Identity", ["x"], ["y"])], "g",
                              [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1])],
                              [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1])])
    model = helper.make_model(graph)
    helper.set_model_props(model, {"schema": "{}"})
    return model


def test_16_3_seal_and_check() -> None:
    data = seal(_model())
    claimed = {p.key: p.value for p in onnx.load_from_string(data).metadata_props}[CONTENT_KEY]
    assert claimed != PLACEHOLDER and matches_embedded(data, claimed)
    assert seal(_model()) == data  # deterministic
    flipped = bytearray(data)
    flipped[10] ^= 0x01
    assert not matches_embedded(bytes(flipped), claimed)
    assert not matches_embedded(data, "f" * 64) and not matches_embedded(data, "short")
