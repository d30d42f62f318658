"""The converter table, op name -> ONNX converter, and the context converters build with.

A converter is `fn(ctx, node) -> str | None`: it adds the ONNX nodes computing `node.out` from
`ctx[v]` (the ONNX name of each operand) and returns the name holding the result (or an
operand's name, for ops that vanish at inference). Registering is one entry per op:

    @converter("relu")
    def relu(ctx, node):
        return ctx.add("Relu", [ctx[node.inputs[0]]], out=node)
"""
from __future__ import annotations

from typing import Callable

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

from ..ir import Graph, Node, Value
from ..types import Sym

CONVERTERS: dict[str, Callable] = {}

ONNX_DTYPE = {"f32": TensorProto.FLOAT, "i32": TensorProto.INT32, "bool": TensorProto.BOOL}
NP_DTYPE = {"f32": np.float32, "i32": np.int32, "bool": np.bool_}

# NHWC <-> NCHW: convolutions, pools and resize run NCHW in ONNX, everything else keeps
# cnnc's NHWC (so reshapes flatten in cnnc's order).
TO_NCHW, TO_NHWC = (0, 3, 1, 2), (0, 2, 3, 1)


def converter(*ops: str):
    """Register a converter for each op name (once per op)."""
    def register(fn):
        for op in ops:
            assert op not in CONVERTERS, f"ONNX converter for {op} registered twice"
            CONVERTERS[op] = fn
        return fn
    return register


class ExportError(Exception):
    """What cannot be exported, said for the user; `span` locates the spec line at fault."""

    def __init__(self, message: str, span=None):
        super().__init__(message)
        self.message, self.span = message, span


class Ctx:
    """The ONNX graph being built: nodes, initializers, and the name of each cnnc value."""

    def __init__(self, graph: Graph, arrays: dict[str, np.ndarray], nodes: list[Node]):
        self.graph, self.arrays = graph, arrays
        self.users: dict[int, list[Node]] = {}     # value id -> the exported nodes reading it
        for n in nodes:
            for v in n.inputs:
                self.users.setdefault(v.id, []).append(n)
        self.nodes: list[onnx.NodeProto] = []
        self.initializers: list[onnx.TensorProto] = []
        self.ones: set[int] = set()            # values that are all ones at inference (dropout masks)
        self._names: dict[int, str] = {}
        self._taken: set[str] = set()

    # ---------------------------------------------------------------- names

    def unique(self, hint: str) -> str:
        name, i = hint, 1
        while name in self._taken:
            i += 1
            name = f"{hint}_{i}"
        self._taken.add(name)
        return name

    def reserve(self, name: str) -> None:
        self._taken.add(name)

    def bind(self, v: Value, name: str) -> None:
        self._names[v.id] = name

    def bound(self, v: Value) -> bool:
        """Whether v already has its ONNX name (an input, or a result a converter folded in)."""
        return v.id in self._names

    def __getitem__(self, v: Value) -> str:
        """The ONNX name of a cnnc value; params and consts (any value whose data is known)
        become initializers on first use."""
        if v.id not in self._names:
            if not self.static(v):
                raise KeyError(f"value {v.name} has no ONNX name yet")
            self._names[v.id] = self.initializer(self.data(v), v.name)
        return self._names[v.id]

    # ---------------------------------------------------------------- building

    def add(self, op_type: str, inputs, out: Node | str | None = None, n_out: int = 1, **attrs):
        """Append a node; its output is named after `out` (a cnnc node's result, or a hint).
        Returns the output's name (a list when n_out > 1)."""
        hint = out.out.name if isinstance(out, Node) else (out or op_type.lower())
        outs = [self.unique(hint if i == 0 else f"{hint}_{i}") for i in range(n_out)]
        self.nodes.append(helper.make_node(op_type, list(inputs), outs, name=self.unique("node/" + outs[0]),
                                           **attrs))
        return outs[0] if n_out == 1 else outs

    def initializer(self, data: np.ndarray, hint: str) -> str:
        name = self.unique(hint)
        self.initializers.append(numpy_helper.from_array(np.array(data, order="C"), name))   # keeps rank 0
        return name

    def ints(self, values, hint: str = "shape") -> str:
        """An int64 initializer (shapes, axes, pads: what ONNX takes as inputs)."""
        return self.initializer(np.asarray(list(values), np.int64), hint)

    def scalar(self, value: float, dtype: str = "f32", hint: str = "k") -> str:
        return self.initializer(np.asarray(value, NP_DTYPE[dtype]), hint)

    def static(self, v: Value) -> bool:
        """Whether v's data is known at export: a const, or a value `arrays` holds by name
        (the params, and whatever else a model keeps between calls, as moving statistics)."""
        return v.id in self.graph.consts or (v.kind != "input" and v.node is None and v.name in self.arrays)

    def data(self, v: Value) -> np.ndarray:
        if v.id in self.graph.consts:
            return np.asarray(self.graph.consts[v.id], NP_DTYPE[v.type.dtype]).reshape(self.shape(v))
        return np.asarray(self.arrays[v.name], NP_DTYPE[v.type.dtype]).reshape(self.shape(v))

    @staticmethod
    def shape(v: Value) -> tuple[int, ...]:
        return tuple(v.type.shape)

    def weight(self, v: Value, perm, pre_shape=None, suffix: str = "onnx") -> str:
        """v reshaped to `pre_shape` (if given) then transposed by `perm`: computed now into an
        initializer when v is a param or const, else by Reshape and Transpose nodes."""
        if self.static(v):
            d = self.data(v)
            if pre_shape is not None:
                d = d.reshape(pre_shape)
            return self.initializer(np.transpose(d, perm), f"{v.name}:{suffix}")
        x = self[v]
        if pre_shape is not None:
            x = self.add("Reshape", [x, self.ints(pre_shape)], f"{v.name}:reshaped")
        return self.add("Transpose", [x], f"{v.name}:{suffix}", perm=list(perm))

    def nchw(self, v: Value) -> str:
        return self.add("Transpose", [self[v]], f"{v.name}:nchw", perm=list(TO_NCHW))

    def nhwc(self, x: str, node: Node) -> str:
        return self.add("Transpose", [x], node, perm=list(TO_NHWC))


def dims(shape) -> list:
    """ONNX dims of a cnnc shape: ints, "N" for the batch, "k*N" for a multiple of it."""
    return [str(d) if isinstance(d, Sym) else int(d) for d in shape]


def value_info(name: str, t) -> onnx.ValueInfoProto:
    return helper.make_tensor_value_info(name, ONNX_DTYPE[t.dtype], dims(t.shape))
