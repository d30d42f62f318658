"""Batch norm folded into the conv before it, for inference (forward and eval_step).

In inference mode batch_normalization(conv2d(x, w) [+ b], mean, variance, beta, gamma) is
conv2d(x, w * inv) + (b * inv + shift) with inv = gamma / sqrt(variance + eps) and
shift = beta - mean * inv, per output channel: the batch norm costs nothing per pixel. The
expansion of batch_normalization (ops/norm.py) leaves the pattern add(mul(h, inv), shift),
h the conv's (or its bias_add's) output; it folds when inv and shift are per-channel vectors
computed from params, state and consts only (moving statistics, not batch ones) and nothing
else in the entry point reads h. depthwise_conv2d folds the same way, inv reshaped to the
filter's [in, multiplier].

The graph is extended, not changed: the folded nodes, and copies of every node downstream
of them that the results need, are appended (in order) and the results are mapped to their
copies, so backward and train_step keep the nodes they differentiate."""
from __future__ import annotations

from .builder import Builder
from .ir import Graph, Node, Value, closure

CONVS = ("conv2d", "depthwise_conv2d")


def _static(v: Value, memo: dict) -> bool:
    """True when v is computed from params, state and consts only (no input)."""
    if v.id not in memo:
        memo[v.id] = v.kind != "input" and (v.node is None or all(_static(u, memo) for u in v.node.inputs))
    return memo[v.id]


def _match(node: Node, readers: dict, memo: dict):
    """(conv node, bias or None, inv, shift) when `node` is the last step of a foldable batch
    norm, else None."""
    if node.op != "add" or node.inputs[0].node is None or node.inputs[0].node.op != "mul":
        return None
    mul, shift = node.inputs[0].node, node.inputs[1]
    h, inv = mul.inputs
    c = h.type.shape[-1] if h.type.rank else None
    if not all(v.type.dtype == "f32" and tuple(v.type.shape) == (c,) and _static(v, memo) for v in (inv, shift)):
        return None
    if h.node is None or len(readers.get(h.id, ())) != 1 or len(readers.get(mul.out.id, ())) != 1:
        return None
    bias = None
    conv = h.node
    if conv.op == "bias_add" and conv.inputs[0].node is not None and _static(conv.inputs[1], memo):
        bias, conv = conv.inputs[1], conv.inputs[0].node
        if len(readers.get(conv.out.id, ())) != 1:
            return None
    if conv.op not in CONVS or not _static(conv.inputs[1], memo):
        return None
    return conv, bias, inv, shift


def fold_batch_norms(g: Graph, results: list[Value]) -> dict[int, Value]:
    """Append folded nodes for the batch norms `results` depend on; returns {value id: the
    value to read instead} for every value of the results' closure that changed (empty when
    nothing folds)."""
    needed = [n for n in g.nodes if n.phase == "forward" and id(n) in {id(m) for m in closure(results)}]
    readers: dict[int, list[Node]] = {}
    for n in needed:
        for v in n.inputs:
            readers.setdefault(v.id, []).append(n)
    for v in results:                              # a result is read by the caller too
        readers.setdefault(v.id, []).append(None)
    memo: dict[int, bool] = {}
    matches = {id(n): m for n in needed if (m := _match(n, readers, memo)) is not None}
    if not matches:
        return {}
    absorbed = set()                                # the conv, bias_add and mul a fold replaces
    for add in needed:
        if id(add) in matches:
            conv = matches[id(add)][0]
            mul = add.inputs[0].node
            absorbed |= {id(conv), id(mul), id(mul.inputs[0].node)}
    b = Builder(g)                                  # phase "forward": inference nodes
    new: dict[int, Value] = {}
    for n in needed:
        if id(n) in absorbed:
            continue
        if id(n) in matches:
            conv, bias, inv, shift = matches[id(n)]
            b.span, b.name_hint = n.span, n.out.name.split(".")[0] + "_folded"
            x, w = conv.inputs
            scale = inv
            if conv.op == "depthwise_conv2d":
                scale = b.op("reshape", inv, shape=tuple(w.type.shape[2:]))
            w2 = b.op("mul", w, scale)
            b2 = shift if bias is None else b.op("add", b.op("mul", bias, inv), shift)
            out = b.op("bias_add", b.op(conv.op, new.get(x.id, x), w2, **conv.attrs), b2)
            new[n.out.id] = out
        elif any(v.id in new for v in n.inputs):
            out = g.new_value(b.unique(n.out.name + "_folded"), n.out.type, "node", n.out.span)
            copy = Node(n.op, tuple(new.get(v.id, v) for v in n.inputs), dict(n.attrs), out, n.span, n.phase)
            out.node = copy
            g.nodes.append(copy)
            new[n.out.id] = out
    return new
