"""The inference slice of a checked graph: the nodes the outputs need (loss and metrics left
out), the inputs each output reads, and which inputs are labels. Export formats start here."""
from __future__ import annotations

from .ir import Graph, Node, Value, closure
from .ops import REGISTRY


def needed_nodes(graph: Graph, values=None) -> list[Node]:
    """The nodes `values` (default: the outputs) depend on, in graph order."""
    want = {id(n) for n in closure(graph.outputs.values() if values is None else values)}
    return [n for n in graph.nodes if id(n) in want]


def output_inputs(graph: Graph) -> dict[str, list[Value]]:
    """Each output's name -> the graph inputs it depends on, in declaration order."""
    out = {}
    for name, v in graph.outputs.items():
        reached = {id(x) for n in closure([v]) for x in n.inputs} | {id(v)}
        out[name] = [i for i in graph.inputs if id(i) in reached]
    return out


def label_inputs(graph: Graph) -> set[int]:
    """Ids of the inputs that reach an operand named `labels` of a node the loss depends on
    (the targets the loss compares against)."""
    label_values = []
    for n in (closure([graph.loss]) if graph.loss is not None else []):
        op = REGISTRY.get(n.op)
        if op is None:
            continue
        names = op.input_names(len(n.inputs))
        label_values += [v for name, v in zip(names, n.inputs) if name == "labels"]
    reached = {id(x) for n in closure(label_values) for x in n.inputs} | {id(v) for v in label_values}
    return {i.id for i in graph.inputs if id(i) in reached}


