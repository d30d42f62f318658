"""Syntax-only sugar -> core forms: a `stack` becomes one binding per step (AST -> AST).

Layer calls (conv, dense, ...) need their input's shape, so they are expanded later, by the
checker (compiler/check/sugar.py)."""
from __future__ import annotations

from dataclasses import replace

from . import ast


def desugar(module: ast.Module) -> ast.Module:
    return replace(module, body=_body(module.body))


def _body(body) -> tuple:
    out = []
    for stmt in body:
        if isinstance(stmt, ast.StackBlock):
            out.extend(_stack(stmt))
        elif isinstance(stmt, ast.ScopeBlock):
            out.append(replace(stmt, body=_body(stmt.body)))
        else:
            out.append(stmt)
    return tuple(out)


def _stack(stack: ast.StackBlock) -> list:
    """`stack y = x { a: f(...) ; g(...) }` -> `scope a { y_1 = f(x, ...) }` ; `y = g(y_1, ...)`."""
    out, prev = [], stack.input
    for i, step in enumerate(stack.steps, 1):
        last = i == len(stack.steps)
        # the last step binds the stack's own name, declared where the header writes it
        name = stack.name if last else ast.Ident(f"{stack.name.name}_{i}", step.span)
        call = replace(step.call, args=(prev,) + step.call.args, piped=True)
        what = f"`{step.scope.name}`, " if step.scope else ""
        let = ast.Let(name, call, step.span, origin=f"{what}step {i} of `stack {stack.name.name}`")
        out.append(ast.ScopeBlock(step.scope, (let,), step.span) if step.scope else let)
        prev = ast.Name(name.name, step.span)
    if not stack.steps:
        out.append(ast.Let(stack.name, stack.input, stack.span))
    return out
