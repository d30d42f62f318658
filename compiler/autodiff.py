"""Reverse-mode differentiation of a typed graph, at compile time.

Walks forward nodes in reverse and asks each op's vjp for its input gradients; gradients of
a value used more than once are summed. Backward nodes keep the forward node's span."""
from __future__ import annotations

from .builder import Builder
from .ir import Graph, Value


def differentiable(v: Value) -> bool:
    return v.type.dtype == "f32"


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
        opvjp = _vjp_of(node.op)
        if opvjp is None:
            continue
        b.span, b.name_hint = node.span, f"d{node.out.name}"
        for inp, g in zip(node.inputs, opvjp(b, node, dout)):
            if g is None or not differentiable(inp):
                continue
            prev = pending.get(inp.id)
            pending[inp.id] = g if prev is None else b.op("add", prev, g)
    return {v.id: pending[v.id] for v in wrt if v.id in pending}


def _vjp_of(op: str):
    from .ops import REGISTRY
    return REGISTRY[op].vjp
