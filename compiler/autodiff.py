"""Reverse-mode differentiation of a typed graph, at compile time: the `grad_graph` stage.

Walks forward nodes in reverse and asks each op's vjp for its input gradients; gradients of
a value used more than once are summed. Backward nodes keep the forward node's span."""
from __future__ import annotations

import copy
from dataclasses import dataclass

from .builder import Builder
from .ir import Graph, Node, Value
from .modes import split
from .ops import REGISTRY


@dataclass(frozen=True)
class GradOf:
    """What a backward node computes: (part of) the gradient that flows back through forward
    node `node` to its input `index` (value), or, with node None, the sum of every gradient
    reaching `value`. Lowering names kernels from it (dconv2_weight)."""

    value: Value
    node: Node | None = None
    index: int = -1


@dataclass
class GradGraph:
    """A copy of the checked graph extended with its gradient nodes, and where they are.

    douts: one new input per f32 output (the VJP's incoming gradient), by output name;
    backward: param / f32 input id -> its gradient of the outputs given `douts` (VJP);
    train: param id -> its gradient of the loss (None without a loss);
    roles: backward node's value id -> what it computes."""

    graph: Graph
    douts: dict[str, Value]
    backward: dict[int, Value]
    train: dict[int, Value] | None
    roles: dict[int, GradOf]


def differentiable(v: Value) -> bool:
    return v.type.dtype == "f32"


def grad_graph(graph: Graph) -> GradGraph:
    """Differentiate `graph` (left untouched): the outputs' VJP (inference mode) and the
    gradient of the training step's loss (modes.split)."""
    g = split(copy.deepcopy(graph))
    b = Builder(g, phase="backward")
    douts, seeds, roles = {}, {}, {}
    for name, out in g.outputs.items():
        if out.type.dtype != "f32":
            continue
        d = g.new_value(f"d{name}", out.type, "input")
        douts[name] = d
        if out.id in seeds:                       # one value, two outputs
            d = b.op("add", seeds[out.id], d)
            roles[d.id] = GradOf(out)
        seeds[out.id] = d
    wrt = list(g.params) + [v for v in g.inputs if v.type.dtype == "f32"]
    bwd = grad(g, seeds, wrt, tag="backward", roles=roles) if seeds else {}
    trn = None
    if g.train_loss is not None:
        loss = g.train_loss
        t = Builder(g, phase="train")
        one = t.scalar(1.0)
        if loss.type.shape:
            one = t.op("broadcast_to", one, shape=tuple(loss.type.shape))
            roles[one.id] = GradOf(loss)
        trn = grad(g, {loss.id: one}, list(g.params), tag="train", roles=roles)
    return GradGraph(g, douts, bwd, trn, roles)


def grad(graph: Graph, seeds: dict[int, Value], wrt: list[Value], tag: str,
         roles: dict[int, GradOf] | None = None) -> dict[int, Value]:
    """Add backward nodes for d(sum over seeds)/d(wrt); returns {wrt value id: gradient value}.

    seeds maps a forward value id to the gradient flowing into it (its `dout`); `roles`, if
    given, receives what each new node computes."""
    roles = {} if roles is None else roles
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
        start = len(graph.nodes)
        grads = tuple(opvjp(b, node, dout))
        _attribute(graph.nodes[start:], node, grads, roles)
        for inp, g in zip(node.inputs, grads):
            if g is None or not differentiable(inp):
                continue
            prev = pending.get(inp.id)
            if prev is None:
                pending[inp.id] = g
            else:
                pending[inp.id] = b.op("add", prev, g)
                roles[pending[inp.id].id] = GradOf(inp)
    return {v.id: pending[v.id] for v in wrt if v.id in pending}


def _attribute(new: list[Node], node: Node, grads, roles: dict[int, GradOf]) -> None:
    """Each node one vjp call added computes the gradient of the first input whose returned
    gradient depends on it."""
    mine = {id(n) for n in new}
    for i, g in enumerate(grads):
        stack = [g.node] if g is not None and g.node is not None else []
        while stack:
            n = stack.pop()
            if id(n) not in mine or n.out.id in roles:
                continue
            roles[n.out.id] = GradOf(node.inputs[i], node, i)
            stack.extend(v.node for v in n.inputs if v.node is not None)
    for n in new:
        roles.setdefault(n.out.id, GradOf(node.out, node))
