"""AST -> typed graph. Resolves names and scopes, binds op arguments by their tf.nn names,
runs every op's shape rule, and collects every diagnostic in one pass.

A binding whose definition failed is poisoned: later uses of it are skipped silently, so
one mistake is reported once, not again at every line downstream."""
from __future__ import annotations

import math
from dataclasses import dataclass, field, replace

import numpy as np

from ..spec import ast
from ..spec.diagnostics import Diagnostic, Label, SpecError, did_you_mean, error, warning
from ..spec.source import Source, Span
from . import initializers, layers, optimizers
from .builder import Builder
from .ir import Graph, Init, Optimizer, Value
from .ops import REGISTRY, REQUIRED, OpDef, OpError, public_ops
from .ops.common import fmt as _show
from .types import DECLARABLE_DTYPES, Sym, TensorType


class Poison:
    """Stands for a value whose definition failed; anything computed from it is skipped."""


POISON = Poison()


@dataclass
class Lit:
    """A number literal not yet given a dtype (it takes its partner operand's)."""
    value: int | float
    span: Span


class _Abort(Exception):
    """Unwinds the current statement after its diagnostic has been recorded."""


@dataclass
class Checked:
    graph: Graph | None
    diagnostics: list[Diagnostic]
    expansions: dict = field(default_factory=dict)    # id(layer Call) -> core statements, for --desugar
    subst: dict = field(default_factory=dict)         # id(layer Call) -> Name it became
    penalties: list = field(default_factory=list)     # names of L2 terms added to the loss
    module: ast.Module | None = None                  # the checked (desugared) module

    @property
    def ok(self) -> bool:
        return self.graph is not None


