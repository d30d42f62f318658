"""Epilogue fusion: elementwise ops that follow a conv2d or matmul run inside it.

relu(bias_add(conv2d(x, w), b)) is three kernels and two extra passes over the output; fused,
the conv applies `+ b[c]` and relu to each block of its output while the block is still in
cache. A chain absorbs a node when it is elementwise (its kernel rule carries an `expr`), keeps
the shape, and reads the chain's value plus at most one other operand, a float vector along the
last axis (a bias). Every value the chain skips must be read by nothing else in the entry point
and be none of its results: in training relu keeps its output for the gradient, but the conv's
and bias_add's outputs are never needed. The same float operations run in the same order, each
rounded on its own (epilogues and elementwise kernels are CNNC_EXACT: no multiply-add is
contracted into an FMA), so fusing changes no bit of any result.

A kernel takes an epilogue when its record carries `epilogue_index` (conv2d and matmul:
"column"; the max-pool gradient where its windows tile the image: "element"); its template
applies the record's `epilogue` statements, each assigning a new x from x and the operands."""
from __future__ import annotations

from dataclasses import replace

from .ir import Node, Value
from .kernel import Kernel, record
from .ops import REGISTRY

MAX_VECTORS = 4


def step(node: Node, cur: Value, nvec: int, index: str) -> tuple[str, Value | None] | None:
    """The C expression for `node` applied to the chain value x, and its other operand; or
    None if `node` cannot join the chain. index "column": the producer finishes blocks of a
    matrix, and another operand must be a vector along the last axis (vec[k][j0 + j]);
    "element": it finishes single elements, and another operand must have the chain's shape
    (vec[k][i])."""
    expr = getattr(REGISTRY[node.op].kernel, "expr", None)
    if expr is None or node.out.type != cur.type or cur.type.dtype != "f32":
        return None
    if sum(v is cur for v in node.inputs) != 1 or len(node.inputs) > 2:
        return None
    operands, vec = [""], None
    for v in node.inputs:
        if v is cur:
            operands.append("x")
            continue
        want = (cur.type.shape[-1],) if index == "column" else tuple(cur.type.shape)
        if v.type.dtype != "f32" or tuple(v.type.shape) != want or nvec >= MAX_VECTORS:
            return None
        vec = v
        operands.append(f"vec[{nvec}][j0 + j]" if index == "column" else f"vec[{nvec}][i]")
    return expr.format(*operands), vec


def fuse(nodes: list[Node], kernel_of, root_of, results: set[int]) \
        -> tuple[list[Node], dict[int, Kernel], dict[int, Node]]:
    """Replace each fusable producer + chain in `nodes` (one entry point, in order) by one node
    computing the chain's last value. Returns the new list, the fused nodes' kernels and
    their producers (both keyed by id of the fused node).
    kernel_of(node) gives a node's own kernel; root_of(value) the value owning its memory;
    `results` holds the root ids of the entry point's results."""
    readers: dict[int, list[Node]] = {}
    for n in nodes:
        for v in n.inputs:
            readers.setdefault(root_of(v).id, []).append(n)
    position = {id(n): i for i, n in enumerate(nodes)}
    out, absorbed, kernels, producers = [], set(), {}, {}
    for i, n in enumerate(nodes):
        if id(n) in absorbed:
            continue
        own = kernel_of(n)
        index = getattr(own.p, "epilogue_index", None)      # the kernel takes an epilogue
        if index is None:
            out.append(n)
            continue
        stmts, vecs, chain, cur = [], [], [], n.out
        while cur.id not in results and len(readers.get(cur.id, ())) == 1:
            nxt = readers[cur.id][0]
            got = step(nxt, cur, len(vecs), index)
            if got is None:
                break
            stmt, vec = got
            if vec is not None:
                # the vector must exist when the producer runs
                src = root_of(vec).node
                if src is not None and position.get(id(src), len(nodes)) >= i:
                    break
                vecs.append(vec)
            stmts.append(stmt)
            chain.append(nxt)
            cur = nxt.out
        if not chain:
            out.append(n)
            continue
        fused = Node(n.op, tuple(n.inputs) + tuple(vecs), dict(n.attrs), cur, n.span, n.phase)
        call, v0 = f"{n.op}({', '.join(v.name for v in n.inputs)})", n.out
        for c in chain:                   # the spec's nesting: relu(bias_add(conv2d(x, w), b))
            call = f"{c.op}({', '.join(call if v is v0 else v.name for v in c.inputs)})"
            v0 = c.out
        vec_args = tuple(f"vec{j}" for j in range(len(vecs)))       # functions.arg_names
        p = record(**{**dict(own.p.items), "epilogue": tuple(stmts), "vec_args": vec_args})
        note = f"fused: {', '.join(c.op for c in chain)} applied to each finished block of the {n.op}"
        # a kernel that applies its epilogue inline rounds like the elementwise ops it absorbs
        kernels[id(fused)] = replace(own, p=p, call=call, note="\n".join(filter(None, [own.note, note])),
                                     exact=own.exact or index == "element")
        producers[id(fused)] = n
        absorbed.update(id(c) for c in chain)
        out.append(fused)
    return out, kernels, producers

