"""The initializer table: each initializer a param may name, defined once (TF's names).

Arguments are op-style `Arg`s (kind "float", default or REQUIRED, in positional order), so
the checker binds `truncated_normal(0.0, 0.1)` like an op call. `check` raises OpError when
the values or the param's type make no sense. The runtime samples the values
(runtime/model.py) from the manifest's kind and args: it may not import the compiler."""
from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

from .ops import REQUIRED, Arg, OpError
from .types import TensorType


@dataclass(frozen=True)
class InitializerDef:
    name: str
    args: tuple[Arg, ...]
    doc: str = ""
    check: Callable[[dict, TensorType], None] | None = None


def _positive_stddev(args: dict, t: TensorType) -> None:
    if args["stddev"] <= 0:
        raise OpError(f"`stddev` must be positive, got {args['stddev']:g}", arg="stddev", code="init")


def _ordered_bounds(args: dict, t: TensorType) -> None:
    if args["minval"] >= args["maxval"]:
        raise OpError(f"`minval` ({args['minval']:g}) must be below `maxval` ({args['maxval']:g})",
                      arg="minval", code="init")


def _fan_in_out(name: str):
    def check(args: dict, t: TensorType) -> None:
        if t.rank < 2:
            raise OpError(f"`{name}` needs a param of rank 2 or more to know its fan-in and fan-out; "
                          f"this one is {t}", help="use zeros() for biases", code="init")
    return check


INITIALIZERS: dict[str, InitializerDef] = {}


def register(init: InitializerDef) -> InitializerDef:
    assert init.name not in INITIALIZERS, f"initializer {init.name} registered twice"
    INITIALIZERS[init.name] = init
    return init


def _float(name: str, default=REQUIRED) -> Arg:
    return Arg(name, "float", default)


register(InitializerDef("zeros", (), "all 0"))
register(InitializerDef("ones", (), "all 1"))
register(InitializerDef("constant", (_float("value"),), "all `value`"))
register(InitializerDef("random_normal", (_float("mean", 0.0), _float("stddev", 1.0)), "normal",
                        check=_positive_stddev))
register(InitializerDef("truncated_normal", (_float("mean", 0.0), _float("stddev", 1.0)),
                        "normal, values beyond two stddev redrawn", check=_positive_stddev))
register(InitializerDef("random_uniform", (_float("minval", 0.0), _float("maxval", 1.0)), "uniform",
                        check=_ordered_bounds))
for _name, _doc in (("glorot_uniform", "uniform, limit sqrt(6 / (fan_in + fan_out))"),
                    ("glorot_normal", "truncated normal, stddev sqrt(2 / (fan_in + fan_out))"),
                    ("he_normal", "truncated normal, stddev sqrt(2 / fan_in)")):
    register(InitializerDef(_name, (), _doc, check=_fan_in_out(_name)))
