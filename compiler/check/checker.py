"""AST -> typed graph: the driver, the statements, scopes and names, and the end-of-spec
checks. Expressions (exprs.py), fixed values (values.py) and layer expansion (sugar.py) are
the other parts of the same Checker; every call is bound by binder.py.

A binding whose definition failed is poisoned: later uses of it are skipped silently, so
one mistake is reported once, not again at every line downstream."""
from __future__ import annotations

from dataclasses import dataclass, field, replace

from ...spec import ast
from ...spec.diagnostics import Diagnostic, Label, did_you_mean, error, warning
from ...spec.source import Source, Span
from ..builder import Builder
from ..initializers import INITIALIZERS
from ..ir import Graph, Init, Optimizer, Value
from ..ops import REGISTRY, OpError
from ..optimizers import OPTIMIZERS
from ..types import TensorType
from .binder import bind
from .exprs import Exprs
from .layers import LAYERS
from .messages import Abort, names_in, unknown, with_op
from .sugar import LayerSugar
from .values import POISON, Poison, Values


@dataclass
class Checked:
    graph: Graph | None
    diagnostics: list[Diagnostic]
    expansions: dict = field(default_factory=dict)    # id(layer Call) -> core statements, for --desugar
    subst: dict = field(default_factory=dict)         # id(layer or piped Call) -> what it became
    penalties: list = field(default_factory=list)     # names of L2 terms added to the loss
    module: ast.Module | None = None                  # the checked (desugared) module

    @property
    def ok(self) -> bool:
        return self.graph is not None


