"""Reductions over axes, argmax, and softmax along an axis."""
from __future__ import annotations

from ..types import TensorType
from . import Arg, OpDef, OpError, register
from .common import need_dtype, need_float, norm_axis
from ..kernel import (Kernel, Lin, contiguous_strides, nest, numel, pointwise, record, reduced_view,
                      reduction, split_axis)


def _axes(v):
    """None (all axes), an int, or a list of ints."""
    if v is None:
        return None
    if isinstance(v, int):
        return (v,)
    if isinstance(v, tuple) and all(isinstance(a, int) for a in v):
        return v
    raise OpError(f"`axis` must be an int, a list of ints or None, got {v}", arg="axis", code="attr")


def resolve_axes(axes, rank) -> tuple[int, ...]:
    if axes is None:
        return tuple(range(rank))
    out = tuple(sorted({norm_axis(a, rank) for a in axes}))
    if len(out) != len(axes):
        raise OpError(f"`axis` {list(axes)} names an axis twice", arg="axis", code="axis")
    return out


def reduce_shape(ins, attrs):
    x = ins[0]
    need_dtype(x, ("f32", "i32"), "input_tensor")
    axes = resolve_axes(attrs["axis"], x.rank)
    if attrs["keepdims"]:
        return x.with_shape(1 if i in axes else d for i, d in enumerate(x.shape))
    return x.with_shape(d for i, d in enumerate(x.shape) if i not in axes)


def _reduce_vjp(mode):
    def vjp(b, node, dout):
        x = node.inputs[0]
        axes = resolve_axes(node.attrs["axis"], x.type.rank)
        if mode == "max":
            return (b.op("reduce_max_grad", x, node.out, dout, axis=axes, keepdims=node.attrs["keepdims"]),)
        return (b.op("reduce_grad", dout, shape=tuple(x.type.shape), axis=axes,
                     keepdims=node.attrs["keepdims"], mean=(mode == "mean")),)
    return vjp


REDUCE_ARGS = (Arg("input_tensor", aliases=("input", "x")), Arg("axis", "axes", None, convert=_axes),
               Arg("keepdims", "bool", False))
register(OpDef("reduce_sum", REDUCE_ARGS, reduce_shape, _reduce_vjp("sum"),
               kernel=lambda node: reduction(node, "sum"), doc="sum over axes"))
register(OpDef("reduce_mean", REDUCE_ARGS, reduce_shape, _reduce_vjp("mean"),
               kernel=lambda node: reduction(node, "mean"), doc="mean over axes"))
register(OpDef("reduce_max", REDUCE_ARGS, reduce_shape, _reduce_vjp("max"),
               kernel=lambda node: reduction(node, "max"), doc="max over axes"))


def _reduce_grad_shape(ins, attrs):
    return TensorType("f32", attrs["shape"])


def reduce_grad_kernel(node):
    """dx = dout broadcast back over the reduced axes (divided by their count for mean)."""
    shape, dstrides = reduced_view(node.out.type, node.attrs["axis"])
    n = nest(shape, [contiguous_strides(shape), dstrides])
    if not node.attrs["mean"]:
        return pointwise(n, "{0} = {1};")
    count = Lin(0, 1)
    for i in resolve_axes(node.attrs["axis"], node.out.type.rank):
        count = count * Lin.of(shape[i])
    return pointwise(n, "{0} = {1} / (float)(" + str(count) + ");")


def reduce_max_grad_kernel(node):
    """Two passes: count the maxima of each reduction, then share dout equally among them."""
    x = node.inputs[0].type
    shape, ystrides = reduced_view(x, node.attrs["axis"])
    own = contiguous_strides(shape)
    n = nest(shape, [own, own, ystrides, ystrides])     # dx, x, y/dout/count
    return Kernel("reduce_max_grad.c.j2", record(nest=n, out_size=numel(node.out.type),
                                                 count_size=numel(node.inputs[1].type)),
                  scratch=numel(node.inputs[1].type) * 4)


register(OpDef("reduce_grad", (Arg("dout"), Arg("shape", "shape"), Arg("axis", "axes"),
                               Arg("keepdims", "bool"), Arg("mean", "bool")),
               _reduce_grad_shape, public=False, kernel=reduce_grad_kernel,
               doc="broadcast a reduction's gradient back (divided by the count for mean)"))
register(OpDef("reduce_max_grad", (Arg("input"), Arg("output"), Arg("dout"), Arg("axis", "axes"),
                                   Arg("keepdims", "bool")),
               lambda ins, attrs: ins[0], public=False, kernel=reduce_max_grad_kernel,
               doc="dout shared equally among the maxima (TF's rule for ties)"))


def argmax_shape(ins, attrs):
    x = ins[0]
    need_dtype(x, ("f32", "i32"), "input")
    axis = norm_axis(attrs["axis"], x.rank)
    return TensorType("i32", tuple(d for i, d in enumerate(x.shape) if i != axis))


def axis_kernel(mode):
    """Ops along one axis of an (outer, length, inner) view: argmax and the softmax family."""
    def rule(node):
        t = node.inputs[0].type
        outer, length, inner = split_axis(t, node.attrs["axis"])
        return Kernel("axis.c.j2", record(mode=mode, outer=outer, length=length, inner=inner))
    return rule


register(OpDef("argmax", (Arg("input"), Arg("axis", "int")), argmax_shape, None,
               kernel=axis_kernel("argmax"), doc="index of the largest value along an axis (first on ties), i32"))


def softmax_shape(ins, attrs):
    need_float(ins[0], "logits")
    norm_axis(attrs["axis"], ins[0].rank)
    return ins[0]


register(OpDef("softmax", (Arg("logits"), Arg("axis", "int", -1)), softmax_shape,
               lambda b, n, d: (b.op("softmax_grad", n.out, d, axis=n.attrs["axis"]),),
               kernel=axis_kernel("softmax"), doc="exp(x) / sum(exp(x)) along an axis"))
register(OpDef("log_softmax", (Arg("logits"), Arg("axis", "int", -1)), softmax_shape,
               lambda b, n, d: (b.op("log_softmax_grad", n.out, d, axis=n.attrs["axis"]),),
               kernel=axis_kernel("log_softmax"), doc="x - log(sum(exp(x))) along an axis"))
register(OpDef("softmax_grad", (Arg("y"), Arg("dout"), Arg("axis", "int")), lambda i, a: i[1],
               public=False, kernel=axis_kernel("softmax_grad"), doc="y * (dout - sum(dout * y))"))
register(OpDef("log_softmax_grad", (Arg("y"), Arg("dout"), Arg("axis", "int")), lambda i, a: i[1],
               public=False, kernel=axis_kernel("log_softmax_grad"), doc="dout - exp(y) * sum(dout)"))