class Checker:
    def __init__(self, source: Source, module: ast.Module):
        self.source, self.module = source, module
        self.diags: list[Diagnostic] = []
        self.graph = Graph(model="", source_name=source.filename)
        self.b = Builder(self.graph)
        self.env: dict[str, Value | Poison] = {}
        self.env_span: dict[str, Span] = {}
        self.scope: list[str] = []
        self.param_spans: dict[str, Span] = {}
        self.batch_sym: str | None = None
        self.penalties: list[Value] = []               # L2 terms from layer sugar
        self.loss_span: Span | None = None
        self.layer_counts: dict[str, int] = {}
        self.subst: dict[int, ast.Name] = {}
        self.expansions: dict = {}                     # id(layer Call) -> core statements it became
        self.penalty_count = 0
        self.model_span: Span | None = None
        self.optimizer_span: Span | None = None
        self.output_spans: dict[str, Span] = {}
        self.metric_spans: dict[str, Span] = {}
        self.hints: set[str] = set()                   # names suggested by "did you mean"
        self.penalty_names: list[str] = []
        self.current_rhs = None                        # the expression a Let binds, for layer naming
        self.referenced: set[int] = set()              # ids of values a spec names, even in failed statements

    # ------------------------------------------------------------ driver

    def run(self) -> Checked:
        body = self.module.body
        if not any(isinstance(s, ast.ModelDecl) for s in body):
            at = body[0].span if body else Span(0, 0)
            self.diags.append(error("no-model", "a spec must start with `model NAME`", at,
                                    help="add a first line such as `model mnist`"))
        for stmt in body:
            self.statement(stmt)
        self.finish()
        errors = [d for d in self.diags if d.severity.value == "error"]
        return Checked(None if errors else self.graph, self.diags, self.expansions, self.subst,
                       self.penalty_names, self.module)

    def statement(self, stmt) -> None:
        handler = getattr(self, "stmt_" + type(stmt).__name__)
        try:
            handler(stmt)
        except _Abort:
            pass

    def report(self, diag: Diagnostic) -> None:
        self.diags.append(diag)
        if diag.severity.value == "error":
            raise _Abort

    def scoped(self, name: str) -> str:
        return "/".join(self.scope + [name])

    # ------------------------------------------------------------ statements

    def stmt_ModelDecl(self, s: ast.ModelDecl) -> None:
        if self.graph.model:
            self.report(error("model-twice", "the model is named twice", s.span,
                              notes=[f"it is already `{self.graph.model}`"],
                              secondary=[Label(self.model_span, "first named here", False)]))
        self.model_span = s.span
        if s is not self.module.body[0]:
            self.report(error("model-late", "`model NAME` must be the first statement", s.span,
                              help="move it to the top of the file"))
        self.graph.model = s.name.name

    def stmt_InputDecl(self, s: ast.InputDecl) -> None:
        self.bind(s.name, POISON)
        t = self.type_expr(s.type, allow_batch=True)
        v = self.graph.new_value(s.name.name, t, "input", s.span)
        self.graph.inputs.append(v)
        self.bind(s.name, v)
        if self.scope:
            self.report(error("input-in-scope", "inputs are declared outside scopes", s.span,
                              help="move it before the `scope`; inputs have no scope path"))

    def stmt_ParamDecl(self, s: ast.ParamDecl) -> None:
        full = self.scoped(s.name.name)
        if full in self.param_spans:
            first = self.param_spans[full]
            self.bind(s.name, POISON)
            self.report(error("param-twice", f"param `{full}` is declared twice", s.name.span,
                              label="declared again here",
                              secondary=[Label(first, "first declared here", False)],
                              help="rename one, or put it in its own `scope`"))
        self.param_spans[full] = s.span
        try:
            t = self.type_expr(s.type, allow_batch=False)
            if t.dtype != "f32":
                self.report(error("param-dtype", f"param `{full}` must be f32 to be trained, not {t.dtype}",
                                  s.type.span, help="use `const` for fixed integer tensors"))
            init = self.initializer(s.init, t)
        except _Abort:
            self.bind(s.name, POISON)
            raise
        v = self.graph.new_value(full, t, "param", s.span)
        self.graph.params.append(v)
        self.graph.inits[v.id] = init
        self.bind(s.name, v)

    def stmt_ConstDecl(self, s: ast.ConstDecl) -> None:
        self.bind(s.name, POISON)
        t = self.type_expr(s.type, allow_batch=False)
        data = self.literal_array(s.value, t)
        v = self.graph.new_value(self.scoped(s.name.name), t, "const", s.span)
        self.graph.consts[v.id] = data
        self.graph.const_values.append(v)
        self.bind(s.name, v)

    def stmt_Let(self, s: ast.Let) -> None:
        self.bind(s.name, POISON)
        self.bind(s.name, self.tensor(s.value, self.scoped(s.name.name)))

    def stmt_ScopeBlock(self, s: ast.ScopeBlock) -> None:
        if "/" in s.name.name or not s.name.name:
            self.diags.append(error("scope-name", f"scope name `{s.name.name}` may not be empty or "
                                    "contain `/`", s.name.span, help="nest scopes instead"))
        self.scope.append(s.name.name)
        try:
            for stmt in s.body:
                self.statement(stmt)
        finally:
            self.scope.pop()

    def stmt_OutputDecl(self, s: ast.OutputDecl) -> None:
        if s.name.name in self.output_spans:
            self.report(error("output-twice", f"output `{s.name.name}` is declared twice", s.name.span,
                              secondary=[Label(self.output_spans[s.name.name], "first declared here", False)],
                              help="outputs need distinct names; `output NAME = EXPR` names a new one"))
        self.output_spans[s.name.name] = s.name.span
        if s.value is None:
            v = self.lookup(ast.Name(s.name.name, s.name.span))
        else:
            self.bind(s.name, POISON)
            v = self.tensor(s.value, self.scoped(s.name.name))
            self.bind(s.name, v)
        if not isinstance(v, Poison):
            self.graph.outputs[s.name.name] = v

    def stmt_LossDecl(self, s: ast.LossDecl) -> None:
        if self.graph.loss is not None or self.loss_span is not None:
            self.report(error("loss-twice", "the loss is declared twice", s.span,
                              secondary=[Label(self.loss_span, "first declared here", False)]))
        self.loss_span = s.span
        v = self.tensor(s.value, "loss")
        if isinstance(v, Poison):
            return
        self.need_scalar(v, "loss", s.value.span)
        self.graph.loss = v

    def stmt_MetricDecl(self, s: ast.MetricDecl) -> None:
        if s.name.name == "loss":
            self.report(error("metric-twice", "a metric may not be called `loss`: that name is the "
                              "loss's", s.name.span))
        if s.name.name in self.metric_spans:
            self.report(error("metric-twice", f"metric `{s.name.name}` is declared twice", s.name.span,
                              secondary=[Label(self.metric_spans[s.name.name], "first declared here", False)]))
        self.metric_spans[s.name.name] = s.name.span
        v = self.tensor(s.value, s.name.name)
        if isinstance(v, Poison):
            return
        self.need_scalar(v, f"metric `{s.name.name}`", s.value.span)
        self.graph.metrics[s.name.name] = v

    def stmt_OptimizerDecl(self, s: ast.OptimizerDecl) -> None:
        if self.optimizer_span is not None:
            self.report(error("optimizer-twice", "the optimizer is declared twice", s.span,
                              secondary=[Label(self.optimizer_span, "first declared here", False)]))
        self.optimizer_span = s.span
        call = s.value
        if not isinstance(call, ast.Call):
            self.report(error("optimizer", "expected an optimizer call such as `sgd(lr=0.01)`", call.span))
        kind = call.func.name
        if kind not in optimizers.OPTIMIZERS:
            self.report(self.unknown("optimizer", kind, call.func.span, optimizers.OPTIMIZERS))
        spec = optimizers.OPTIMIZERS[kind]
        values = self.static_kwargs(call, list(spec), kind, aliases=optimizers.ALIASES)
        hyper = {}
        for k, default in spec.items():
            if k not in values and default is None:
                self.report(error("missing-arg", f"`{kind}` needs `{k}`", call.span,
                                  help=f"e.g. {kind}({', '.join(f'{a}=...' for a in spec)})"))
            hyper[k] = float(values.get(k, default))
        problem = optimizers.check_values(kind, hyper)
        if problem:
            self.report(error("optimizer", f"`{kind}`: {problem}", call.span))
        self.graph.optimizer = Optimizer(kind, tuple(hyper.items()))

    # ------------------------------------------------------------ end of spec

    def finish(self) -> None:
        if self.penalties and self.graph.loss is not None:
            total = self.graph.loss
            self.b.name_hint = "loss"
            for p in self.penalties:
                total = self.b.op("add", total, p)
            total.name = "loss"
            self.graph.loss = total
        elif self.penalties and self.loss_span is None:
            pass    # the layers' penalties only matter once there is a loss
        if self.optimizer_span is None and self.graph.loss is not None and self.loss_span:
            self.diags.append(warning("no-optimizer", "a loss is declared but no optimizer; training "
                                      "will use sgd(lr=0.01)", self.loss_span,
                                      help="add e.g. `optimizer = adam(lr=0.001)`"))
            self.graph.optimizer = Optimizer("sgd", (("lr", 0.01),))
        self.unused_warnings()

    def unused_warnings(self) -> None:
        used = {v.id for n in self.graph.nodes for v in n.inputs}
        used |= {v.id for v in self.graph.outputs.values()} | self.referenced
        mentioned = set()
        if any(d.severity.value == "error" for d in self.diags):
            # A failed statement stops before it looks its names up: do not call them unused.
            mentioned = _names_in(self.module) | self.hints
        for v in self.graph.params + self.graph.inputs:
            if v.id not in used and v.name.rsplit("/", 1)[-1] not in mentioned:
                kind = "param" if v.kind == "param" else "input"
                self.diags.append(warning(f"unused-{kind}", f"{kind} `{v.name}` is never used", v.span,
                                          help=f"remove it, or use it in a binding"))

    # ------------------------------------------------------------ names

    def bind(self, ident: ast.Ident, value) -> None:
        self.env[ident.name] = value
        self.env_span[ident.name] = ident.span

    def lookup(self, name: ast.Name):
        if name.id in self.env:
            v = self.env[name.id]
            if isinstance(v, Value):
                self.referenced.add(v.id)
            return v
        hint = did_you_mean(name.id, self.env)
        if hint:
            self.hints.add(hint)
        notes = []
        if name.id in REGISTRY or name.id in layers.LAYERS:
            notes.append(f"`{name.id}` is an op; call it: {name.id}(...)")
        self.report(error("unknown-name", f"`{name.id}` is not defined", name.span, label="not found",
                          notes=notes, help=f"did you mean `{hint}`?" if hint else None))

    def unknown(self, what: str, name: str, span: Span, candidates) -> Diagnostic:
        hint = did_you_mean(name, candidates)
        return error(f"unknown-{what}", f"unknown {what} `{name}`", span,
                     help=f"did you mean `{hint}`?" if hint else
                     f"known {what}s: {', '.join(sorted(candidates))}")

    # ------------------------------------------------------------ types and literals

    def type_expr(self, t: ast.TypeExpr, allow_batch: bool) -> TensorType:
        if t.dtype.name not in DECLARABLE_DTYPES:
            hint = {"float32": "f32", "int32": "i32", "float": "f32", "int": "i32"}.get(t.dtype.name)
            self.report(error("dtype", f"unknown dtype `{t.dtype.name}`", t.dtype.span,
                              help=f"use `{hint}`" if hint else "use f32 or i32"))
        dims = []
        for i, d in enumerate(t.dims):
            if isinstance(d, ast.Name) and not allow_batch:
                self.report(error("symbolic-dim", f"`{d.id}` is symbolic, but params and consts need "
                                  "fixed sizes", d.span))
            if isinstance(d, ast.Name):
                if i != 0:
                    self.report(error("symbolic-dim", f"only the first (batch) dimension may be symbolic, "
                                      f"`{d.id}` is at position {i}", d.span))
                if self.batch_sym not in (None, d.id):
                    self.report(error("symbolic-dim", f"the batch dimension is called `{self.batch_sym}` "
                                      f"elsewhere; one spec has one batch size", d.span,
                                      help=f"write `{self.batch_sym}`"))
                self.batch_sym = d.id
                dims.append(Sym(d.id))
                continue
            v = self.static(d)
            if not isinstance(v, int) or v <= 0:
                self.report(error("dim", f"a dimension must be a positive integer, got {v}", d.span))
            dims.append(v)
        return TensorType(t.dtype.name, tuple(dims))

    def literal_array(self, expr, t: TensorType) -> np.ndarray:
        value = self.static(expr)
        try:
            data = np.array(value, dtype=np.float32 if t.dtype == "f32" else np.int32)
        except (ValueError, TypeError):
            self.report(error("const", "const values must be a number or nested lists of numbers "
                              "with equal lengths", expr.span))
        if data.ndim == 0:
            return np.full(t.shape, data, dtype=data.dtype)
        if data.shape != t.shape:
            self.report(error("const-shape", f"the literal has shape {list(data.shape)} but the "
                              f"declared type is {t}", expr.span,
                              help=f"declare it as {t.dtype}[{', '.join(map(str, data.shape))}]"))
        if t.dtype == "i32" and not np.array_equal(np.array(value, dtype=np.float64), data):
            self.report(error("const", "an i32 const holds whole numbers only", expr.span))
        return data

    def static(self, expr, kind: str = "any"):
        """Evaluate a compile-time value: numbers, strings, lists, true/false/None, dtypes."""
        if isinstance(expr, ast.Number):
            return expr.value
        if isinstance(expr, ast.String):
            return expr.value
        if isinstance(expr, ast.ListExpr):
            return tuple(self.static(e, kind) for e in expr.items)
        if isinstance(expr, ast.Neg):
            v = self.static(expr.operand)
            if isinstance(v, (int, float)):
                return -v
        if isinstance(expr, ast.BinOp):
            a, b = self.static(expr.left), self.static(expr.right)
            if isinstance(a, (int, float)) and isinstance(b, (int, float)):
                if expr.op == "/" and b == 0:
                    self.report(error("div-zero", "division by zero", expr.span))
                r = {"+": lambda: a + b, "-": lambda: a - b, "*": lambda: a * b,
                     "/": lambda: a / b}[expr.op]()
                return int(r) if isinstance(r, float) and expr.op != "/" and r.is_integer() and \
                    isinstance(a, int) and isinstance(b, int) else r
        if isinstance(expr, ast.Name):
            words = {"true": True, "True": True, "false": False, "False": False, "None": None,
                     "none": None, "f32": "f32", "i32": "i32", "float32": "f32", "int32": "i32"}
            if expr.id in words:
                return words[expr.id]
            if expr.id == (self.batch_sym or "N"):
                return Sym(expr.id)
            if expr.id in self.env:
                self.report(error("not-static", f"`{expr.id}` is a tensor, but a fixed value is needed here",
                                  expr.span))
            return expr.id        # a bare word, e.g. activation=relu; the consumer validates it
        self.report(error("not-static", "a fixed value (number, string or list) is needed here",
                          expr.span))

    # ------------------------------------------------------------ tensor expressions

    def tensor(self, expr, name: str):
        """Evaluate an expression to a Value, naming its nodes after the binding `name`."""
        self.b.span, self.b.name_hint = expr.span, name
        saved, self.current_rhs = self.current_rhs, expr
        try:
            v = self.expr(expr)
        finally:
            self.current_rhs = saved
        if isinstance(v, Lit):
            v = self.b.scalar(v.value)
        if isinstance(v, Value) and v.kind == "node" and v.name.startswith(name + "."):
            self.b.names.discard(v.name)
            v.name = self.b.unique(name)
        return v

    def unique(self, name: str) -> str:
        return self.b.unique(name)

    def expr(self, e):
        if isinstance(e, ast.Name):
            v = self.lookup(e)
            return v
        if isinstance(e, ast.Number):
            return Lit(e.value, e.span)
        if isinstance(e, ast.Neg):
            v = self.expr(e.operand)
            if isinstance(v, Lit):
                return Lit(-v.value, e.span)
            return v if isinstance(v, Poison) else self.apply("neg", e, [v], {})
        if isinstance(e, ast.BinOp):
            return self.binop(e)
        if isinstance(e, ast.Call):
            return self.call(e)
        what = "a string" if isinstance(e, ast.String) else "a list"
        self.report(error("not-tensor", f"expected a tensor, found {what}", e.span))

    def binop(self, e: ast.BinOp):
        a, b = self.expr(e.left), self.expr(e.right)
        if isinstance(a, Poison) or isinstance(b, Poison):
            return POISON
        if isinstance(a, Lit) and isinstance(b, Lit):
            return Lit(self.static(e), e.span)
        a, b = self.literal_partner(a, b), self.literal_partner(b, a)
        op = {"+": "add", "-": "sub", "*": "mul", "/": "div"}[e.op]
        return self.apply(op, e, [a, b], {}, arg_exprs={"x": e.left, "y": e.right})

    def literal_partner(self, v, partner):
        if not isinstance(v, Lit):
            return v
        dtype = partner.type.dtype if isinstance(partner, Value) else "f32"
        if dtype == "i32" and isinstance(v.value, float) and not v.value.is_integer():
            self.report(error("dtype", f"{v.value} is not a whole number but the other operand is i32",
                              v.span))
        self.b.span = v.span
        return self.b.scalar(v.value, dtype if dtype != "bool" else "f32")

    def call(self, c: ast.Call):
        name = c.func.name
        if name in layers.LAYERS:
            return layers.expand(self, c)
        opdef = REGISTRY.get(name)
        if opdef is None or not opdef.public:
            self.report(self.unknown("op", name, c.func.span, public_ops() + list(layers.LAYERS)))
        tensors, attrs, exprs = self.bind_args(opdef, c)
        if any(isinstance(t, Poison) for t in tensors):
            return POISON
        return self.apply(name, c, tensors, attrs, arg_exprs=exprs)

    def bind_args(self, opdef: OpDef, c: ast.Call):
        """Match positional and keyword args to the op's tf.nn signature."""
        given: dict[str, object] = {}
        params = opdef.args
        if len(c.args) > len(params):
            self.report(error("too-many-args", f"`{opdef.name}` takes at most {_count(len(params), 'argument')}, "
                              f"got {len(c.args)}", c.args[len(params)].span, label="one too many",
                              secondary=self.in_binding(c), help=f"signature: {signature(opdef)}"))
        for p, a in zip(params, c.args):
            given[p.name] = a
        lookup = {p.name: p for p in params} | {al: p for p in params for al in p.aliases}
        for kw in c.kwargs:
            p = lookup.get(kw.name.name)
            if p is None:
                hint = did_you_mean(kw.name.name, [p.name for p in params])
                self.report(error("unknown-kwarg", f"`{opdef.name}` has no argument `{kw.name.name}`",
                                  kw.name.span, secondary=self.in_binding(c),
                                  notes=[f"signature: {signature(opdef)}"] if hint else [],
                                  help=f"did you mean `{hint}`?" if hint else
                                  f"signature: {signature(opdef)}"))
            if p.name in given:
                self.report(error("duplicate-arg", f"argument `{p.name}` of `{opdef.name}` is given twice",
                                  kw.span, label="given again here",
                                  secondary=[Label(given[p.name].span, "first given here", False)],
                                  help=f"signature: {signature(opdef)}"))
            given[p.name] = kw.value
        tensors, attrs, spans = [], {}, {}
        for p in params:
            if p.name not in given:
                if p.default is REQUIRED:
                    self.report(error("missing-arg", f"`{opdef.name}` needs `{p.name}`", c.span,
                                      label=f"no `{p.name}` given", help=f"signature: {signature(opdef)}"))
                attrs[p.name] = p.default
                continue
            e = given[p.name]
            spans[p.name] = e
            if p.kind == "tensor":
                v = self.expr(e)
                tensors.append(self.literal_partner(v, None) if isinstance(v, Lit) else v)
            else:
                attrs[p.name] = self.static_attr(opdef, p, e, c)
        return tensors, attrs, spans

    def in_binding(self, c) -> list[Label]:
        """A secondary label over the whole call, naming the binding it computes."""
        binding = self.b.name_hint
        return [Label(c.span, f"in `{binding}`", False)] if binding and c is not None else []

    def static_attr(self, opdef: OpDef, p, e, c=None):
        try:
            v = self.static(e)
        except _Abort:                  # say which op and binding wanted the fixed value
            d = self.diags[-1]
            self.diags[-1] = replace(d, message=_with_op(opdef.name, d.message),
                                     labels=d.labels + tuple(self.in_binding(c)))
            raise
        if p.convert is not None and v is not None:
            try:
                v = p.convert(v)
            except OpError as err:
                self.report(error(err.code, _with_op(opdef.name, err.message), e.span, notes=err.notes,
                                  help=err.help, secondary=self.in_binding(c)))
        if p.kind in ("axes", "ints", "shape") and v is not None and not _int_list(v, p.kind):
            want = {"axes": "an int or a list of ints", "ints": "a list of ints",
                    "shape": "a list of sizes (ints, -1 or N)"}[p.kind]
            self.report(error("attr", f"`{p.name}` of `{opdef.name}` must be {want}, got {_show(v)}",
                              e.span, secondary=self.in_binding(c)))
        expect = {"int": int, "float": (int, float), "str": str, "bool": bool}.get(p.kind)
        if expect and v is not None and (not isinstance(v, expect) or (p.kind == "int" and isinstance(v, bool))):
            self.report(error("attr", f"`{p.name}` of `{opdef.name}` must be {_KIND_WORDS[p.kind]}, "
                              f"got {_show(v)}", e.span, secondary=self.in_binding(c)))
        return v

    def static_kwargs(self, c: ast.Call, names: list[str], what: str, aliases=None) -> dict:
        """Keyword/positional numeric args of an initializer or optimizer call."""
        out = {}
        aliases = aliases or {}
        for name, a in zip(names, c.args):
            out[name] = a
        if len(c.args) > len(names):
            self.report(error("too-many-args", f"`{what}` takes " + (f"at most {_count(len(names), 'argument')}"
                              if names else "no arguments"), c.args[len(names)].span))
        for kw in c.kwargs:
            key = aliases.get(kw.name.name, kw.name.name)
            if key not in names:
                hint = did_you_mean(kw.name.name, names)
                self.report(error("unknown-kwarg", f"`{what}` has no argument `{kw.name.name}`",
                                  kw.name.span, help=f"did you mean `{hint}`?" if hint else
                                  (f"it takes: {', '.join(names)}" if names else "it takes no arguments")))
            out[key] = kw.value
        values = {}
        for k, e in out.items():
            v = self.static(e)
            if not isinstance(v, (int, float)) or isinstance(v, bool):
                self.report(error("attr", f"`{k}` of `{what}` must be a number, got {_show(v)}", e.span))
            values[k] = v
        return values

    def initializer(self, e, t: TensorType) -> Init:
        if isinstance(e, ast.Number) or (isinstance(e, ast.Neg) and isinstance(e.operand, ast.Number)):
            return Init("constant", (("value", float(self.static(e))),))
        if not isinstance(e, ast.Call):
            self.report(error("init", "a param needs an initializer call such as `zeros()` or "
                              "`truncated_normal(stddev=0.1)`", e.span))
        kind = e.func.name
        if kind not in initializers.INITIALIZERS:
            self.report(self.unknown("initializer", kind, e.func.span, initializers.INITIALIZERS))
        spec = initializers.INITIALIZERS[kind]
        values = self.static_kwargs(e, list(initializers.ORDER[kind]), kind)
        args = {}
        for k, default in spec.items():
            if k not in values and default is None:
                self.report(error("missing-arg", f"`{kind}` needs `{k}`", e.span))
            args[k] = float(values.get(k, default))
        problem = initializers.check_values(kind, args)
        if problem:
            self.report(error("init", f"`{kind}`: {problem}", e.span))
        if kind.startswith(("glorot", "he_")) and t.rank < 2:
            self.report(error("init", f"`{kind}` needs a param of rank 2 or more to know its fan-in "
                              f"and fan-out; this one is {t}", e.span, help="use zeros() for biases"))
        return Init(kind, tuple(args.items()))

    # ------------------------------------------------------------ applying ops

    def apply(self, op: str, at, inputs, attrs, arg_exprs=None):
        """Run the op's shape rule and add its node; an OpError becomes a located diagnostic."""
        self.b.span = at.span
        try:
            return self.b.op(op, *inputs, **attrs)
        except OpError as err:
            self.report(self.op_diagnostic(op, at, err, inputs, arg_exprs or {}))

    def op_diagnostic(self, op, at, err: OpError, inputs, arg_exprs: dict) -> Diagnostic:
        """Point at the argument at fault, name the op and the binding, show the operands' types.

        `{arg}` in a rule's text becomes what the spec wrote for that argument."""
        span = arg_exprs[err.arg].span if err.arg in arg_exprs else at.span
        opdef = REGISTRY[op]
        words = {a.name: self.arg_words(arg_exprs.get(a.name), a.name) for a in opdef.args}

        def fill(text):
            for k, w in words.items():
                text = text.replace("{" + k + "}", w)
            return text
        message = _with_op(_OP_WORDS.get(op, op), fill(err.message))
        notes = [fill(n) for n in err.notes]
        if not notes:       # show what the op was given, unless the message already does
            tensor_args = [a.name for a in opdef.args if a.kind == "tensor"]
            for name, v in zip(tensor_args, inputs):
                note = f"`{words[name]}` is {v.type}"
                if str(v.type) not in message and isinstance(v, Value) and note not in notes:
                    notes.append(note)
        if err.code == "window-empty" and inputs:
            notes.append(window_trace(inputs[0]))
        binding = self.b.name_hint
        secondary = [Label(at.span, f"in `{binding}`", False)] if span != at.span and binding else []
        return error(err.code, message, span, notes=notes,
                     help=fill(err.help) if err.help else None, secondary=secondary,
                     label=f"in `{binding}`" if span == at.span and binding else "")

    def arg_words(self, e, fallback: str) -> str:
        """How a message names an operand: the binding, the short expression the spec wrote,
        or `f(...)` for a long one."""
        if isinstance(e, ast.Name):
            return e.id
        if e is None or e.span == self.b.span:      # layer sugar: no text of its own
            return fallback
        text = self.source.text[e.span.start:e.span.end]
        if len(text) <= 24 and "\n" not in text:
            return text
        if isinstance(e, ast.Call):
            return f"{e.func.name}(...)"
        return fallback

    def need_scalar(self, v: Value, what: str, span: Span) -> None:
        if v.type.rank != 0 or v.type.dtype != "f32":
            help_ = "wrap it in reduce_mean(...)" if v.type.rank else "cast it with cast(..., f32)"
            self.report(error("not-scalar", f"the {what} must be an f32 scalar, but it is {v.type}",
                              span, help=help_))


