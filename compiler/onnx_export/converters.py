"""One ONNX converter per op that can appear in an inference graph (see table.py).

Convolutions, pools and resize run NCHW between two Transposes (TO_NCHW, TO_NHWC); filters
are rearranged at export, into initializers. Padding is always explicit (TF's SAME puts the
odd cell after, which ONNX's SAME_UPPER would too, but explicit pads say it plainly and
also serve conv2d_transpose)."""
from __future__ import annotations

import numpy as np

from ..ops.conv import conv_pads
from ..ops.depthwise import span
from ..ops.reduce import resolve_axes
from ..types import Sym
from .table import NP_DTYPE, ONNX_DTYPE, Ctx, converter

INT64_MIN = int(np.iinfo(np.int64).min)
FILTER_TO_OIHW = (3, 2, 0, 1)       # conv2d [h, w, in, out] -> [out, in, h, w]; transpose's [h, w, out, in] -> [in, out, h, w]


# ---------------------------------------------------------------- elementwise

def _same(onnx_op: str):
    def convert(ctx: Ctx, node):
        return ctx.add(onnx_op, [ctx[v] for v in node.inputs], out=node)
    return convert


for _op, _onnx in (("add", "Add"), ("sub", "Sub"), ("div", "Div"), ("minimum", "Min"), ("maximum", "Max"),
                   ("equal", "Equal"), ("bias_add", "Add"), ("neg", "Neg"), ("relu", "Relu"),
                   ("sigmoid", "Sigmoid"), ("tanh", "Tanh"), ("exp", "Exp"), ("log", "Log"), ("abs", "Abs"),
                   ("sqrt", "Sqrt")):
    converter(_op)(_same(_onnx))


@converter("mul")
def mul(ctx: Ctx, node):
    x, y = node.inputs
    if y.id in ctx.ones:                    # dropout at inference: x * 1
        return ctx[x]
    if x.id in ctx.ones:
        return ctx[y]
    return ctx.add("Mul", [ctx[x], ctx[y]], out=node)


@converter("dropout_mask")
def dropout_mask(ctx: Ctx, node):
    """All ones at inference: the mul that applies it becomes its other operand."""
    ctx.ones.add(node.out.id)
    return None


@converter("leaky_relu")
def leaky_relu(ctx: Ctx, node):
    return ctx.add("LeakyRelu", [ctx[node.inputs[0]]], out=node, alpha=float(node.attrs["alpha"]))


@converter("relu6")
def relu6(ctx: Ctx, node):
    return ctx.add("Clip", [ctx[node.inputs[0]], ctx.scalar(0.0, hint="zero"), ctx.scalar(6.0, hint="six")], out=node)


@converter("elu")
def elu(ctx: Ctx, node):
    return ctx.add("Elu", [ctx[node.inputs[0]]], out=node, alpha=1.0)


@converter("silu")
def silu(ctx: Ctx, node):
    x = ctx[node.inputs[0]]
    return ctx.add("Mul", [x, ctx.add("Sigmoid", [x], f"{node.out.name}:sigmoid")], out=node)


@converter("square")
def square(ctx: Ctx, node):
    x = ctx[node.inputs[0]]
    return ctx.add("Mul", [x, x], out=node)


@converter("rsqrt")
def rsqrt(ctx: Ctx, node):
    return ctx.add("Reciprocal", [ctx.add("Sqrt", [ctx[node.inputs[0]]], f"{node.out.name}:sqrt")], out=node)


@converter("cast")
def cast(ctx: Ctx, node):
    x = node.inputs[0]
    if x.type.dtype == node.out.type.dtype:
        return ctx[x]
    return ctx.add("Cast", [ctx[x]], out=node, to=ONNX_DTYPE[node.out.type.dtype])


@converter("transpose")
def transpose(ctx: Ctx, node):
    return ctx.add("Transpose", [ctx[node.inputs[0]]], out=node, perm=list(node.attrs["perm"]))


# ---------------------------------------------------------------- convolutions and pools

def _bias_after(ctx: Ctx, node):
    """The node adding a bias to `node`'s result, when it is its only user: a bias_add, or an
    add of a 1-D tensor as long as the last axis (dense layers written `matmul(x, w) + b`).
    Conv and Gemm then add it themselves. Returns (that node, the bias) or (None, None)."""
    users = ctx.users.get(node.out.id, [])
    if len(users) != 1 or any(v is node.out for v in ctx.graph.outputs.values()):
        return None, None
    user, width = users[0], node.out.type.shape[-1]
    if user.op == "bias_add" and user.inputs[0] is node.out:
        return user, user.inputs[1]
    if user.op == "add":
        others = [v for v in user.inputs if v is not node.out]
        if len(others) == 1 and others[0].type.shape == (width,) and user.out.type == node.out.type:
            return user, others[0]
    return None, None


