"""What an editor asks about a spec, answered from the checker's own results: diagnostics,
hover text, definitions, an outline, completions and inlay hints. Positions are character
offsets into the text; cnnc/lsp.py turns them into the protocol's lines and columns.

No rule is checked here: the parser, desugarer and checker run as for `cnnc check`, and every
fact shown comes from their diagnostics and the checker's index. Ops, layers, initializers,
optimizers and keywords are read from their tables, so a new one is offered without edits."""
from __future__ import annotations

import math
import re
import traceback
from dataclasses import dataclass, field

from . import pipeline
from .compiler.check.index import CallSite, Index, Ref, Role, ScopeSite, Symbol
from .compiler.check.layers import LAYERS
from .compiler.check.messages import signature
from .compiler.initializers import INITIALIZERS
from .compiler.ir import Value
from .compiler.ops import REGISTRY, public_ops
from .compiler.optimizers import OPTIMIZERS
from .spec.diagnostics import Diagnostic, error
from .spec.parser import keywords
from .spec.source import Source, Span


@dataclass
class Analysis:
    """One version of a document, checked: the diagnostics `cnnc check` would print and what
    the checker learned (from the lines that parse, while another one has a syntax error)."""

    source: Source
    diagnostics: list[Diagnostic]
    index: Index | None = None
    internal_error: str | None = None


def analyze(text: str, filename: str = "<spec>") -> Analysis:
    """Check a document; never raises: an internal error becomes one diagnostic."""
    source = Source(text, filename)
    try:
        diagnostics, checked = pipeline.check_partial(source)
        return Analysis(source, diagnostics, checked.index if checked is not None else None)
    except Exception as exc:                           # a cnnc bug, never the user's spec
        where = "".join(traceback.format_exception_only(type(exc), exc)).strip()
        diag = error("internal", f"internal error in cnnc while checking this file: {where}",
                     Span(0, 0), help="please report it with this file; the other features go on")
        return Analysis(source, [diag], None, traceback.format_exc())


# ---------------------------------------------------------------- hover

def _count(t) -> int:
    return math.prod(d for d in t.shape if isinstance(d, int))


def _line(ix: Index, span: Span) -> str:
    return f"line {ix.line_of(span)}"


def _params_text(params) -> list[str]:
    """One Markdown paragraph listing params with their shapes and sizes (none: no paragraph)."""
    if not params:
        return []
    total = sum(_count(p.type) for p in params)
    head = f"creates {len(params)} param{'s' if len(params) != 1 else ''}, {total:,} values:"
    return [head + "\n" + "\n".join(f"- `{p.name}`: `{p.type}` ({_count(p.type):,})" for p in params)]


def _producer(v: Value) -> str | None:
    node = v.node
    return node.op if node is not None else None


def hover(an: Analysis, offset: int) -> str | None:
    """Markdown for the thing at `offset`: its type, where it is defined, what it creates."""
    ix = an.index
    item = ix.at(offset) if ix is not None else None
    if item is None:
        return None
    if isinstance(item, Ref):
        return _symbol_hover(ix, item.symbol)
    if isinstance(item, Symbol):
        return _symbol_hover(ix, item)
    if isinstance(item, CallSite):
        return _call_hover(item)
    if isinstance(item, Role):
        sym = ix.symbol_of(item.value)
        where = f", from `{sym.full}` ({_line(ix, sym.span)})" if sym and sym.span != item.span else ""
        label = "loss" if item.kind == "loss" else f"{item.kind} `{item.name}`"
        return f"{label}: `{item.value.type}`{where}"
    if isinstance(item, ScopeSite):
        return _scope_hover(ix, item)
    return None


def _symbol_hover(ix: Index, s: Symbol) -> str:
    v = s.value
    head = f"{s.kind} `{s.full}`"
    if s.kind == "param" and ix.graph is not None and v.id in ix.graph.inits:
        head += f" = `{ix.graph.inits[v.id]}`, {_count(v.type):,} values"
    op = _producer(v)
    if s.kind == "binding" and op:
        head += f", computed by `{op}`"
    where = f"defined at {_line(ix, s.span)}" if s.written else f"made at {_line(ix, s.span)}"
    if s.origin:
        where += f", {s.origin}"
    blocks = [f"**{s.name}**: `{v.type}`", head + "  \n" + where] + _params_text(s.params)
    explain = _explain(v)
    if explain:
        blocks.append(f"reshape: `{explain}`")
    return "\n\n".join(blocks)


