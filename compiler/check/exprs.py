"""Tensor expressions: names, literals, operators and op calls, each applied through the op
table's shape rule; a rule's OpError becomes a diagnostic that points at the argument at
fault, names the op and the binding, and shows the operands' types.

`Exprs` is a part of the Checker (it needs lookup, report, static and the builder `b`)."""
from __future__ import annotations

from ...spec import ast
from ...spec.diagnostics import Diagnostic, Label, error
from ...spec.source import Span
from ..ir import Value
from ..ops import REGISTRY, OpError, public_ops
from .binder import bind
from .layers import LAYERS
from .messages import OP_WORDS, unknown, window_trace, with_op
from .values import POISON, Lit, Poison, operator_chain


class Exprs:
    """Expression evaluation for the Checker."""

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

    def expr(self, e):
        if isinstance(e, ast.Name):
            return self.lookup(e)
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
        """An operator chain, applied left to right (operator_chain: no recursion)."""
        left, chain = operator_chain(e)
        acc = self.expr(left)
        for node in chain:
            acc = self.binary(node, acc, self.expr(node.right))
        return acc

    def binary(self, e: ast.BinOp, a, b):
        if isinstance(a, Poison) or isinstance(b, Poison):
            return POISON
        if isinstance(a, Lit) and isinstance(b, Lit):
            return Lit(self.arith(e, a.value, b.value), e.span)
        a, b = self.literal_partner(a, b), self.literal_partner(b, a)
        op = {"+": "add", "-": "sub", "*": "mul", "/": "div"}[e.op]
        return self.apply(op, e, [a, b], {}, arg_exprs={"x": e.left, "y": e.right})

    def literal_partner(self, v, partner):
        """A literal operand becomes a scalar const of its partner's dtype."""
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
        if name in LAYERS:
            return self.layer_call(c)
        opdef = REGISTRY.get(name)
        if opdef is None or not opdef.public:
            self.report(unknown("op", name, c.func.span, public_ops() + list(LAYERS)))
        c = self.piped_list(c, opdef)
        values, given = bind(self, name, opdef.args, c, self.in_binding(c), tensor=self.operand)
        tensors, exprs = [], dict(given)
        for a in opdef.tensor_args:
            if a.name not in given:
                continue
            if a.kind == "tensors":             # a list's items are named values[0], values[1], ...
                tensors += values[a.name]
                exprs.update({f"{a.name}[{i}]": e for i, e in enumerate(given[a.name].items)})
            else:
                tensors.append(values[a.name])
        attrs = {a.name: values[a.name] for a in opdef.args if not a.is_operand}
        if any(isinstance(t, Poison) for t in tensors):
            return POISON
        value = self.apply(name, c, tensors, attrs, arg_exprs=exprs)
        self.index.call(c, "op", value)
        return value

    def piped_list(self, c: ast.Call, opdef) -> ast.Call:
        """`a |> concat([b], axis=-1)` (or the step in a `stack`) is `concat([a, b], axis=-1)`:
        a piped value joins the list an op takes first, so skips need no repeated names."""
        if not (c.piped and opdef.args and opdef.args[0].kind == "tensors" and len(c.args) >= 2
                and isinstance(c.args[1], ast.ListExpr)):
            return c
        values = ast.ListExpr((c.args[0],) + c.args[1].items, c.args[1].span)
        core = ast.Call(c.func, (values,) + c.args[2:], c.kwargs, c.span)
        self.subst[id(c)] = core
        return core

    def operand(self, e):
        """An op's tensor argument; a bare number becomes an f32 scalar."""
        v = self.expr(e)
        return self.literal_partner(v, None) if isinstance(v, Lit) else v

    def in_binding(self, c) -> list[Label]:
        """A secondary label over the whole call, naming the binding it computes."""
        binding = self.b.name_hint
        return [Label(c.span, f"in `{binding}`", False)] if binding and c is not None else []

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
        words |= {k: self.arg_words(e, k) for k, e in arg_exprs.items() if k not in words}

        def fill(text):
            for k, w in words.items():
                text = text.replace("{" + k + "}", w)
            return text
        message = with_op(OP_WORDS.get(op, op), fill(err.message))
        notes = [fill(n) for n in err.notes]
        if not notes:       # show what the op was given, unless the message already does
            for a, v in zip(opdef.input_names(len(inputs)), inputs):
                note = f"`{words[a]}` is {v.type}"
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
