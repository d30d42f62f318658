"""Adds op nodes to a Graph through the op table: checks types, expands composite ops.

The shape checker builds the forward graph with it and autodiff the backward one, so every
node, forward or backward, is typed by the same rule."""
from __future__ import annotations

from typing import Any

import numpy as np

from ..spec.source import NO_SPAN, Span
from .ir import Graph, Value
from .ops import REGISTRY, OpDef
from .types import TensorType


class Builder:
    def __init__(self, graph: Graph, phase: str = "forward"):
        self.graph, self.phase = graph, phase
        self.span: Span = NO_SPAN          # the spec span new nodes are attributed to
        self.name_hint: str | None = None  # the binding the next nodes belong to
        self.names: set[str] = {n.out.name for n in graph.nodes}

    def unique(self, name: str) -> str:
        """`name`, or `name_2`, `name_3`... if taken: node names become C function names."""
        base, k = name, 2
        while name in self.names:
            name, k = f"{base}_{k}", k + 1
        self.names.add(name)
        return name

    def _name(self, op: str) -> str:
        return self.unique(f"{self.name_hint}.{op}" if self.name_hint else op)

    def op(self, name: str, *inputs: Value, **attrs: Any) -> Value:
        """Add one node (or a composite's expansion); attrs are normalized values."""
        opdef: OpDef = REGISTRY[name]
        full = {a.name: a.default for a in opdef.args if not a.is_operand}
        full.update(attrs)
        if opdef.expand is not None:
            return opdef.expand(self, inputs, full)
        out_type = opdef.shape([v.type for v in inputs], full)
        return self.graph.add_node(name, inputs, full, out_type, self._name(name), self.span, self.phase)

    def scalar(self, value: float, dtype: str = "f32") -> Value:
        """A rank-0 constant."""
        v = self.graph.new_value(f"{value:g}", TensorType(dtype, ()), "const", self.span)
        self.graph.consts[v.id] = np.array(value, dtype=np.float32 if dtype == "f32" else np.int32)
        self.graph.const_values.append(v)
        return v

    def sum_to(self, grad: Value, like: Value) -> Value:
        """Sum a broadcast gradient back to the shape of the operand it flowed from."""
        gs, ts = grad.type.shape, like.type.shape
        if gs == ts:
            return grad
        lead = len(gs) - len(ts)
        axes = tuple(range(lead)) + tuple(i + lead for i, d in enumerate(ts) if d == 1 and gs[i + lead] != 1)
        out = self.op("reduce_sum", grad, axis=axes, keepdims=True) if axes else grad
        if out.type.shape != ts:
            out = self.op("reshape", out, shape=tuple(ts))
        return out