def _explain(v: Value) -> str | None:
    node = v.node
    if node is None or node.op not in REGISTRY:
        return None
    explain = REGISTRY[node.op].extra.get("explain")
    return explain(node) if explain is not None else None


def _call_hover(c: CallSite) -> str:
    entry = LAYERS.get(c.name) if c.kind == "layer" else REGISTRY.get(c.name)
    sig = signature(entry) if entry is not None else c.name
    lines = [f"`{sig}` → `{c.value.type}`"]
    if entry is not None and entry.doc:
        lines.append(entry.doc)
    lines += _params_text(c.params)
    explain = c.explain()
    if explain:
        lines.append(f"`{explain}`")
    return "\n\n".join(lines)


def _scope_hover(ix: Index, s: ScopeSite) -> str:
    path = "/".join(s.path)
    params = [p for p in (ix.graph.params if ix.graph else []) if p.name.startswith(path + "/")]
    return "\n\n".join([f"scope `{path}`, {_line(ix, s.span)}"] + _params_text(params))


# ---------------------------------------------------------------- definition

def definition(an: Analysis, offset: int) -> Span | None:
    """Where the name at `offset` is declared (a layer's params: the layer call)."""
    ix = an.index
    item = ix.at(offset) if ix is not None else None
    if isinstance(item, Ref):
        return item.symbol.span
    if isinstance(item, Symbol):
        return item.span
    if isinstance(item, Role):
        sym = ix.symbol_of(item.value)
        return sym.span if sym is not None else item.span
    if isinstance(item, ScopeSite):
        return item.span
    return None


def references(an: Analysis, offset: int) -> list[Span]:
    """The declaration and every written use of the name at `offset`."""
    ix = an.index
    item = ix.at(offset) if ix is not None else None
    sym = item.symbol if isinstance(item, Ref) else item if isinstance(item, Symbol) else None
    if sym is None:
        return []
    return [sym.span] + [r.span for r in ix.refs if r.symbol is sym]


# ---------------------------------------------------------------- outline

@dataclass
class Outline:
    name: str
    kind: str                     # input | param | const | binding | scope | output | metric | loss
    detail: str
    span: Span                    # the whole declaration
    name_span: Span
    children: list["Outline"] = field(default_factory=list)


def outline(an: Analysis) -> list[Outline]:
    """The model's inputs, scopes (with their params and bindings), outputs, metrics and loss."""
    ix = an.index
    if ix is None:
        return []
    top: list[Outline] = []
    scopes: list[tuple[ScopeSite, Outline]] = []

    def parent(path: tuple[str, ...], at: int) -> list[Outline]:
        for site, node in reversed(scopes):
            if site.path == path and site.decl.start <= at <= site.decl.end:
                return node.children
        return top

    for site in sorted(ix.scopes, key=lambda s: s.decl.start):
        node = Outline(site.path[-1], "scope", "", site.decl, site.span)
        parent(site.path[:-1], site.decl.start).append(node)
        scopes.append((site, node))
    named = {(r.name, r.value.id) for r in ix.roles}
    for s in ix.symbols:
        if s.name.startswith("l2_penalty_") or (s.name, s.value.id) in named:
            continue                    # `output p = ...` is listed once, as the output
        detail = str(s.value.type)
        parent(s.scope, s.decl.start).append(Outline(s.name, s.kind, detail, s.decl, s.span))
    for r in ix.roles:
        top.append(Outline(r.name, r.kind, str(r.value.type), r.decl, r.span))

    def order(items: list[Outline]) -> list[Outline]:
        items.sort(key=lambda o: (o.span.start, o.name_span.start))
        for o in items:
            order(o.children)
        return items
    return order(top)


