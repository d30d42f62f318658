"""Training and inference, made two graphs' worth of values in one: the `split` step of grad_graph.

A spec computes some values differently while training: `if_training(a, b)` is `a` in a
training step and `b` everywhere else (batch norm's batch statistics against its moving ones).
`split` removes every `if_training` node. The graph itself becomes the inference graph (each
`if_training` replaced by its second operand), which forward, backward and eval_step run; the
nodes that depend on a first operand are copied once more, right after their original, reading
the training values. The copies give `train_loss`, `train_metrics` and the state updates, which
only train_step computes. A spec without `if_training` is left as it was."""
from __future__ import annotations

from .builder import Builder
from .ir import Graph, Node, Value

OP = "if_training"


def split(g: Graph) -> Graph:
    """Rewrite `g` in place (see the module docstring); returns it."""
    g.train_loss, g.train_metrics = g.loss, dict(g.metrics)
    if not any(n.op == OP for n in g.nodes):
        return g
    infer: dict[int, Value] = {}          # value id -> the value inference reads instead
    train: dict[int, Value] = {}          # value id -> the value a training step reads, where different
    b = Builder(g)
    nodes: list[Node] = []

    def inf(v: Value) -> Value:
        return infer.get(v.id, v)

    def trn(v: Value) -> Value:
        return train.get(v.id, inf(v))

    for node in g.nodes:
        if node.op == OP:
            t, i = node.inputs
            infer[node.out.id] = inf(i)
            if trn(t) is not inf(i):
                train[node.out.id] = trn(t)
            continue
        original = node.inputs
        node.inputs = tuple(inf(v) for v in original)
        nodes.append(node)
        if any(v.id in train for v in original):
            ins = tuple(trn(v) for v in original)
            out = g.new_value(b.unique(node.out.name + "_train"), node.out.type, "node", node.out.span)
            copy = Node(node.op, ins, dict(node.attrs), out, node.span, node.phase)
            out.node = copy
            nodes.append(copy)
            train[node.out.id] = out
    g.nodes = nodes
    g.outputs = {k: inf(v) for k, v in g.outputs.items()}
    g.train_loss = None if g.loss is None else trn(g.loss)
    g.loss = None if g.loss is None else inf(g.loss)
    g.train_metrics = {k: trn(v) for k, v in g.metrics.items()}
    g.metrics = {k: inf(v) for k, v in g.metrics.items()}
    g.updates = {k: trn(v) for k, v in g.updates.items()}
    return g
