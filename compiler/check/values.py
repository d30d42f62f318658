"""Compile-time values: number literals not yet typed (Lit), failed bindings (Poison), fixed
arguments (numbers, strings, lists, true/false, dtypes), type expressions and const arrays.

`Values` is a part of the Checker: it reads the environment (a tensor name is not a fixed
value) and the batch symbol, and reports through the checker."""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from ...spec import ast
from ...spec.diagnostics import error
from ...spec.source import Span
from ..types import DECLARABLE_DTYPES, Sym, TensorType


class Poison:
    """Stands for a value whose definition failed; anything computed from it is skipped."""


POISON = Poison()


@dataclass
class Lit:
    """A number literal not yet given a dtype (it takes its partner operand's)."""
    value: int | float
    span: Span


_WORDS = {"true": True, "True": True, "false": False, "False": False, "None": None,
          "none": None, "f32": "f32", "i32": "i32", "float32": "f32", "int32": "i32"}
_DTYPE_HINTS = {"float32": "f32", "int32": "i32", "float": "f32", "int": "i32"}


class Values:
    """Static evaluation for the Checker (needs self.env, self.batch_sym, self.report)."""

    def type_expr(self, t: ast.TypeExpr, allow_batch: bool) -> TensorType:
        if t.dtype.name not in DECLARABLE_DTYPES:
            hint = _DTYPE_HINTS.get(t.dtype.name)
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

    def arith(self, e: ast.BinOp, a, b):
        """`a op b` for two fixed numbers, ints staying ints where the result is whole."""
        if e.op == "/" and b == 0:
            self.report(error("div-zero", "division by zero", e.span))
        r = {"+": lambda: a + b, "-": lambda: a - b, "*": lambda: a * b, "/": lambda: a / b}[e.op]()
        return int(r) if isinstance(r, float) and e.op != "/" and r.is_integer() and \
            isinstance(a, int) and isinstance(b, int) else r

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
            left, chain = operator_chain(expr)
            acc = self.static(left)
            for node in chain:
                b = self.static(node.right)
                if not (_is_number(acc) and _is_number(b)):
                    self.report(error("not-static", "a fixed value (number, string or list) is needed here",
                                      node.span))
                acc = self.arith(node, acc, b)
            return acc
        if isinstance(expr, ast.Name):
            if expr.id in _WORDS:
                return _WORDS[expr.id]
            if expr.id == (self.batch_sym or "N"):
                return Sym(expr.id)
            if expr.id in self.env:
                self.report(error("not-static", f"`{expr.id}` is a tensor, but a fixed value is needed here",
                                  expr.span))
            return expr.id        # a bare word, e.g. activation=relu; the consumer validates it
        self.report(error("not-static", "a fixed value (number, string or list) is needed here",
                          expr.span))


def _is_number(v) -> bool:
    return isinstance(v, (int, float)) and not isinstance(v, bool)


def operator_chain(e: ast.BinOp) -> tuple[ast.Expr, list[ast.BinOp]]:
    """`a + b - c ...` parses left-deep: its first operand and its operators in the order they
    apply, found in a loop, so a chain of any length is evaluated without recursion."""
    chain = []
    while isinstance(e, ast.BinOp):
        chain.append(e)
        e = e.left
    return e, chain[::-1]
