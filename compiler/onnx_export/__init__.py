"""ONNX export: the inference slice of a checked graph (compiler/inference.py) with given
params, as an onnx.ModelProto built with onnx.helper and validated by onnx.checker (full
check, with shape inference). Needs the `onnx` extra; nothing else in cnnc imports this.

Inputs and outputs keep their spec names, NHWC layout and a symbolic batch `N`; each op
becomes ONNX nodes through the converter table (table.py, entries in converters.py)."""
from __future__ import annotations

import numpy as np
import onnx
from onnx import helper

from ... import __version__
from ..inference import needed_nodes, output_inputs
from ..ir import Graph
from . import converters  # noqa: F401  (fills the table)
from .table import CONVERTERS, Ctx, ExportError, value_info

OPSET = 17
IR_VERSION = 8          # the oldest IR that carries opset 17: runtimes from 2022 on read the file

__all__ = ["CONVERTERS", "ExportError", "OPSET", "to_onnx"]


def to_onnx(graph: Graph, params: dict[str, np.ndarray], doc: str = "") -> onnx.ModelProto:
    """The inference graph of `graph` with `params` (name -> array) as initializers; raises
    ExportError (with the spec span) for an op that has no converter."""
    nodes = needed_nodes(graph)
    ctx = Ctx(graph, params, nodes)
    for name in graph.outputs:
        ctx.reserve(name)
    feeds = {v.id: v for vs in output_inputs(graph).values() for v in vs}
    inputs = [v for v in graph.inputs if v.id in feeds]
    for v in inputs:
        ctx.reserve(v.name)
        ctx.bind(v, v.name)
    for node in nodes:
        if ctx.bound(node.out):                  # folded into an earlier node (a conv's bias)
            continue
        convert = CONVERTERS.get(node.op)
        if convert is None:
            raise ExportError(f"op `{node.op}` cannot be exported to ONNX: cnnc has no ONNX converter for it",
                              node.span)
        name = convert(ctx, node)
        if name is not None:
            ctx.bind(node.out, name)
    outputs = []
    for name, v in graph.outputs.items():
        ctx.nodes.append(helper.make_node("Identity", [ctx[v]], [name], name=ctx.unique(f"output/{name}")))
        outputs.append(value_info(name, v.type))
    g = helper.make_graph(ctx.nodes, graph.model, [value_info(v.name, v.type) for v in inputs], outputs,
                          ctx.initializers, doc_string=doc)
    model = helper.make_model(g, opset_imports=[helper.make_opsetid("", OPSET)], producer_name="cnnc",
                              producer_version=__version__, doc_string=doc)
    model.ir_version = IR_VERSION
    onnx.checker.check_model(model, full_check=True)
    return model
