"""What the checker learned about each name of a spec, kept as data for editors and pictures:
where every input, param, const and binding is declared, its type and scope, which written
name refers to which of them, which value each written op or layer call computes and which
params a layer call created. The Checker fills it as it goes; nothing here re-checks a rule.

Spans from the spec text are kept as they are; sugar's made-up names (a stack step's
binding, a layer's params) carry the span of the step or call that made them."""
from __future__ import annotations

from dataclasses import dataclass, field

from ...spec import ast
from ...spec.source import Source, Span
from ..ir import Graph, Value
from ..ops import REGISTRY


@dataclass
class Symbol:
    """A declared name: an input, param, const or binding (`kind` is the Value's, or `binding`)."""

    name: str                     # as the spec says it: "pool4"
    kind: str                     # input | param | const | binding
    span: Span                    # the declared name, or the step / call sugar made it at
    decl: Span                    # the whole statement (the layer call, for a layer's params)
    value: Value
    scope: tuple[str, ...] = ()
    origin: str | None = None     # "step 2 of `stack logits`"
    params: tuple[Value, ...] = ()  # the params the layer call that defines it created
    written: bool = True          # the span is the name itself, as written

    @property
    def full(self) -> str:
        return "/".join(self.scope + (self.name,))


@dataclass
class Ref:
    span: Span
    symbol: Symbol


@dataclass
class CallSite:
    """A written op or layer call and the value it computes."""

    name: str                     # the op or layer
    kind: str                     # op | layer
    span: Span                    # the whole call
    func: Span                    # its name
    value: Value
    params: tuple[Value, ...] = ()

    def explain(self) -> str | None:
        """The account of its result by the op that made it, if that op's table entry has one
        (reshape's -1, also under `flatten`)."""
        node = self.value.node
        explain = REGISTRY[node.op].extra.get("explain") if node is not None and node.op in REGISTRY else None
        return explain(node) if explain is not None else None


@dataclass
class ScopeSite:
    path: tuple[str, ...]
    span: Span                    # the scope's name (or the layer call that made it)
    decl: Span                    # the whole block


@dataclass
class Role:
    """An output, metric or the loss: what the model hands out."""

    kind: str                     # output | metric | loss
    name: str
    span: Span
    decl: Span
    value: Value


@dataclass
class Index:
    source: Source
    graph: Graph | None = None    # the graph as far as it was built, for initializers and counts
    symbols: list[Symbol] = field(default_factory=list)
    refs: list[Ref] = field(default_factory=list)
    calls: list[CallSite] = field(default_factory=list)
    scopes: list[ScopeSite] = field(default_factory=list)
    roles: list[Role] = field(default_factory=list)
    _by_value: dict[int, Symbol] = field(default_factory=dict)

    # ------------------------------------------------------------ filled by the Checker

    def written(self, span: Span, name: str) -> bool:
        """Whether the text at `span` is `name` itself (a string scope name keeps its quotes)."""
        return self.source.text[span.start:span.end].strip("\"'") == name and span.end > span.start

    def define(self, ident: ast.Ident, value: Value, stmt, scope: list[str]) -> None:
        written = self.written(ident.span, ident.name)
        old = self._by_value.get(value.id)
        if old is not None and old.name == ident.name:     # a layer's output, named again outside
            decl = getattr(stmt, "span", ident.span)
            if written and not old.written:
                old.span, old.decl, old.written = ident.span, decl, True
            elif not old.written and decl.start <= old.decl.start and old.decl.end <= decl.end:
                old.span, old.decl = ident.span, decl            # a stack step around the layer call
            old.origin = old.origin or getattr(stmt, "origin", None)
            return
        kind = "binding" if value.kind == "node" else value.kind
        sym = Symbol(ident.name, kind, ident.span, getattr(stmt, "span", ident.span), value, tuple(scope),
                     getattr(stmt, "origin", None), written=written)
        self.symbols.append(sym)
        self._by_value[value.id] = sym

    def ref(self, name: ast.Name, value) -> None:
        sym = self._by_value.get(getattr(value, "id", None)) if isinstance(value, Value) else None
        if sym is not None and self.written(name.span, name.id):
            self.refs.append(Ref(name.span, sym))

    def call(self, c: ast.Call, kind: str, value, params=()) -> None:
        if isinstance(value, Value) and self.written(c.func.span, c.func.name):
            self.calls.append(CallSite(c.func.name, kind, c.span, c.func.span, value, tuple(params)))
            sym = self._by_value.get(value.id)
            if params and sym is not None:
                sym.params = tuple(params)

    def scope(self, s: ast.ScopeBlock, path: list[str]) -> None:
        self.scopes.append(ScopeSite(tuple(path), s.name.span, s.span))

    def role(self, kind: str, name: str, span: Span, decl: Span, value) -> None:
        if isinstance(value, Value):
            self.roles.append(Role(kind, name, span, decl, value))

    # ------------------------------------------------------------ read by editors

    def symbol_of(self, value: Value) -> Symbol | None:
        return self._by_value.get(value.id)

    def at(self, offset: int):
        """The innermost thing at a character offset: a Ref, Symbol (its declared name),
        CallSite, Role or ScopeSite, or None. Names win over the calls around them."""
        def inside(span: Span) -> bool:
            return span.start <= offset < span.end or (offset == span.end and span.end > span.start)
        names = [(r.span, r) for r in self.refs] + [(s.span, s) for s in self.symbols if s.written] \
            + [(r.span, r) for r in self.roles if self.written(r.span, r.name)] \
            + [(s.span, s) for s in self.scopes if self.written(s.span, s.path[-1])]
        hits = [(span, item) for span, item in names if inside(span)]
        if not hits:
            hits = [(c.func, c) for c in self.calls if inside(c.func)] or \
                [(c.span, c) for c in self.calls if inside(c.span)] or \
                [(s.span, s) for s in self.symbols if not s.written and inside(s.span)]
        if not hits:
            return None
        return min(hits, key=lambda h: h[0].end - h[0].start)[1]

    def visible_at(self, offset: int) -> list[Symbol]:
        """Names declared before `offset` (the spec's names are visible from their line on)."""
        return [s for s in self.symbols if s.written and s.decl.end <= offset
                and not s.name.startswith("l2_penalty_")]

    def line_of(self, span: Span) -> int:
        return self.source.line_col(span.start)[0]

