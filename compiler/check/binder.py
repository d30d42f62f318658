"""THE argument binder: matches a call's arguments to a signature of op-style `Arg`s and
checks each fixed value against its kind. Ops, layers, initializers and optimizers all bind
through it, so a misspelt, missing, repeated or extra argument reads the same everywhere.

It talks to the checker through three things: `report(diag)` (records it and aborts the
statement), `static(expr)` (a compile-time value) and `diags` (to name the op in a
not-static error raised below it)."""
from __future__ import annotations

from dataclasses import replace
from typing import Callable

from ...spec import ast
from ...spec.diagnostics import Label, did_you_mean, error
from ..ops import REQUIRED, Arg, OpError
from ..ops.common import fmt
from .kinds import KINDS
from .messages import Abort, call_signature, count, with_op


def bind(ck, name: str, params: tuple[Arg, ...], c: ast.Call, where: list[Label],
         tensor: Callable | None = None) -> tuple[dict, dict]:
    """(values by arg name, expressions given by arg name).

    A static arg's value is checked and converted; a missing one takes its default. A
    tensor arg's value is `tensor(expr)` (in signature order, so the first fault is the
    leftmost), or the expression itself when no `tensor` is given; so is an initializer's."""
    sig = call_signature(name, params)
    given: dict[str, ast.Expr] = {}
    if len(c.args) > len(params):
        most = f"at most {count(len(params), 'argument')}" if params else "no arguments"
        ck.report(error("too-many-args", f"`{name}` takes {most}, got {len(c.args)}",
                        c.args[len(params)].span, label="one too many", secondary=where,
                        help=f"signature: {sig}"))
    for p, a in zip(params, c.args):
        given[p.name] = a
    lookup = {p.name: p for p in params} | {al: p for p in params for al in p.aliases}
    for kw in c.kwargs:
        p = lookup.get(kw.name.name)
        if p is None:
            hint = did_you_mean(kw.name.name, [p.name for p in params])
            ck.report(error("unknown-kwarg", f"`{name}` has no argument `{kw.name.name}`",
                            kw.name.span, secondary=where,
                            notes=[f"signature: {sig}"] if hint else [],
                            help=f"did you mean `{hint}`?" if hint else f"signature: {sig}"))
        if p.name in given:
            ck.report(error("duplicate-arg", f"argument `{p.name}` of `{name}` is given twice",
                            kw.span, label="given again here",
                            secondary=[Label(given[p.name].span, "first given here", False)],
                            help=f"signature: {sig}"))
        given[p.name] = kw.value
    values = {}
    for p in params:
        if p.name not in given:
            if p.default is REQUIRED:
                ck.report(error("missing-arg", f"`{name}` needs `{p.name}`", c.span,
                                label=f"no `{p.name}` given", help=f"signature: {sig}"))
            values[p.name] = p.default
            continue
        e = given[p.name]
        if KINDS[p.kind].static:
            values[p.name] = static_value(ck, name, p, e, where)
        elif p.kind == "tensor" and tensor is not None:
            values[p.name] = tensor(e)
        elif p.kind == "tensors" and tensor is not None:
            if not isinstance(e, ast.ListExpr) or not e.items:
                ck.report(error("not-tensor", f"`{p.name}` of `{name}` must be a list of tensors, "
                                f"e.g. [a, b]", e.span, secondary=where, help=f"signature: {sig}"))
            values[p.name] = [tensor(item) for item in e.items]
        else:
            values[p.name] = e
    return values, given


def static_value(ck, name: str, p: Arg, e: ast.Expr, where: list[Label]):
    """The fixed value of arg `p` of `name`: evaluated, converted by the arg, checked by its kind."""
    try:
        v = ck.static(e)
    except Abort:                       # say which op and binding wanted the fixed value
        d = ck.diags[-1]
        ck.diags[-1] = replace(d, message=with_op(name, d.message), labels=d.labels + tuple(where))
        raise
    if p.convert is not None and v is not None:
        try:
            v = p.convert(v)
        except OpError as err:
            ck.report(error(err.code, with_op(name, err.message), e.span, notes=err.notes,
                            help=err.help, secondary=where))
    kind = KINDS[p.kind]
    if kind.accepts is not None and v is not None and not kind.accepts(v):
        ck.report(error("attr", f"`{p.name}` of `{name}` must be {kind.words}, got {fmt(v)}",
                        e.span, secondary=where))
    return v