def _conv_out(ctx: Ctx, node, op_type: str, inputs, **attrs) -> str:
    """Run op_type NCHW (folding a following bias_add into its B input) and turn the result
    back to NHWC; the bias_add then aliases that result."""
    bias_node, bias = _bias_after(ctx, node)
    if bias is not None:
        inputs = inputs + [ctx[bias]]
    named = bias_node or node
    y = ctx.add(op_type, inputs, f"{named.out.name}:nchw", **attrs)
    out = ctx.nhwc(y, named)
    if bias_node is not None:
        ctx.bind(bias_node.out, out)
    return out


@converter("conv2d")
def conv2d(ctx: Ctx, node):
    x, f = node.inputs
    kh, kw = f.type.shape[:2]
    (sh, sw), pad = node.attrs["strides"], node.attrs["padding"]
    t, b, l, r = conv_pads(x.type.shape[1:3], (kh, kw), (sh, sw), pad)
    return _conv_out(ctx, node, "Conv", [ctx.nchw(x), ctx.weight(f, FILTER_TO_OIHW, suffix="oihw")],
                     kernel_shape=[kh, kw], strides=[sh, sw], pads=[t, l, b, r])


@converter("depthwise_conv2d")
def depthwise_conv2d(ctx: Ctx, node):
    """A grouped Conv, one group per input channel: filter [kh, kw, c, m] -> [c * m, 1, kh, kw]."""
    x, f = node.inputs
    kh, kw, c, m = f.type.shape
    (sh, sw), (dh, dw), pad = node.attrs["strides"], node.attrs["dilations"], node.attrs["padding"]
    t, b, l, r = conv_pads(x.type.shape[1:3], (span(kh, dh), span(kw, dw)), (sh, sw), pad)
    w = ctx.weight(f, FILTER_TO_OIHW, pre_shape=(kh, kw, 1, c * m), suffix="grouped")
    return _conv_out(ctx, node, "Conv", [ctx.nchw(x), w], kernel_shape=[kh, kw], strides=[sh, sw],
                     dilations=[dh, dw], pads=[t, l, b, r], group=c)


@converter("conv2d_transpose")
def conv2d_transpose(ctx: Ctx, node):
    """ConvTranspose with the pads of the conv2d it inverts (computed on the output size) and
    output_padding for the rows at the end no window reaches (zero, as in TF)."""
    x, f = node.inputs
    kh, kw = f.type.shape[:2]
    (sh, sw), pad = node.attrs["strides"], node.attrs["padding"]
    (h, w), (oh, ow) = x.type.shape[1:3], node.out.type.shape[1:3]
    t, b, l, r = conv_pads((oh, ow), (kh, kw), (sh, sw), pad)
    extra = [oh - (sh * (h - 1) + kh - t - b), ow - (sw * (w - 1) + kw - l - r)]
    return _conv_out(ctx, node, "ConvTranspose", [ctx.nchw(x), ctx.weight(f, FILTER_TO_OIHW, suffix="iohw")],
                     kernel_shape=[kh, kw], strides=[sh, sw], pads=[t, l, b, r], output_padding=extra)


def _pool(onnx_op: str, **fixed):
    def convert(ctx: Ctx, node):
        x = node.inputs[0]
        (kh, kw), pad = node.attrs["ksize"], node.attrs["padding"]
        sh, sw = node.attrs["strides"] or (kh, kw)
        t, b, l, r = conv_pads(x.type.shape[1:3], (kh, kw), (sh, sw), pad)
        y = ctx.add(onnx_op, [ctx.nchw(x)], f"{node.out.name}:nchw", kernel_shape=[kh, kw], strides=[sh, sw],
                    pads=[t, l, b, r], **fixed)
        return ctx.nhwc(y, node)
    return convert


converter("max_pool")(_pool("MaxPool"))
# TF's SAME average divides by the cells present: count_include_pad=0
converter("avg_pool")(_pool("AveragePool", count_include_pad=0))


