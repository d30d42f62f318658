"""The op table. Each op is defined once: its spec-facing signature (tf.nn argument names),
its shape rule, its gradient rule (vjp) and, in lowering, its kernel.

Shape rules take the operand types and normalized attrs and return the result type, or raise
OpError naming the argument at fault; the checker turns that into a located diagnostic.
Gradient rules build backward nodes through a builder, from other registered ops."""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Callable

from ..types import TensorType

REQUIRED = object()


class OpError(Exception):
    """A shape or attribute problem, said in terms of the op's own arguments."""

    def __init__(self, message: str, arg: str | None = None, notes=(), help: str | None = None,
                 code: str = "shape"):
        super().__init__(message)
        self.message, self.arg, self.notes, self.help, self.code = message, arg, tuple(notes), help, code


@dataclass(frozen=True)
class Arg:
    """One argument of an op as a spec writes it.

    kind: "tensor" (an operand), "tensors" (a list of operands, as concat's `values`; at most
    one per op) or a static kind of the table in compiler/check/kinds.py
    (int, ints, float, str, bool, dtype, axes, shape, pairs)."""

    name: str
    kind: str = "tensor"
    default: Any = REQUIRED
    convert: Callable[[Any], Any] | None = None   # normalize a static value; raises OpError
    aliases: tuple[str, ...] = ()
    quiet_default: bool = False     # kernel comments leave it out at its default (an argument added
                                    # later: kernels that do not use it keep their text)

    @property
    def is_operand(self) -> bool:
        return self.kind in ("tensor", "tensors")


@dataclass(frozen=True)
class OpDef:
    name: str
    args: tuple[Arg, ...]
    shape: Callable[[list[TensorType], dict], TensorType]
    vjp: Callable | None = None          # (builder, node, dout) -> tuple of input grads (or None)
    expand: Callable | None = None       # composite ops: (builder, inputs, attrs) -> Value
    public: bool = True                  # callable from a spec (backward-only ops are not)
    doc: str = ""
    extra: dict = field(default_factory=dict)
    kernel: Callable | None = None       # (node) -> kernel.Kernel for lowering, or kernel.ALIAS

    @property
    def tensor_args(self) -> tuple[Arg, ...]:
        return tuple(a for a in self.args if a.is_operand)

    def input_names(self, count: int) -> tuple[str, ...]:
        """The argument each of a node's `count` inputs is: a list argument's items are
        `values[0]`, `values[1]`, ... (it takes what the others leave)."""
        args = self.tensor_args
        items = count - (len(args) - 1)
        out: list[str] = []
        for a in args:
            out += [f"{a.name}[{i}]" for i in range(items)] if a.kind == "tensors" else [a.name]
        return tuple(out)


REGISTRY: dict[str, OpDef] = {}


def register(op: OpDef) -> OpDef:
    assert op.name not in REGISTRY, f"op {op.name} registered twice"
    REGISTRY[op.name] = op
    return op


def public_ops() -> list[str]:
    return sorted(name for name, op in REGISTRY.items() if op.public)


# Importing the families fills REGISTRY.
from . import elementwise, conv, pool, reduce, shape, pad, nn, losses, depthwise, resize, norm  # noqa: E402,F401