# ---------------------------------------------------------------- completion

@dataclass
class Completion:
    label: str
    kind: str                     # keyword | op | layer | initializer | optimizer | name | argument
    detail: str = ""
    doc: str = ""
    insert: str | None = None


def callables() -> dict[str, tuple[str, object]]:
    """Every name a spec may call, with what it is and its table entry."""
    out: dict[str, tuple[str, object]] = {}
    for table, kind in ((INITIALIZERS, "initializer"), (OPTIMIZERS, "optimizer")):
        out.update({n: (kind, e) for n, e in table.items()})
    out.update({n: ("op", REGISTRY[n]) for n in public_ops()})
    out.update({n: ("layer", e) for n, e in LAYERS.items()})
    return out


_OPEN_CALL = re.compile(r"([A-Za-z_][A-Za-z0-9_]*)\s*\($")


def _enclosing_call(text: str, offset: int) -> tuple[str, tuple[int, set[str]]] | None:
    """The callee whose `(` is still open at `offset` (same statement), and the keyword
    arguments already given to it; read from the text, so it works while the line is broken."""
    depth, i = 0, offset - 1
    start = max(0, text.rfind("\n\n", 0, offset))
    while i >= start:
        ch = text[i]
        if ch in ")]":
            depth += 1
        elif ch in "([":
            if depth == 0:
                if ch == "[":
                    return None
                m = _OPEN_CALL.search(text[max(0, i - 64):i + 1])
                if not m:
                    return None
                return m.group(1), _given(text[i + 1:offset])
            depth -= 1
        elif ch == "\n" and depth == 0 and not text[:i].rstrip().endswith(("(", ",")):
            return None
        i -= 1
    return None


def _given(args: str) -> tuple[int, set[str]]:
    """How many positional arguments, and which keywords, the text of an open call gives."""
    depth, parts, cur = 0, [], ""
    for ch in args:
        depth += ch in "([" and 1 or ch in ")]" and -1 or 0
        if ch == "," and depth == 0:
            parts.append(cur)
            cur = ""
        else:
            cur += ch
    keys = {m.group(1) for p in parts if (m := re.match(r"\s*([A-Za-z_]\w*)\s*=(?!=)", p))}
    return len(parts) - len(keys), keys


def completions(an: Analysis, offset: int) -> list[Completion]:
    text = an.source.text
    items: list[Completion] = []
    inside = _enclosing_call(text, offset)
    if inside is not None:
        entry = callables().get(inside[0])
        if entry is not None:
            kind, e = entry
            positional, keys = inside[1]
            for a in e.args[positional:]:
                if a.name not in keys:
                    items.append(Completion(f"{a.name}=", "argument", f"{a.kind} of {inside[0]}",
                                            signature(e), f"{a.name}="))
    line_start = text.rfind("\n", 0, offset) + 1
    at_line_start = re.fullmatch(r"\s*[A-Za-z_]*", text[line_start:offset]) is not None
    if at_line_start and inside is None:
        items += [Completion(k, "keyword") for k in keywords()]
    for name, (kind, e) in sorted(callables().items()):
        items.append(Completion(name, kind, signature(e), getattr(e, "doc", "") or ""))
    if an.index is not None:
        seen = set()
        for s in reversed(an.index.visible_at(offset)):
            if s.name not in seen:
                seen.add(s.name)
                items.append(Completion(s.name, "name", f"{s.kind} {s.value.type}", s.full))
    return items


# ---------------------------------------------------------------- inlay hints

def inlay_hints(an: Analysis, start: int = 0, end: int | None = None) -> list[tuple[int, str]]:
    """`: f32[N, 50, 50, 32]` after each written binding's name, within [start, end)."""
    ix = an.index
    if ix is None:
        return []
    end = len(an.source.text) if end is None else end
    return [(s.span.end, f": {s.value.type}") for s in ix.symbols
            if s.kind == "binding" and s.written and start <= s.span.end <= end]


__all__ = ["Analysis", "analyze", "hover", "definition", "references", "outline", "Outline",
           "completions", "Completion", "inlay_hints", "keywords", "callables"]