@converter("resize")
def resize(ctx: Ctx, node):
    """Resize to the given size with half-pixel centres. Nearest: TF's floor((o + 0.5) * in / out)
    is round-half-up of the half-pixel source position (o + 0.5) * in / out - 0.5."""
    x = node.inputs[0]
    nh, nw = node.attrs["size"]
    xt = ctx.nchw(x)
    batch_channels = ctx.add("Slice", [ctx.add("Shape", [xt], f"{node.out.name}:shape"), ctx.ints([0], "zero"),
                                       ctx.ints([2], "two")], f"{node.out.name}:nc")
    sizes = ctx.add("Concat", [batch_channels, ctx.ints([nh, nw], "size")], f"{node.out.name}:sizes", axis=0)
    mode = {"bilinear": dict(mode="linear"), "nearest": dict(mode="nearest", nearest_mode="round_prefer_ceil")}
    y = ctx.add("Resize", [xt, "", "", sizes], f"{node.out.name}:nchw", coordinate_transformation_mode="half_pixel",
                **mode[node.attrs["method"]])
    return ctx.nhwc(y, node)


@converter("pad")
def pad(ctx: Ctx, node):
    x = node.inputs[0]
    pads = node.attrs["paddings"]
    mode = node.attrs["mode"]
    if mode == "SYMMETRIC":
        return _symmetric_pad(ctx, node)
    amounts = ctx.ints([p[0] for p in pads] + [p[1] for p in pads], "pads")
    if mode == "REFLECT":
        return ctx.add("Pad", [ctx[x], amounts], out=node, mode="reflect")
    value = ctx.scalar(float(node.attrs.get("constant_values", 0.0)), hint="pad_value")
    return ctx.add("Pad", [ctx[x], amounts, value], out=node, mode="constant")


def _symmetric_pad(ctx: Ctx, node):
    """ONNX has no SYMMETRIC mode: each padded axis is [reversed head, x, reversed tail]."""
    x = ctx[node.inputs[0]]
    shape = node.inputs[0].type.shape
    padded = [(axis, before, after) for axis, (before, after) in enumerate(node.attrs["paddings"]) if before or after]
    for i, (axis, before, after) in enumerate(padded):
        d = shape[axis]
        parts = []
        if before:
            parts.append(ctx.add("Slice", [x, ctx.ints([before - 1]), ctx.ints([INT64_MIN]), ctx.ints([axis]),
                                           ctx.ints([-1])], f"{node.out.name}:head{axis}"))
        parts.append(x)
        if after:
            end = d - after - 1
            parts.append(ctx.add("Slice", [x, ctx.ints([d - 1]), ctx.ints([end if end >= 0 else INT64_MIN]),
                                           ctx.ints([axis]), ctx.ints([-1])], f"{node.out.name}:tail{axis}"))
        last = i == len(padded) - 1
        x = ctx.add("Concat", parts, node if last else f"{node.out.name}:axis{axis}", axis=axis)
    return x


# ---------------------------------------------------------------- reductions, softmax

@converter("reduce_sum")
def reduce_sum(ctx: Ctx, node):
    x = node.inputs[0]
    axes = resolve_axes(node.attrs["axis"], x.type.rank)
    return ctx.add("ReduceSum", [ctx[x], ctx.ints(axes, "axes")], out=node, keepdims=int(node.attrs["keepdims"]))


def _reduce(onnx_op: str):
    def convert(ctx: Ctx, node):
        x = node.inputs[0]
        axes = resolve_axes(node.attrs["axis"], x.type.rank)
        return ctx.add(onnx_op, [ctx[x]], out=node, axes=list(axes), keepdims=int(node.attrs["keepdims"]))
    return convert


converter("reduce_mean")(_reduce("ReduceMean"))      # opset 17: axes is still an attribute
converter("reduce_max")(_reduce("ReduceMax"))


@converter("argmax")
def argmax(ctx: Ctx, node):
    x = node.inputs[0]
    i = ctx.add("ArgMax", [ctx[x]], f"{node.out.name}:i64", axis=node.attrs["axis"] % x.type.rank, keepdims=0)
    return ctx.add("Cast", [i], out=node, to=ONNX_DTYPE["i32"])


@converter("softmax")
def softmax(ctx: Ctx, node):
    return ctx.add("Softmax", [ctx[node.inputs[0]]], out=node, axis=node.attrs["axis"])


@converter("log_softmax")
def log_softmax(ctx: Ctx, node):
    return ctx.add("LogSoftmax", [ctx[node.inputs[0]]], out=node, axis=node.attrs["axis"])


