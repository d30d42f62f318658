"""The spec's abstract syntax: small frozen dataclasses, one per form, each with its source span."""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Union

from .source import Span


# ---------------------------------------------------------------- expressions

@dataclass(frozen=True)
class Ident:
    """A name being declared or a keyword-argument name (not a reference)."""
    name: str
    span: Span


@dataclass(frozen=True)
class Name:
    """A reference to a binding, or a bare word argument such as `relu`, `f32`, `true`."""
    id: str
    span: Span


@dataclass(frozen=True)
class Number:
    value: int | float
    text: str
    span: Span


@dataclass(frozen=True)
class String:
    value: str
    span: Span


@dataclass(frozen=True)
class ListExpr:
    items: tuple["Expr", ...]
    span: Span


@dataclass(frozen=True)
class Keyword:
    name: Ident
    value: "Expr"
    span: Span


@dataclass(frozen=True)
class Call:
    func: Ident
    args: tuple["Expr", ...]
    kwargs: tuple[Keyword, ...]
    span: Span
    piped: bool = field(default=False, compare=False)   # args[0] came from `|>` or a `stack` step


@dataclass(frozen=True)
class BinOp:
    op: str               # one of + - * /
    left: "Expr"
    right: "Expr"
    span: Span


@dataclass(frozen=True)
class Neg:
    operand: "Expr"
    span: Span


Expr = Union[Name, Number, String, ListExpr, Call, BinOp, Neg]


@dataclass(frozen=True)
class TypeExpr:
    dtype: Ident
    dims: tuple[Expr, ...]
    span: Span


# ---------------------------------------------------------------- statements

@dataclass(frozen=True)
class ModelDecl:
    name: Ident
    span: Span


@dataclass(frozen=True)
class InputDecl:
    name: Ident
    type: TypeExpr
    span: Span


@dataclass(frozen=True)
class ParamDecl:
    name: Ident
    type: TypeExpr
    init: Expr
    span: Span


@dataclass(frozen=True)
class StateDecl:
    """A non-trainable tensor that only `update` statements change, in training steps."""
    name: Ident
    type: TypeExpr
    init: Expr
    span: Span


@dataclass(frozen=True)
class UpdateDecl:
    """`update NAME = EXPR`: each training step stores EXPR (computed from the step's values
    and the state as it was before the step) into the state NAME."""
    name: Ident
    value: Expr
    span: Span


@dataclass(frozen=True)
class ConstDecl:
    name: Ident
    type: TypeExpr
    value: Expr
    span: Span


@dataclass(frozen=True)
class Let:
    name: Ident
    value: Expr
    span: Span
    origin: str | None = None      # where sugar made it: "step 2 of `stack logits`"


@dataclass(frozen=True)
class ScopeBlock:
    name: Ident           # the scope's name; a string scope keeps its text ("layer1-conv1")
    body: tuple["Stmt", ...]
    span: Span


@dataclass(frozen=True)
class StackStep:
    scope: Ident | None
    call: Call
    span: Span


@dataclass(frozen=True)
class StackBlock:
    name: Ident
    input: Expr
    steps: tuple[StackStep, ...]
    span: Span


@dataclass(frozen=True)
class OutputDecl:
    name: Ident
    value: Expr | None
    span: Span


@dataclass(frozen=True)
class LossDecl:
    value: Expr
    span: Span


@dataclass(frozen=True)
class MetricDecl:
    name: Ident
    value: Expr
    span: Span


@dataclass(frozen=True)
class OptimizerDecl:
    value: Expr
    span: Span


Stmt = Union[ModelDecl, InputDecl, ParamDecl, StateDecl, UpdateDecl, ConstDecl, Let, ScopeBlock, StackBlock,
             OutputDecl, LossDecl, MetricDecl, OptimizerDecl]


@dataclass(frozen=True)
class Module:
    body: tuple[Stmt, ...]
    span: Span
