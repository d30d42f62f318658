"""What the runtime checks at the boundary so that no kernel indexes outside a tensor: class
labels and embedding ids that come straight from a model input must lie in [0, size), and no
batch may make a tensor pass 2^31 elements.

An op declares its index arguments in its table entry (`extra["index_range"]`: argument ->
(what they are, size from the operand types)); index_bounds walks the graph from each such
operand back through ops that only relabel memory (reshape, squeeze) to the input that feeds
it. batch_limit finds the tensor that grows fastest with the batch."""
from __future__ import annotations

from .ir import Graph, Value
from .kernel import ALIAS, Lin, numel
from .ops import REGISTRY


def _source_input(v: Value) -> Value | None:
    """The model input whose elements `v` holds unchanged, if any."""
    while v.kind == "node":
        node = v.node
        rule = REGISTRY[node.op].kernel
        if rule is None or rule(node) != ALIAS:
            return None
        v = node.inputs[0]
    return v if v.kind == "input" else None


def index_bounds(graph: Graph) -> list[dict]:
    """One record per constrained input: {input, low, high, what, op, arg}; where several ops
    read one input, the tightest range (the op that names it first on a tie)."""
    found: dict[str, dict] = {}
    for node in graph.nodes:
        if node.phase != "forward":
            continue
        ranges = REGISTRY[node.op].extra.get("index_range", {})
        tensor_args = [a.name for a in REGISTRY[node.op].tensor_args]
        for arg, (what, size_of) in ranges.items():
            src = _source_input(node.inputs[tensor_args.index(arg)])
            if src is None:
                continue
            high = int(size_of([v.type for v in node.inputs]))
            rec = {"input": src.name, "low": 0, "high": high, "what": what, "op": node.op, "arg": arg}
            if src.name not in found or high < found[src.name]["high"]:
                found[src.name] = rec
    return [found[v.name] for v in graph.inputs if v.name in found]


INDEX_LIMIT = 2**31 - 1     # kernels index a tensor's elements with int arithmetic in places


def batch_limit(graph: Graph, scratch: dict[str, Lin] | None = None) -> dict | None:
    """The largest batch for which every tensor of the graph (forward and backward), and every
    kernel's scratch (in floats, by kernel name), holds at most INDEX_LIMIT elements, and the
    buffer that sets it; None if nothing grows with N. The runtime refuses larger batches,
    where an index could wrap."""
    best = None
    sizes = [(v.name, numel(v.type)) for v in list(graph.inputs) + [n.out for n in graph.nodes]]
    sizes += [(f"scratch of {name}", size) for name, size in (scratch or {}).items()]
    for name, size in sizes:
        if size.a > 0:
            limit = (INDEX_LIMIT - size.b) // size.a
            if best is None or limit < best["max_batch"]:
                best = {"max_batch": limit, "tensor": name, "per_example": size.a}
    return best
