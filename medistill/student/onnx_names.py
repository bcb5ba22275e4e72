"""Give an ONNX graph's inputs the table's own column names.

skl2onnx turns a column name into an identifier (``bp.sys`` → ``bp_sys``,
``HbA1c (%)`` → ``HbA1c____``), so a clinical table's headers would not match the model's
inputs. ONNX names are arbitrary strings (the IR only recommends identifiers), and
onnxruntime takes any, so the inputs are renamed back after conversion.
"""

from __future__ import annotations

from collections.abc import Mapping

import onnx

from medistill.errors import DataError


def _all_names(graph: onnx.GraphProto) -> set[str]:
    names = {v.name for v in (*graph.input, *graph.output, *graph.value_info)}
    names |= {t.name for t in graph.initializer}
    for node in graph.node:
        names.update(node.input)
        names.update(node.output)
    return names


def _replace(graph: onnx.GraphProto, old: str, new: str) -> None:
    for value in (*graph.input, *graph.output, *graph.value_info):
        if value.name == old:
            value.name = new
    for tensor in graph.initializer:
        if tensor.name == old:
            tensor.name = new
    for node in graph.node:
        node.input[:] = [new if n == old else n for n in node.input]
        node.output[:] = [new if n == old else n for n in node.output]


def _fresh(base: str, taken: set[str]) -> str:
    return next(f"{base}__{i}" for i in range(len(taken) + 1) if f"{base}__{i}" not in taken)


def rename_inputs(model: onnx.ModelProto, names: Mapping[str, str]) -> onnx.ModelProto:
    """Rename graph inputs ``{current: wanted}`` in place and return ``model``. An internal
    value already called ``wanted`` is renamed out of the way first; a wanted name that is
    one of the graph's outputs is refused."""
    graph = model.graph
    if any(a.type in (onnx.AttributeProto.GRAPH, onnx.AttributeProto.GRAPHS)
           for node in graph.node for a in node.attribute):
        raise ValueError("rename_inputs does not handle graphs with subgraphs")
    inputs, outputs = {i.name for i in graph.input}, {o.name for o in graph.output}
    for current, wanted in names.items():
        if current not in inputs:
            raise ValueError(f"the graph has no input {current!r}")
        if wanted in outputs:
            raise DataError(f"a feature column cannot be named '{wanted}': it is the name of "
                            "the model's output.", hint="Rename the column in the table.")
    staged = {}
    for current, wanted in names.items():       # first to unique temporary names, so that
        temporary = _fresh("medistill_input", _all_names(graph))   # inputs may swap names
        _replace(graph, current, temporary)
        staged[temporary] = wanted
    for temporary, wanted in staged.items():
        taken = _all_names(graph)
        if wanted in taken:
            _replace(graph, wanted, _fresh(wanted, taken))
        _replace(graph, temporary, wanted)
    return model


__all__ = ["rename_inputs"]
