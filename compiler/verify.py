"""The `verify` stage: re-check a graph after a pass (every value defined before it is used,
every node's type what its op's shape rule says), so a compiler bug stops here with a listing
of the graph around the bad node rather than as wrong C."""
from __future__ import annotations

from .ir import Graph, dump
from .ops import REGISTRY


class VerifyError(Exception):
    pass


def verify(graph: Graph, extra_inputs=()) -> Graph:
    """Raise VerifyError at the first ill-formed node; returns `graph` unchanged.
    extra_inputs: values defined outside the graph's lists (a GradGraph's douts)."""
    defined = {v.id for v in [*graph.inputs, *graph.params, *graph.state, *graph.const_values, *extra_inputs]}
    for i, node in enumerate(graph.nodes):
        for v in node.inputs:
            if v.id not in defined:
                raise VerifyError(f"node {i} ({node.op}) uses {v!r} before it is defined\n"
                                  + dump(graph, around=i))
        expected = REGISTRY[node.op].shape([v.type for v in node.inputs], node.attrs)
        if expected != node.out.type:
            raise VerifyError(f"node {i} ({node.op}) has type {node.out.type}, its rule says "
                              f"{expected}\n" + dump(graph, around=i))
        defined.add(node.out.id)
    return graph
