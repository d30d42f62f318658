"""Normalisation: tf.nn.batch_normalization, and `if_training`, which picks batch statistics
in training steps and moving ones elsewhere (modes.split removes it before autodiff)."""
from __future__ import annotations

from ..types import BroadcastError, broadcast_shapes
from . import Arg, OpDef, OpError, register
from .common import fmt, need_float

STATS = ("mean", "variance", "offset", "scale")


def _if_training_shape(ins, attrs):
    t, i = ins
    if t != i:
        raise OpError(f"`if_training` needs two values of one type, but `{{training}}` is {t} and "
                      f"`{{inference}}` is {i}", arg="inference", code="if-training",
                      notes=["a step uses one or the other, so both must fit where the result goes"],
                      help="give both the same shape (e.g. a reduce over the batch for the training value)")
    return t


register(OpDef("if_training", (Arg("training"), Arg("inference")), _if_training_shape,
               doc="`training` in train_step, `inference` in forward, backward and eval_step"))


def batch_normalization_shape(ins, attrs):
    x = ins[0]
    need_float(x, "x")
    if x.rank < 1:
        raise OpError(f"`x` must have at least one axis, got {x}", arg="x")
    for name, t in zip(STATS, ins[1:]):
        need_float(t, name)
        try:
            out = broadcast_shapes(x.shape, t.shape)
        except BroadcastError:
            out = None
        if out != tuple(x.shape):
            c = x.shape[-1]
            raise OpError(f"`{name}` is {t}, which does not broadcast to `x` ({x}) without changing it",
                          arg=name, code="broadcast",
                          notes=[f"`x` is {x}", f"`{{{name}}}` is {t}"],
                          help=f"per-channel statistics over the last axis are f32[{c}]")
    return x


def _epsilon(v):
    if not isinstance(v, (int, float)) or isinstance(v, bool) or v < 0:
        raise OpError(f"`variance_epsilon` must be a number >= 0, got {fmt(v)}", arg="variance_epsilon",
                      code="attr")
    return float(v)


def batch_normalization_expand(b, inputs, attrs):
    """TF's formula, op for op: inv = rsqrt(variance + eps) * scale;
    x * inv + (offset - mean * inv). The [C] terms are small; x is read once (and a conv's
    epilogue can absorb the two elementwise steps)."""
    batch_normalization_shape([v.type for v in inputs], attrs)
    x, mean, variance, offset, scale = inputs
    inv = b.op("rsqrt", b.op("add", variance, b.scalar(attrs["variance_epsilon"])))
    inv = b.op("mul", inv, scale)
    shift = b.op("sub", offset, b.op("mul", mean, inv))
    return b.op("add", b.op("mul", x, inv), shift)


register(OpDef("batch_normalization",
               (Arg("x"), Arg("mean"), Arg("variance"), Arg("offset"), Arg("scale"),
                Arg("variance_epsilon", "float", convert=_epsilon)),
               batch_normalization_shape, expand=batch_normalization_expand,
               doc="(x - mean) * scale / sqrt(variance + variance_epsilon) + offset"))
