"""The typed graph: SSA values produced by op nodes, plus the model's inputs, params and consts.

A Graph is what the shape checker produces and autodiff extends; verify.py re-checks it after
every pass and `dump` prints it for `cnnc check --dump`."""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np

from ..spec.source import NO_SPAN, Span
from .types import TensorType


@dataclass(eq=False)
class Value:
    """One tensor in the graph. `kind` is input, param, state, const or node (an op's result)."""

    id: int
    name: str                      # scoped display name: "layer1-conv1/conved1"
    type: TensorType
    kind: str
    span: Span = NO_SPAN
    node: "Node | None" = None     # the producing node, for kind == "node"

    def __repr__(self) -> str:
        return f"%{self.id}:{self.name}:{self.type}"


@dataclass(eq=False)
class Node:
    op: str
    inputs: tuple[Value, ...]
    attrs: dict[str, Any]
    out: Value
    span: Span = NO_SPAN
    phase: str = "forward"         # "forward" or "backward" (added by autodiff)


@dataclass(frozen=True)
class Init:
    """A param's initializer: kind (zeros, truncated_normal, ...) and its arguments."""

    kind: str
    args: tuple[tuple[str, float], ...] = ()

    def arg(self, name: str, default: float) -> float:
        return dict(self.args).get(name, default)

    def __str__(self) -> str:
        return f"{self.kind}({', '.join(f'{k}={v:g}' for k, v in self.args)})"


@dataclass(frozen=True)
class Optimizer:
    kind: str                      # sgd | momentum | adam
    hyper: tuple[tuple[str, float], ...]

    def get(self, name: str) -> float:
        return dict(self.hyper)[name]


@dataclass
class Graph:
    model: str
    source_name: str = "<spec>"
    inputs: list[Value] = field(default_factory=list)
    params: list[Value] = field(default_factory=list)
    inits: dict[int, Init] = field(default_factory=dict)          # param or state id -> initializer
    state: list[Value] = field(default_factory=list)              # non-trainable, changed by updates
    updates: dict[int, Value] = field(default_factory=dict)       # state id -> its value after a train step
    consts: dict[int, np.ndarray] = field(default_factory=dict)   # const value id -> data
    const_values: list[Value] = field(default_factory=list)
    nodes: list[Node] = field(default_factory=list)
    outputs: dict[str, Value] = field(default_factory=dict)
    loss: Value | None = None
    metrics: dict[str, Value] = field(default_factory=dict)
    optimizer: Optimizer | None = None
    grads: dict[int, Value] = field(default_factory=dict)          # param/input id -> its gradient
    # After modes.split: the loss and metrics as a training step computes them (batch
    # statistics, `if_training` taking its first operand); None until then, or when the same.
    train_loss: Value | None = None
    train_metrics: dict[str, Value] = field(default_factory=dict)
    _next_id: int = 0

    def new_value(self, name: str, type: TensorType, kind: str, span: Span = NO_SPAN) -> Value:
        v = Value(self._next_id, name, type, kind, span)
        self._next_id += 1
        return v

    def add_node(self, op: str, inputs, attrs, type: TensorType, name: str, span: Span = NO_SPAN,
                 phase: str = "forward") -> Value:
        out = self.new_value(name, type, "node", span)
        node = Node(op, tuple(inputs), dict(attrs), out, span, phase)
        out.node = node
        self.nodes.append(node)
        return out

    def param_by_name(self, name: str) -> Value:
        return next(p for p in self.params if p.name == name)

    def uses(self) -> dict[int, list[Node]]:
        users: dict[int, list[Node]] = {}
        for n in self.nodes:
            for v in n.inputs:
                users.setdefault(v.id, []).append(n)
        return users


def _attr_str(v: Any) -> str:
    if isinstance(v, tuple):
        return "[" + ",".join(_attr_str(x) for x in v) + "]"
    return repr(v) if isinstance(v, str) else str(v)


def dump(graph: Graph, around: int | None = None) -> str:
    """A readable listing of the graph, one node per line."""
    lines = [f"model {graph.model}"]
    for v in graph.inputs:
        lines.append(f"  input  {v.name}: {v.type}")
    for v in graph.params:
        lines.append(f"  param  {v.name}: {v.type} = {graph.inits[v.id]}")
    for v in graph.state:
        lines.append(f"  state  {v.name}: {v.type} = {graph.inits[v.id]}")
    for v in graph.const_values:
        lines.append(f"  const  {v.name}: {v.type}")
    lo, hi = (0, len(graph.nodes)) if around is None else (max(0, around - 3), around + 4)
    for node in graph.nodes[lo:hi]:
        args = " ".join(v.name for v in node.inputs)
        attrs = " ".join(f"{k}={_attr_str(v)}" for k, v in node.attrs.items())
        mark = "" if node.phase == "forward" else "  [bwd]"
        lines.append(f"  {node.out.name}: {node.out.type} = {node.op} {args} {attrs}".rstrip() + mark)
    for name, v in graph.outputs.items():
        lines.append(f"  output {name} = {v.name}")
    if graph.loss is not None:
        lines.append(f"  loss = {graph.loss.name}")
    for name, v in graph.metrics.items():
        lines.append(f"  metric {name} = {v.name}")
    for v in graph.state:
        if v.id in graph.updates:
            lines.append(f"  update {v.name} = {graph.updates[v.id].name}")
    return "\n".join(lines)


def closure(values, inputs=lambda node: node.inputs) -> list[Node]:
    """The nodes `values` depend on (through the operands `inputs` gives of each node)."""
    seen, stack, out = set(), [v for v in values], []
    while stack:
        v = stack.pop()
        if v.node is None or id(v.node) in seen:
            continue
        seen.add(id(v.node))
        out.append(v.node)
        stack.extend(inputs(v.node))
    return out
