"""The model summary `cnnc check` prints: one row per binding, with params and MACs, and the
memory a compiled model needs (from the lowered Program's memory dict)."""
from __future__ import annotations

import math

from .ir import Graph
from .memory import totals
from .ops import REGISTRY
from .types import concrete_shape


def param_count(graph: Graph) -> int:
    return sum(math.prod(concrete_shape(p.type, 1)) for p in graph.params)


def state_count(graph: Graph) -> int:
    """Values in `state` declarations: Keras' non-trainable params."""
    return sum(math.prod(concrete_shape(v.type, 1)) for v in graph.state)


def node_macs(node) -> int:
    """Multiply-accumulates for one example (batch size 1)."""
    rule = REGISTRY[node.op].extra.get("macs")
    if rule is None:
        return 0
    return rule([concrete_shape(v.type, 1) for v in node.inputs], concrete_shape(node.out.type, 1), node.attrs)


def rows(graph: Graph) -> list[tuple[str, str, str, int, int]]:
    """(binding, ops, type, params first used there, MACs per example), one row per binding.

    A binding's inner nodes are named `binding.op`; they fold into the binding's row."""
    seen: set[int] = set()
    out = [(v.name, "input", str(v.type), 0, 0) for v in graph.inputs]
    group: list = []
    for node in graph.nodes:
        if node.phase != "forward":
            continue
        new = [v for v in node.inputs if v.kind == "param" and v.id not in seen]
        seen.update(v.id for v in new)
        group.append((node, sum(math.prod(concrete_shape(v.type, 1)) for v in new)))
        if "." not in node.out.name:          # the binding itself: close its row
            ops = ", ".join(dict.fromkeys(n.op for n, _ in group))
            if len(ops) > 32:
                ops = ops[:31] + "…"
            out.append((node.out.name, ops, str(node.out.type), sum(c for _, c in group),
                        sum(node_macs(n) for n, _ in group)))
            group = []
    return out


def render(graph: Graph, title: str, memory: dict | None = None) -> str:
    table = rows(graph)
    w_name = max([len("binding")] + [len(r[0]) for r in table])
    w_op = max([len("op")] + [len(r[1]) for r in table])
    w_type = max([len("output")] + [len(r[2]) for r in table])
    head = f"{'binding':<{w_name}}  {'op':<{w_op}}  {'output':<{w_type}}  {'params':>10}  {'MACs/example':>14}"
    rule = "-" * len(head)
    lines = [f"model {graph.model}  ({title})", rule, head, rule]
    for name, op, typ, params, macs in table:
        p_text, m_text = (f"{params:,}" if params else ""), (f"{macs:,}" if macs else "")
        lines.append(f"{name:<{w_name}}  {op:<{w_op}}  {typ:<{w_type}}  {p_text:>10}  {m_text:>14}")
    lines.append(rule)
    total = param_count(graph)
    macs = sum(r[4] for r in table)
    lines.append(f"trainable params: {total:,} ({_bytes(total * 4)} as f32)")
    if graph.state:
        fixed = state_count(graph)
        lines.append(f"non-trainable params: {fixed:,} (state, {_bytes(fixed * 4)}); total params: {total + fixed:,}")
    lines.append(f"forward MACs per example: {macs:,}")
    outs = ", ".join(f"{k}: {v.type}" for k, v in graph.outputs.items()) or "none"
    lines.append(f"outputs: {outs}")
    if graph.loss is not None:
        metrics = ", ".join(graph.metrics) or "none"
        opt = graph.optimizer
        hyper = ", ".join(f"{k}={v:g}" for k, v in opt.hyper) if opt else ""
        lines.append(f"loss: {graph.loss.type}; metrics: {metrics}; optimizer: {opt.kind if opt else 'none'}({hyper})")
    if memory:
        lines.append("memory: " + ", ".join(f"{k} {v}" for k, v in memory.items()))
    return "\n".join(lines)


def _bytes(n: int) -> str:
    for unit in ("B", "KiB", "MiB", "GiB"):
        if n < 1024 or unit == "GiB":
            return f"{n:.1f} {unit}" if unit != "B" else f"{n} B"
        n /= 1024
    return str(n)


def memory_table(memory: dict, batch_sizes=(1, 32)) -> dict[str, str]:
    """A Program's memory, flat and readable: {"params": "1.2 KiB", ...,
    "workspace": "448 B + 1.8 KiB*N", "total at N=32": "..."}."""
    ws = memory["workspace"]
    out = {"params": _human(memory["params_bytes"]), "grads": _human(memory["grads_bytes"]),
           "optimizer state": _human(memory["optimizer_bytes"]),
           **({"state": _human(memory["state_bytes"])} if memory.get("state_bytes") else {}),
           "workspace": f"{_human(ws['fixed_bytes'])} + {_human(ws['per_example_bytes'])}*N"}
    for n, total in totals(memory, batch_sizes).items():
        out[f"total at N={n}"] = _human(total)
    return out


def _human(n: int) -> str:
    for unit in ("B", "KiB", "MiB"):
        if n < 1024 or unit == "MiB":
            return f"{n} B" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1024
    return f"{n:.1f} GiB"
