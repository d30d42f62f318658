"""The argument kinds a signature may use: what each accepts and how a message names it.

One table for ops, layers, initializers and optimizers. A kind that is not static
("tensor", "initializer") is handed to the caller as the expression the spec wrote."""
from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

from ..types import Sym


@dataclass(frozen=True)
class Kind:
    words: str                                    # "must be {words}, got ..."
    accepts: Callable[[object], bool] | None      # None: anything the arg's own convert allows
    static: bool = True


def _is_int(v) -> bool:
    return isinstance(v, int) and not isinstance(v, bool)


def _is_number(v) -> bool:
    return isinstance(v, (int, float)) and not isinstance(v, bool)


def _int_or_ints(v) -> bool:
    """strides=2 is converted to a pair before this check, axis=1 is one axis."""
    return _is_int(v) or (isinstance(v, tuple) and all(_is_int(d) for d in v))


def _sizes(v) -> bool:
    return isinstance(v, tuple) and all(_is_int(d) or isinstance(d, Sym) for d in v)


def _pairs(v) -> bool:
    return isinstance(v, tuple) and all(isinstance(p, tuple) and len(p) == 2 and all(_is_int(d) for d in p)
                                        for p in v)


KINDS: dict[str, Kind] = {
    "tensor": Kind("a tensor", None, static=False),
    "tensors": Kind("a list of tensors", None, static=False),
    "initializer": Kind("an initializer call", None, static=False),
    "int": Kind("an integer", _is_int),
    "float": Kind("a number", _is_number),
    "str": Kind("a string", lambda v: isinstance(v, str)),
    "bool": Kind("true or false", lambda v: isinstance(v, bool)),
    "ints": Kind("a list of ints", _int_or_ints),
    "axes": Kind("an int or a list of ints", _int_or_ints),
    "shape": Kind("a list of sizes (ints, -1 or N)", _sizes),
    "pairs": Kind("a list of [before, after] pairs of ints", _pairs),
    "dtype": Kind("a dtype", None),
}
