"""Export the student to ONNX with its preprocessing inside: raw named columns in
(``[N, 1]`` float32 for numbers, string for categories), ``probabilities`` out."""

from __future__ import annotations

import io
import json
import warnings
from pathlib import Path

import numpy as np
import onnx
import pandas as pd
import torch
from onnx import compose, version_converter
from sklearn.compose import ColumnTransformer
from skl2onnx import convert_sklearn
from skl2onnx.common.data_types import FloatTensorType, StringTensorType

from medistill.data.schema import CATEGORICAL, TableSchema
from medistill.student.model import WithSoftmax
from medistill.student.onnx_names import rename_inputs

OPSET = 17          # onnxruntime >= 1.14 (2023) runs it
IR_VERSION = 8
OUTPUT_NAME = "probabilities"


def _preprocessing_graph(preprocessor: ColumnTransformer, schema: TableSchema) -> onnx.ModelProto:
    types = [(f.name, StringTensorType([None, 1]) if f.kind == CATEGORICAL
              else FloatTensorType([None, 1])) for f in schema.features]
    model = convert_sklearn(preprocessor, initial_types=types,
                            target_opset={"": OPSET, "ai.onnx.ml": 3})
    # skl2onnx makes identifiers of the names (bp.sys -> bp_sys): give the columns back.
    rename_inputs(model, {i.name: f.name for i, f in zip(model.graph.input, schema.features,
                                                          strict=True)})
    if next(o.version for o in model.opset_import if o.domain in ("", "ai.onnx")) != OPSET:
        model = version_converter.convert_version(model, OPSET)
    return model


def _network_graph(network: torch.nn.Module, n_inputs: int) -> onnx.ModelProto:
    buffer = io.BytesIO()
    wrapped = WithSoftmax(network).eval()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        torch.onnx.export(wrapped, (torch.zeros(2, n_inputs),), buffer, dynamo=False,
                          input_names=["features"], output_names=[OUTPUT_NAME],
                          dynamic_axes={"features": {0: "n"}, OUTPUT_NAME: {0: "n"}},
                          opset_version=OPSET)
    return onnx.load_from_string(buffer.getvalue())


def build_student_onnx(preprocessor: ColumnTransformer, network: torch.nn.Module,
                       schema: TableSchema, metadata: dict[str, str]) -> onnx.ModelProto:
    """One ONNX graph: preprocessing then the network, with medistill's metadata."""
    pre = _preprocessing_graph(preprocessor, schema)
    n_inputs = int(sum(len(t[1].get_feature_names_out()) if hasattr(t[1], "get_feature_names_out")
                       else 0 for t in preprocessor.transformers_ if t[0] != "remainder"))
    net = compose.add_prefix(_network_graph(network, n_inputs), prefix="student_")
    pre.ir_version = net.ir_version = IR_VERSION
    pre_out = pre.graph.output[0].name
    merged = compose.merge_models(pre, net, io_map=[(pre_out, "student_features")])
    # Give the output its contract name back.
    for node in merged.graph.node:
        node.output[:] = [OUTPUT_NAME if o == f"student_{OUTPUT_NAME}" else o for o in node.output]
    merged.graph.output[0].name = OUTPUT_NAME
    # merge_models names the graph and its doc string with random uuids: make them fixed so
    # the same pipeline.yaml gives a byte-identical student.onnx.
    merged.graph.name = "medistill_student"
    merged.graph.doc_string = "preprocessing (skl2onnx) followed by the student network"
    merged.producer_name = "medistill"
    merged.doc_string = "medistill student: raw named columns in, class probabilities out."
    props = {"classes": json.dumps(list(schema.classes)),
             "schema": json.dumps(schema.to_dict()), **metadata}
    onnx.helper.set_model_props(merged, {k: str(v) for k, v in props.items()})
    onnx.checker.check_model(merged, full_check=True)
    return merged


def export_student(path: Path, preprocessor: ColumnTransformer, network: torch.nn.Module,
                   schema: TableSchema, metadata: dict[str, str]) -> None:
    """Write ``student.onnx`` (see :func:`build_student_onnx`), with its content hash
    embedded in its metadata (:mod:`medistill.integrity`)."""
    from medistill.integrity import seal

    Path(path).write_bytes(seal(build_student_onnx(preprocessor, network, schema, metadata)))


def onnx_feeds(features: pd.DataFrame, schema: TableSchema) -> dict[str, np.ndarray]:
    """The input dict onnxruntime expects: one ``[N, 1]`` array per feature column."""
    feeds = {}
    for spec in schema.features:
        column = features[spec.name]
        if spec.kind == CATEGORICAL:
            values = ["" if v is None or (isinstance(v, float) and np.isnan(v)) else str(v)
                      for v in column.astype(object)]
            feeds[spec.name] = np.array(values, dtype=object).reshape(-1, 1)
        else:
            feeds[spec.name] = pd.to_numeric(column, errors="coerce").to_numpy(
                dtype=np.float32).reshape(-1, 1)
    return feeds


__all__ = ["IR_VERSION", "OPSET", "OUTPUT_NAME", "build_student_onnx", "export_student",
           "onnx_feeds"]