# ---------------------------------------------------------------- helpers

_KIND_WORDS = {"int": "an integer", "float": "a number", "str": "a string", "bool": "true or false"}


_OP_WORDS = {"add": "+", "sub": "-", "mul": "*", "div": "/", "neg": "-"}


def _with_op(op: str, message: str) -> str:
    """Prefix a rule's message with the op, unless it already names it."""
    return message if f"`{op}`" in message else f"`{op}`: {message}"


def _is_int(v) -> bool:
    return isinstance(v, int) and not isinstance(v, bool)


def _int_list(v, kind: str) -> bool:
    """Whether a static value fits an `axes`, `ints` or `shape` argument (after any conversion)."""
    if kind == "axes" and _is_int(v):
        return True
    if kind == "ints" and _is_int(v):
        return True                       # strides=2 is converted to a pair before this
    ok = (lambda d: _is_int(d) or isinstance(d, Sym)) if kind == "shape" else _is_int
    return isinstance(v, tuple) and all(ok(d) for d in v)


def _count(n: int, noun: str) -> str:
    return f"{n} {noun}" + ("" if n == 1 else "s")


def signature(opdef: OpDef) -> str:
    parts = []
    for a in opdef.args:
        parts.append(a.name if a.default is REQUIRED else f"{a.name}={_show(a.default)}")
    return f"{opdef.name}({', '.join(parts)})"


