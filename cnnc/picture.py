"""`cnnc check SPEC --graph OUT`: the typed graph as a picture. One box per binding (its ops,
its type and the params it uses), scopes as clusters, arrows for the data flow; an arrow whose value also reaches
its target through another binding (a skip connection) is drawn dashed and red.

The DOT text is written here, so `.dot` needs nothing installed; `.svg`, `.png` and `.pdf` are
drawn by Graphviz's `dot` program, through the `graphviz` package when it is installed."""
from __future__ import annotations

import math
import shutil
import subprocess
from dataclasses import dataclass, field
from pathlib import Path

from .errors import CnncError

FORMATS = ("svg", "png", "pdf", "dot")
INSTALL = ("install Graphviz's `dot` program (Debian/Ubuntu: apt-get install graphviz; macOS: brew "
           "install graphviz) and the Python package with pip install 'cnnc[graph]'; or write a .dot file")


@dataclass
class Box:
    """One binding (or input, or the loss / a metric) as drawn."""

    key: int                      # the id of its value
    name: str
    kind: str                     # input | binding | output | loss | metric
    type: str
    scope: tuple[str, ...]
    ops: list[str] = field(default_factory=list)
    params: dict[int, object] = field(default_factory=dict)    # param id -> Value
    sources: list[int] = field(default_factory=list)           # keys of the boxes it reads
    roles: list[str] = field(default_factory=list)             # "output logits", "metric accuracy"


def boxes(checked) -> list[Box]:
    """The bindings of a checked spec with the graph nodes each computes: walking back from a
    binding's value, every node up to another binding's value (or an input, param or const)
    belongs to it."""
    ix, graph = checked.index, checked.graph
    owners: dict[int, Box] = {}
    out: list[Box] = []
    for s in ix.symbols:
        if s.kind in ("input", "binding") and s.value.id not in owners:
            box = Box(s.value.id, s.name, s.kind, str(s.value.type), s.scope)
            owners[s.value.id] = box
            out.append(box)
    for r in ix.roles:
        value = graph.loss if r.kind == "loss" and graph.loss is not None else r.value
        box = owners.get(value.id)
        if box is None:
            box = Box(value.id, r.name, r.kind, str(value.type), ())
            owners[value.id] = box
            out.append(box)
        else:
            box.roles.append(f"{r.kind} {r.name}" if r.kind != "loss" else "loss")
    values = {v.id: v for v in [*graph.inputs, *(n.out for n in graph.nodes)]}
    order = {id(n): i for i, n in enumerate(graph.nodes)}
    for box in out:
        if box.kind == "input":
            continue
        todo, seen, ops = [values[box.key]], set(), []
        while todo:
            v = todo.pop()
            if v.id in seen:
                continue
            seen.add(v.id)
            if v.id != box.key and v.id in owners:
                if v.id not in box.sources:
                    box.sources.append(v.id)
                continue
            if v.kind == "param":
                box.params[v.id] = v
            elif v.node is not None:
                ops.append(v.node)
                todo.extend(v.node.inputs)
        box.ops = [n.op for n in sorted(ops, key=lambda n: order.get(id(n), 0))]
    return out


def _quote(s: str) -> str:
    return '"' + s.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n") + '"'


def _ops_text(ops: list[str]) -> str:
    names = [op for i, op in enumerate(ops) if i == 0 or op != ops[i - 1]]
    return " → ".join(names) if len(names) <= 4 else " → ".join(names[:2] + ["…"] + names[-1:])


