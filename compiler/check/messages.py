"""Wording shared by every checker diagnostic: signatures, op prefixes, counts, did-you-mean
for unknown names, and the window trace under an empty conv/pool output."""
from __future__ import annotations

from dataclasses import fields, is_dataclass

from ...spec import ast
from ...spec.diagnostics import Diagnostic, did_you_mean, error
from ...spec.source import Span
from ..ir import Value
from ..ops import REQUIRED
from ..ops.common import fmt

OP_WORDS = {"add": "+", "sub": "-", "mul": "*", "div": "/", "neg": "-"}


class Abort(Exception):
    """Unwinds the current statement after its diagnostic has been recorded."""


def with_op(op: str, message: str) -> str:
    """Prefix a rule's message with the op, unless it already names it."""
    return message if f"`{op}`" in message else f"`{op}`: {message}"


def count(n: int, noun: str) -> str:
    return f"{n} {noun}" + ("" if n == 1 else "s")


def signature(entry) -> str:
    """`name(a, b=1)` for anything with a name and op-style args (op, layer, initializer, optimizer)."""
    return call_signature(entry.name, entry.args)


def call_signature(name: str, args) -> str:
    parts = [a.name if a.default is REQUIRED else f"{a.name}={fmt(a.default)}" for a in args]
    return f"{name}({', '.join(parts)})"


def unknown(what: str, name: str, span: Span, candidates) -> Diagnostic:
    """`unknown op `x``, with the nearest known name or the list of them."""
    hint = did_you_mean(name, candidates)
    return error(f"unknown-{what}", f"unknown {what} `{name}`", span,
                 help=f"did you mean `{hint}`?" if hint else
                 f"known {what}s: {', '.join(sorted(candidates))}")


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


def names_in(node) -> set[str]:
    """Every name an AST mentions (references only, not declarations); a work list, not
    recursion, so any depth of expression is fine."""
    found: set[str] = set()
    todo = [node]
    while todo:
        n = todo.pop()
        if isinstance(n, ast.Name):
            found.add(n.id)
        elif isinstance(n, tuple):
            todo.extend(n)
        elif is_dataclass(n) and not isinstance(n, type):
            todo.extend(getattr(n, f.name) for f in fields(n) if f.name != "span")
    return found
