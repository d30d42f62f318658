"""AST -> spec text in core forms; `cnnc check --desugar` prints what layer sugar became."""
from __future__ import annotations

from . import ast

_PREC = {"+": 1, "-": 1, "*": 2, "/": 2}


def expr(e, subst=None) -> str:
    subst = subst or {}
    if id(e) in subst:
        s = subst[id(e)]
        return s.id if isinstance(s, ast.Name) else expr(s, subst)
    if isinstance(e, ast.Name):
        return e.id
    if isinstance(e, ast.Number):
        return e.text
    if isinstance(e, ast.String):
        return f'"{e.value}"'
    if isinstance(e, ast.ListExpr):
        return "[" + ", ".join(expr(i, subst) for i in e.items) + "]"
    if isinstance(e, ast.Neg):
        return "-" + _wrap(e.operand, 3, subst)
    if isinstance(e, ast.BinOp):
        p = _PREC[e.op]
        return f"{_wrap(e.left, p, subst)} {e.op} {_wrap(e.right, p + 1, subst)}"
    if isinstance(e, ast.Call):
        args = [expr(a, subst) for a in e.args] + [f"{k.name.name}={expr(k.value, subst)}" for k in e.kwargs]
        return f"{e.func.name}({', '.join(args)})"
    raise TypeError(e)


def _wrap(e, prec, subst) -> str:
    text = expr(e, subst)
    if isinstance(e, ast.BinOp) and id(e) not in subst and _PREC[e.op] < prec:
        return f"({text})"
    return text


def _type(t: ast.TypeExpr) -> str:
    return f"{t.dtype.name}[{', '.join(expr(d) for d in t.dims)}]"


def _scope_name(name: str) -> str:
    return name if name.isidentifier() else f'"{name}"'


def stmt(s, subst=None, indent: int = 0, loss_extra=()) -> list[str]:
    pad = "  " * indent
    e = lambda x: expr(x, subst)  # noqa: E731
    if isinstance(s, ast.ModelDecl):
        return [f"{pad}model {s.name.name}"]
    if isinstance(s, ast.InputDecl):
        return [f"{pad}input {s.name.name}: {_type(s.type)}"]
    if isinstance(s, ast.ParamDecl):
        return [f"{pad}param {s.name.name}: {_type(s.type)} = {e(s.init)}"]
    if isinstance(s, ast.StateDecl):
        return [f"{pad}state {s.name.name}: {_type(s.type)} = {e(s.init)}"]
    if isinstance(s, ast.UpdateDecl):
        return [f"{pad}update {s.name.name} = {e(s.value)}"]
    if isinstance(s, ast.ConstDecl):
        return [f"{pad}const {s.name.name}: {_type(s.type)} = {e(s.value)}"]
    if isinstance(s, ast.Let):
        return [f"{pad}{s.name.name} = {e(s.value)}"]
    if isinstance(s, ast.ScopeBlock):
        inner = [line for b in s.body for line in stmt(b, subst, indent + 1)]
        return [f"{pad}scope {_scope_name(s.name.name)} {{"] + inner + [f"{pad}}}"]
    if isinstance(s, ast.OutputDecl):
        return [f"{pad}output {s.name.name}" + (f" = {e(s.value)}" if s.value is not None else "")]
    if isinstance(s, ast.LossDecl):
        return [f"{pad}loss = {' + '.join([e(s.value)] + list(loss_extra))}"]
    if isinstance(s, ast.MetricDecl):
        return [f"{pad}metric {s.name.name} = {e(s.value)}"]
    if isinstance(s, ast.OptimizerDecl):
        return [f"{pad}optimizer = {e(s.value)}"]
    raise TypeError(s)
