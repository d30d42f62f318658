"""The optimizer table: each optimizer a spec may name, defined once (TF's rules).

An entry holds its hyper-parameters (TF's names, defaults, aliases) as op-style `Arg`s, so
the checker binds `adam(lr=0.001, beta_1=0.9)` like an op call; the slots it keeps per param
(each a slab the size of all params); the check of their values; and the C statements of
its update, which `update.c.j2` lays out around a loop over the param slab. In the C,
`{name}` stands for a hyper-parameter's float literal; `lr` and the step `t` are arguments
of the train step, and each slot is a `float*` named after it."""
from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Callable

from .ops import Arg, OpError


@dataclass(frozen=True)
class OptimizerDef:
    name: str
    args: tuple[Arg, ...]                  # hyper-parameters: kind "float", defaults, aliases
    slots: tuple[str, ...]                 # per-param state, in the order of the `opt` slab
    prologue: tuple[str, ...]              # C before the loop over params
    body: tuple[str, ...]                  # C for element i
    doc: str = ""
    check: Callable[[dict], None] | None = None   # raises OpError if the values make no sense

    @property
    def defaults(self) -> dict[str, float]:
        """Hyper-parameters that have a default (for graphs built without the checker)."""
        return {a.name: a.default for a in self.args if isinstance(a.default, float)}

    def c_update(self, literals: dict[str, str]) -> dict:
        """The C of one update, hyper-parameters filled in with their float literals."""
        prologue = [line.format(**literals) for line in self.prologue]
        body = [line.format(**literals) for line in self.body]
        uses_t = any(re.search(r"\bt\b", line) for line in prologue + body)
        return dict(prologue=prologue, slots=list(self.slots), body=body, uses_t=uses_t)


def _lr() -> Arg:
    return Arg("lr", "float", aliases=("learning_rate",))


def _positive(name: str):
    def check(hyper):
        if name in hyper and hyper[name] <= 0:
            raise OpError(f"`{name}` must be positive, got {hyper[name]:g}", arg=name, code="optimizer")
    return check


def _fraction(name: str):
    def check(hyper):
        if name in hyper and not 0 <= hyper[name] < 1:
            raise OpError(f"`{name}` must be in [0, 1), got {hyper[name]:g}", arg=name, code="optimizer")
    return check


def _all(*checks):
    def check(hyper):
        for c in checks:
            c(hyper)
    return check


OPTIMIZERS: dict[str, OptimizerDef] = {}


def register(opt: OptimizerDef) -> OptimizerDef:
    assert opt.name not in OPTIMIZERS, f"optimizer {opt.name} registered twice"
    OPTIMIZERS[opt.name] = opt
    return opt


register(OptimizerDef(
    "sgd", (_lr(),), (), (),
    ("params[i] -= lr * grads[i];",),
    doc="params -= lr * grad", check=_positive("lr")))

register(OptimizerDef(
    "momentum", (_lr(), Arg("momentum", "float")), ("momentum",), (),
    ("momentum[i] = {momentum} * momentum[i] + grads[i];",
     "params[i] -= lr * momentum[i];"),
    doc="acc = momentum * acc + grad; params -= lr * acc",
    check=_all(_positive("lr"), _fraction("momentum"))))

register(OptimizerDef(
    "adam",
    (Arg("lr", "float", 0.001, aliases=("learning_rate",)), Arg("beta1", "float", 0.9, aliases=("beta_1",)),
     Arg("beta2", "float", 0.999, aliases=("beta_2",)), Arg("epsilon", "float", 1e-7)),
    ("m", "v"),
    ("const float lr_t = (float)((double)lr * sqrt(1.0 - pow((double){beta2}, t)) /",
     "                           (1.0 - pow((double){beta1}, t)));"),
    ("const float g = grads[i];",
     "m[i] = {beta1} * m[i] + (1.0f - {beta1}) * g;",
     "v[i] = {beta2} * v[i] + (1.0f - {beta2}) * g * g;",
     "params[i] -= lr_t * m[i] / (sqrtf(v[i]) + {epsilon});"),
    doc="bias-corrected moments m, v (TF's epsilon-hat form)",
    check=_all(_positive("lr"), _fraction("beta1"), _fraction("beta2"), _positive("epsilon"))))
