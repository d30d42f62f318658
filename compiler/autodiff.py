"""Reverse-mode differentiation of a typed graph, at compile time: the `grad_graph` stage.

Walks forward nodes in reverse and asks each op's vjp for its input gradients; gradients of
a value used more than once are summed. Backward nodes keep the forward node's span."""
from __future__ import annotations

import copy
from dataclasses import dataclass

from .builder import Builder
from .ir import Graph, Value
from .ops import REGISTRY


@dataclass
class GradGraph:
    """A copy of the checked graph extended with its gradient nodes, and where they are.

    douts: one new input per f32 output (the VJP's incoming gradient), by output name;
    backward: param / f32 input id -> its gradient of the outputs given `douts` (VJP);
    train: param id -> its gradient of the loss (None without a loss)."""

    graph: Graph
    douts: dict[str, Value]
    backward: dict[int, Value]
    train: dict[int, Value] | None


def differentiable(v: Value) -> bool:
    return v.type.dtype == "f32"


def grad_graph(graph: Graph) -> GradGraph:
    """Differentiate `graph` (left untouched): the outputs' VJP and the loss gradient."""
    g = copy.deepcopy(graph)
    b = Builder(g, phase="backward")
    douts, seeds = {}, {}
    for name, out in g.outputs.items():
        if out.type.dtype != "f32":
            continue
        d = g.new_value(f"d{name}", out.type, "input")
        douts[name] = d
        seeds[out.id] = d if out.id not in seeds else b.op("add", seeds[out.id], d)
    wrt = list(g.params) + [v for v in g.inputs if v.type.dtype == "f32"]
    bwd = grad(g, seeds, wrt, tag="backward") if seeds else {}
    trn = None
    if g.loss is not None:
        t = Builder(g, phase="train")
        one = t.scalar(1.0)
        if g.loss.type.shape:
            one = t.op("broadcast_to", one, shape=tuple(g.loss.type.shape))
        trn = grad(g, {g.loss.id: one}, list(g.params), tag="train")
    return GradGraph(g, douts, bwd, trn)


def grad(graph: Graph, seeds: dict[int, Value], wrt: list[Value], tag: str) -> dict[int, Value]:
    """Add backward nodes for d(sum over seeds)/d(wrt); returns {wrt value id: gradient value}.

    seeds maps a forward value id to the gradient flowing into it (its `dout`)."""
    b = Builder(graph, phase=tag)
    pending: dict[int, Value] = dict(seeds)
    forward = [n for n in graph.nodes if n.phase == "forward"]
    for node in reversed(forward):
        dout = pending.pop(node.out.id, None)
        if dout is None:
            continue
        opvjp = REGISTRY[node.op].vjp
        if opvjp is None:
            continue
        b.span, b.name_hint = node.span, f"d{node.out.name}"
        for inp, g in zip(node.inputs, opvjp(b, node, dout)):
            if g is None or not differentiable(inp):
                continue
            prev = pending.get(inp.id)
            pending[inp.id] = g if prev is None else b.op("add", prev, g)
    return {v.id: pending[v.id] for v in wrt if v.id in pending}