@converter("l2_loss")
def l2_loss(ctx: Ctx, node):
    s = ctx.add("ReduceSumSquare", [ctx[node.inputs[0]]], f"{node.out.name}:sum", keepdims=0)
    return ctx.add("Mul", [s, ctx.scalar(0.5, hint="half")], out=node)


@converter("softmax_cross_entropy_with_logits")
def softmax_xent(ctx: Ctx, node):
    labels, logits = node.inputs
    lsm = ctx.add("LogSoftmax", [ctx[logits]], f"{node.out.name}:log_softmax", axis=-1)
    s = ctx.add("ReduceSum", [ctx.add("Mul", [ctx[labels], lsm], f"{node.out.name}:mul"), ctx.ints([-1], "axes")],
                f"{node.out.name}:sum", keepdims=0)
    return ctx.add("Neg", [s], out=node)


@converter("sparse_softmax_cross_entropy_with_logits")
def sparse_softmax_xent(ctx: Ctx, node):
    labels, logits = node.inputs
    lsm = ctx.add("LogSoftmax", [ctx[logits]], f"{node.out.name}:log_softmax", axis=-1)
    ids = ctx.add("Unsqueeze", [ctx.add("Cast", [ctx[labels]], f"{node.out.name}:i64", to=7), ctx.ints([-1], "axes")],
                  f"{node.out.name}:ids")
    picked = ctx.add("GatherElements", [lsm, ids], f"{node.out.name}:picked", axis=-1)
    s = ctx.add("Squeeze", [picked, ctx.ints([-1], "axes")], f"{node.out.name}:squeezed")
    return ctx.add("Neg", [s], out=node)


# ---------------------------------------------------------------- shapes

@converter("reshape")
def reshape(ctx: Ctx, node):
    # the result's own shape, the batch as -1 (a checked type has at most one batch axis)
    target = [-1 if isinstance(d, Sym) else d for d in node.out.type.shape]
    return ctx.add("Reshape", [ctx[node.inputs[0]], ctx.ints(target)], out=node)


@converter("expand_dims")
def expand_dims(ctx: Ctx, node):
    x = node.inputs[0]
    return ctx.add("Unsqueeze", [ctx[x], ctx.ints([node.attrs["axis"] % (x.type.rank + 1)], "axes")], out=node)


@converter("squeeze")
def squeeze(ctx: Ctx, node):
    x = node.inputs[0]
    axes = node.attrs["axis"]
    if axes is None:
        axes = [i for i, d in enumerate(x.type.shape) if d == 1]
    else:
        axes = sorted({a % x.type.rank for a in ((axes,) if isinstance(axes, int) else axes)})
    if not axes:
        return ctx[x]
    return ctx.add("Squeeze", [ctx[x], ctx.ints(axes, "axes")], out=node)


@converter("concat")
def concat(ctx: Ctx, node):
    return ctx.add("Concat", [ctx[v] for v in node.inputs], out=node, axis=node.attrs["axis"] % node.out.type.rank)


# ---------------------------------------------------------------- layers' building blocks

@converter("matmul")
def matmul(ctx: Ctx, node):
    """Gemm, adding the bias of a following bias_add (or add) as its C."""
    a, b = node.inputs
    bias_node, bias = _bias_after(ctx, node)
    out = ctx.add("Gemm", [ctx[a], ctx[b]] + ([ctx[bias]] if bias is not None else []), out=bias_node or node,
                  transA=int(node.attrs["transpose_a"]), transB=int(node.attrs["transpose_b"]))
    if bias_node is not None:
        ctx.bind(bias_node.out, out)
    return out


@converter("embedding_lookup")
def embedding_lookup(ctx: Ctx, node):
    table, ids = node.inputs
    return ctx.add("Gather", [ctx[table], ctx[ids]], out=node, axis=0)


@converter("one_hot")
def one_hot(ctx: Ctx, node):
    """Equal(ids, 0..depth-1) then Where, not ONNX's OneHot: that one counts negative ids from
    the end, where TF (and cnnc) give all off_value."""
    ids = node.inputs[0]
    depth = node.attrs["depth"]
    hit = ctx.add("Equal", [ctx.add("Unsqueeze", [ctx[ids], ctx.ints([-1], "axes")], f"{node.out.name}:ids"),
                            ctx.initializer(np.arange(depth, dtype=NP_DTYPE["i32"]), "classes")],
                  f"{node.out.name}:hit")
    return ctx.add("Where", [hit, ctx.scalar(float(node.attrs["on_value"]), hint="on"),
                             ctx.scalar(float(node.attrs["off_value"]), hint="off")], out=node)