def dot(checked) -> str:
    """The DOT text of a checked spec's typed graph."""
    items = boxes(checked)
    lines = [f"digraph {_quote(checked.graph.model or 'model')} {{",
             "  rankdir=TB;",
             '  node [shape=box, style="rounded,filled", fillcolor="#f7f7f7", fontname="Helvetica", fontsize=11];',
             '  edge [color="#555555"];']
    tree: dict[tuple[str, ...], list[Box]] = {}
    for b in items:
        tree.setdefault(b.scope, []).append(b)

    def box_line(b: Box, indent: str) -> str:
        label = [b.name if b.kind in ("input", "binding") else f"{b.kind} {b.name}" if b.kind != "loss" else "loss"]
        if b.kind == "input":
            label.append("input")
        elif b.ops:
            label.append(_ops_text(b.ops))
        label.append(b.type)
        if b.params:
            count = sum(math.prod(d for d in p.type.shape if isinstance(d, int)) for p in b.params.values())
            label.append(f"{count:,} params")
        label += b.roles
        color = {"input": "#dbe9f6", "loss": "#f6dbdb", "metric": "#e9f6db"}.get(b.kind)
        if b.roles and color is None:
            color = "#fff2cc"
        fill = f", fillcolor={_quote(color)}" if color else ""
        return f"{indent}n{b.key} [label={_quote(chr(10).join(label))}{fill}];"

    scopes = list(tree)                       # in the order the spec opens them
    children: dict[tuple[str, ...], list[tuple[str, ...]]] = {}
    for s in scopes:
        for i in range(1, len(s) + 1):
            parent, child = s[:i - 1], s[:i]
            if child not in children.setdefault(parent, []):
                children[parent].append(child)
    counter = iter(range(1 << 30))

    def emit(scope: tuple[str, ...], depth: int) -> None:
        indent = "  " * (depth + 1)
        if scope:
            lines.append(f"{indent}subgraph cluster_{next(counter)} {{")
            lines.append(f'{indent}  label={_quote("/".join(scope))}; style="rounded,dashed"; color="#888888";')
            inner = indent + "  "
        else:
            inner = indent
        for b in tree.get(scope, []):
            lines.append(box_line(b, inner))
        for child in children.get(scope, []):
            emit(child, depth + 1 if scope else depth)
        if scope:
            lines.append(f"{indent}}}")
    emit((), 0)
    ancestors: dict[int, set[int]] = {}
    for b in items:                               # in definition order: sources come first
        ancestors[b.key] = set(b.sources).union(*(ancestors.get(s, set()) for s in b.sources))
    for b in items:
        for src in b.sources:
            # a skip connection: the value also reaches b through another of b's sources
            skip = any(src in ancestors.get(other, ()) for other in b.sources if other != src)
            style = ' [style=dashed, color="#c0392b"]' if skip else ""
            lines.append(f"  n{src} -> n{b.key}{style};")
    lines.append("}")
    return "\n".join(lines) + "\n"


def write(checked, out: str | Path) -> None:
    """Write the picture to `out`, in the format its suffix names."""
    out = Path(out)
    fmt = out.suffix.lower().lstrip(".")
    if fmt not in FORMATS:
        raise CnncError(f"--graph writes {', '.join('.' + f for f in FORMATS)}; not {out.name}")
    text = dot(checked)
    if fmt == "dot":
        out.write_text(text, encoding="utf-8")
        return
    out.write_bytes(render(text, fmt, out))


def render(text: str, fmt: str, out: Path) -> bytes:
    """DOT text drawn by Graphviz: through the `graphviz` package, else the `dot` program itself."""
    try:
        import graphviz
    except ImportError:
        graphviz = None
    if graphviz is not None:
        try:
            return graphviz.Source(text).pipe(format=fmt)
        except graphviz.ExecutableNotFound:
            raise CnncError(f"drawing {out.name} needs Graphviz's `dot` program, which is not "
                            f"installed: {INSTALL}") from None
    exe = shutil.which("dot")
    if exe is None:
        raise CnncError(f"drawing {out.name} needs Graphviz: {INSTALL}")
    done = subprocess.run([exe, f"-T{fmt}"], input=text.encode("utf-8"), capture_output=True, check=False)
    if done.returncode != 0:
        raise CnncError(f"Graphviz's dot failed: {done.stderr.decode(errors='replace').strip()}")
    return done.stdout