def window_trace(v: Value) -> str:
    """The height x width of each conv/pool step leading to v: where a VALID chain shrank it."""
    steps = []
    while v.node is not None and v.node.op in ("conv2d", "max_pool", "avg_pool", "relu", "bias_add", "add",
                                               "dropout_mask", "mul", "sigmoid", "tanh"):
        n = v.node
        if n.op in ("conv2d", "max_pool", "avg_pool"):
            k = n.attrs.get("ksize") or tuple(n.inputs[1].type.shape[:2])
            steps.append(f"{v.name.split('.')[0]} {v.type.shape[1]}x{v.type.shape[2]} "
                         f"({n.op} {k[0]}x{k[1]} {n.attrs['padding']})")
        v = n.inputs[0]
    if v.type.rank == 4:
        steps.append(f"{v.name} {v.type.shape[1]}x{v.type.shape[2]}")
    return "height x width along the way: " + " -> ".join(reversed(steps))


def _names_in(node) -> set[str]:
    """Every name an AST mentions (references only, not declarations)."""
    from dataclasses import fields, is_dataclass
    found: set[str] = set()

    def walk(n):
        if isinstance(n, ast.Name):
            found.add(n.id)
        elif isinstance(n, tuple):
            for x in n:
                walk(x)
        elif is_dataclass(n) and not isinstance(n, type):
            for f in fields(n):
                if f.name != "span":
                    walk(getattr(n, f.name))
    walk(node)
    return found


def check(module: ast.Module, source: Source) -> Checked:
    """Type-check a (desugared) module; returns the graph (None on errors) and all diagnostics."""
    return Checker(source, module).run()