class Checker(Exprs, Values, LayerSugar):
    def __init__(self, source: Source, module: ast.Module):
        self.source, self.module = source, module
        self.diags: list[Diagnostic] = []
        self.graph = Graph(model="", source_name=source.filename)
        self.b = Builder(self.graph)
        self.env: dict[str, Value | Poison] = {}
        self.scope: list[str] = []
        self.param_spans: dict[str, Span] = {}
        self.update_spans: dict[str, Span] = {}        # state full name -> its `update` statement
        self.batch_sym: str | None = None
        self.penalties: list[Value] = []               # L2 terms from layer sugar
        self.penalty_names: list[str] = []
        self.penalty_count = 0
        self.layer_counts: dict[str, int] = {}         # automatic scopes: conv_1, conv_2, ...
        self.subst: dict[int, ast.Expr] = {}
        self.expansions: dict = {}                     # id(layer Call) -> core statements it became
        self.loss_span: Span | None = None
        self.model_span: Span | None = None
        self.optimizer_span: Span | None = None
        self.output_spans: dict[str, Span] = {}
        self.metric_spans: dict[str, Span] = {}
        self.hints: set[str] = set()                   # names suggested by "did you mean"
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
        origin, first = getattr(stmt, "origin", None), len(self.diags)
        try:
            self._run(handler, stmt)
        finally:
            if origin:          # a stack step's mistake says which step it is
                self.diags[first:] = [replace(d, notes=d.notes + (f"in {origin}",))
                                      if d.severity.value == "error" else d for d in self.diags[first:]]

    def _run(self, handler, stmt) -> None:
        try:
            handler(stmt)
        except Abort:
            pass
        except RecursionError:      # nesting deeper than Python's stack: a diagnostic, not a crash
            self.diags.append(error("too-deep", "this statement nests its expressions too deeply to "
                                    "check", stmt.span, help="split it into several bindings"))

    def report(self, diag: Diagnostic) -> None:
        self.diags.append(diag)
        if diag.severity.value == "error":
            raise Abort

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
        self.define(s.name, POISON)
        t = self.type_expr(s.type, allow_batch=True)
        v = self.graph.new_value(s.name.name, t, "input", s.span)
        self.graph.inputs.append(v)
        self.define(s.name, v)
        if self.scope:
            self.report(error("input-in-scope", "inputs are declared outside scopes", s.span,
                              help="move it before the `scope`; inputs have no scope path"))

    def stmt_ParamDecl(self, s: ast.ParamDecl) -> None:
        full = self.scoped(s.name.name)
        if full in self.param_spans:
            first = self.param_spans[full]
            self.define(s.name, POISON)
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
        except Abort:
            self.define(s.name, POISON)
            raise
        v = self.graph.new_value(full, t, "param", s.span)
        self.graph.params.append(v)
        self.graph.inits[v.id] = init
        self.define(s.name, v)

    def stmt_StateDecl(self, s: ast.StateDecl) -> None:
        full = self.scoped(s.name.name)
        if full in self.param_spans:
            self.define(s.name, POISON)
            self.report(error("param-twice", f"`{full}` is declared twice", s.name.span,
                              label="declared again here",
                              secondary=[Label(self.param_spans[full], "first declared here", False)],
                              help="rename one, or put it in its own `scope`"))
        self.param_spans[full] = s.span
        try:
            t = self.type_expr(s.type, allow_batch=False)
            if t.dtype != "f32":
                self.report(error("state-dtype", f"state `{full}` must be f32, not {t.dtype}", s.type.span,
                                  notes=["state is stored as float32, beside the params"],
                                  help=f"declare it f32[{', '.join(map(str, t.shape))}] and cast(..., i32) "
                                  "where an integer is needed"))
            init = self.initializer(s.init, t)
        except Abort:
            self.define(s.name, POISON)
            raise
        v = self.graph.new_value(full, t, "state", s.span)
        self.graph.state.append(v)
        self.graph.inits[v.id] = init
        self.define(s.name, v)

    def stmt_UpdateDecl(self, s: ast.UpdateDecl) -> None:
        target = self.lookup(ast.Name(s.name.name, s.name.span))
        if isinstance(target, Poison):
            return
        if target.kind != "state":
            what = {"param": "a param", "input": "an input", "const": "a const"}.get(target.kind, "a binding")
            why = ("the optimizer changes params" if target.kind == "param" else
                   "only state changes from one training step to the next")
            self.report(error("update-not-state", f"`{s.name.name}` is {what}, not state: only `state` "
                              "can be updated", s.name.span, label="not state",
                              notes=[f"`{s.name.name}` is {target.type}; {why}"],
                              help=f"declare it with `state {s.name.name}: {target.type} = zeros()`"
                              if target.kind != "param" else "declare a `state` for a value training "
                              "steps set, and leave params to the optimizer"))
        if target.name in self.update_spans:
            self.report(error("update-twice", f"state `{target.name}` is updated twice", s.span,
                              label="updated again here",
                              secondary=[Label(self.update_spans[target.name], "first updated here", False)],
                              help="a training step gives each state one new value: combine the two "
                              "expressions into one `update`"))
        self.update_spans[target.name] = s.span
        v = self.tensor(s.value, self.scoped(s.name.name + "_update"))
        if isinstance(v, Poison):
            return
        if v.type != target.type:
            help_ = "give the update the state's exact shape"
            if v.type.rank == target.type.rank + 1 and tuple(v.type.shape[1:]) == tuple(target.type.shape):
                help_ = "reduce over the batch first, e.g. reduce_mean(..., axis=0)"
            self.report(error("update-type", f"`update {s.name.name}` computes {v.type}, but the state is "
                              f"{target.type}", s.value.span, label=f"this is {v.type}",
                              secondary=[Label(target.span, f"declared {target.type} here", False)],
                              notes=["an update replaces the state's value: no broadcasting"], help=help_))
        self.graph.updates[target.id] = v

    def stmt_ConstDecl(self, s: ast.ConstDecl) -> None:
        self.define(s.name, POISON)
        t = self.type_expr(s.type, allow_batch=False)
        data = self.literal_array(s.value, t)
        v = self.graph.new_value(self.scoped(s.name.name), t, "const", s.span)
        self.graph.consts[v.id] = data
        self.graph.const_values.append(v)
        self.define(s.name, v)

    def stmt_Let(self, s: ast.Let) -> None:
        old = self.env.get(s.name.name)
        if isinstance(old, Value) and old.kind == "state" and old.name == self.scoped(s.name.name):
            self.report(error("state-assign", f"`{s.name.name}` is state: a binding would hide it, not "
                              "change it", s.name.span, label="binds a new value",
                              secondary=[Label(old.span, "state declared here", False)],
                              notes=["state changes only in training steps, by `update`"],
                              help=f"write `update {s.name.name} = ...` to set it in each training step, "
                              "or pick another name"))
        self.define(s.name, POISON)
        self.define(s.name, self.tensor(s.value, self.scoped(s.name.name)))

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
            self.define(s.name, POISON)
            v = self.tensor(s.value, self.scoped(s.name.name))
            self.define(s.name, v)
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
        c = s.value
        if not isinstance(c, ast.Call):
            self.report(error("optimizer", "expected an optimizer call such as `sgd(lr=0.01)`", c.span))
        kind = c.func.name
        if kind not in OPTIMIZERS:
            self.report(unknown("optimizer", kind, c.func.span, OPTIMIZERS))
        opt = OPTIMIZERS[kind]
        values, _ = bind(self, kind, opt.args, c, [])
        hyper = {k: float(v) for k, v in values.items()}
        self.table_check(opt.check, kind, c.span, hyper)
        self.graph.optimizer = Optimizer(kind, tuple(hyper.items()))

    def initializer(self, e, t: TensorType) -> Init:
        if isinstance(e, ast.Number) or (isinstance(e, ast.Neg) and isinstance(e.operand, ast.Number)):
            return Init("constant", (("value", float(self.static(e))),))
        if not isinstance(e, ast.Call):
            self.report(error("init", "a param needs an initializer call such as `zeros()` or "
                              "`truncated_normal(stddev=0.1)`", e.span))
        kind = e.func.name
        if kind not in INITIALIZERS:
            self.report(unknown("initializer", kind, e.func.span, INITIALIZERS))
        init = INITIALIZERS[kind]
        values, _ = bind(self, kind, init.args, e, [])
        args = {k: float(v) for k, v in values.items()}
        self.table_check(init.check, kind, e.span, args, t)
        return Init(kind, tuple(args.items()))

    def table_check(self, check, name: str, span: Span, *values) -> None:
        """An optimizer's or initializer's own check of its values, reported at its call."""
        if check is None:
            return
        try:
            check(*values)
        except OpError as err:
            self.report(error(err.code, with_op(name, err.message), span, notes=err.notes, help=err.help))

    # ------------------------------------------------------------ end of spec

    def finish(self) -> None:
        if self.penalties and self.graph.loss is not None:
            total = self.graph.loss
            self.b.name_hint = "loss"
            for p in self.penalties:
                total = self.b.op("add", total, p)
            total.name = "loss"
            self.graph.loss = total
        if self.optimizer_span is None and self.graph.loss is not None and self.loss_span:
            self.diags.append(warning("no-optimizer", "a loss is declared but no optimizer; training "
                                      "will use sgd(lr=0.01)", self.loss_span,
                                      help="add e.g. `optimizer = adam(lr=0.001)`"))
            self.graph.optimizer = Optimizer("sgd", (("lr", 0.01),))
        if self.graph.loss is None:
            for name, span in self.update_spans.items():
                self.diags.append(error("update-no-training", f"`update {name.rsplit('/', 1)[-1]}` would "
                                        "never run: updates run in training steps, and this spec has "
                                        "no loss", span,
                                        help="declare a `loss = ...` to train, or remove the update"))
        self.unused_warnings()

    def unused_warnings(self) -> None:
        used = {v.id for n in self.graph.nodes for v in n.inputs}
        used |= {v.id for v in self.graph.outputs.values()} | self.referenced
        mentioned = set()
        if any(d.severity.value == "error" for d in self.diags):
            # A failed statement stops before it looks its names up: do not call them unused.
            mentioned = names_in(self.module) | self.hints
        for v in self.graph.params + self.graph.inputs:
            if v.id not in used and v.name.rsplit("/", 1)[-1] not in mentioned:
                kind = "param" if v.kind == "param" else "input"
                self.diags.append(warning(f"unused-{kind}", f"{kind} `{v.name}` is never used", v.span,
                                          help="remove it, or use it in a binding"))

    # ------------------------------------------------------------ names

    def define(self, ident: ast.Ident, value) -> None:
        """Bind a name in the current environment (POISON first, so a failed definition stays failed)."""
        self.env[ident.name] = value

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
        if name.id in REGISTRY or name.id in LAYERS:
            notes.append(f"`{name.id}` is an op; call it: {name.id}(...)")
        self.report(error("unknown-name", f"`{name.id}` is not defined", name.span, label="not found",
                          notes=notes, help=f"did you mean `{hint}`?" if hint else None))


def check(module: ast.Module, source: Source) -> Checked:
    """Type-check a (desugared) module; returns the graph (None on errors) and all diagnostics."""
    return Checker(source, module).run()
