"""Max and average pooling (NHWC) with TF's SAME/VALID windows, and their gradients.

SAME never counts padded cells: max ignores them and avg divides by the cells present."""
from __future__ import annotations

from ..types import TensorType
from . import Arg, OpDef, OpError, register
from .common import need_float, need_rank, padding, static_dim, to_pair
from .window import out_size
from ..kernel import Kernel, Lin, record, threads_when
from .conv import conv_pads


# cells read: a pool's data is usually still in cache from the conv before it, so threads
# pay off sooner than for other memory-bound loops (flowers batch 1: pool2's 160k cells
# 8.2 -> 4.8 us, pool3's 74k 4.6 -> 3.2 us on 2 threads)
POOL_PARALLEL_MIN = 1 << 16


def pool_kernel(mode):
    """Pools and their gradients; `image` is the NHWC tensor the windows slide over."""
    def rule(node):
        image = node.out.type if mode.endswith("_grad") else node.inputs[0].type
        pooled = node.inputs[1].type if mode == "max_grad" else (
            node.inputs[0].type if mode == "avg_grad" else node.out.type)
        a = _pool_attrs(node)
        (kh, kw), (sh, sw) = a["ksize"], a["strides"]
        h, w, c = image.shape[1:]
        t, bt, l, r = conv_pads((h, w), (kh, kw), (sh, sw), a["padding"])
        # windows that tile the image exactly (2x2 stride 2 on an even size): the max gradient
        # writes each cell once, finished, with no zero-fill first, so fuse.py may append
        # elementwise ops to it
        tiled = (kh, kw) == (sh, sw) and not (t or bt or l or r) and \
            pooled.shape[1] * sh == h and pooled.shape[2] * sw == w
        # every window inside the image (VALID, or SAME that needs no padding): no clamping
        full = not (t or l) and (pooled.shape[1] - 1) * sh + kh <= h and (pooled.shape[2] - 1) * sw + kw <= w
        fusable = {"epilogue_index": "element"} if mode == "max_grad" and tiled else {}
        p = record(mode=mode, batch=Lin.of(image.shape[0]), h=h, w=w, c=c, oh=pooled.shape[1],
                   ow=pooled.shape[2], kh=kh, kw=kw, sh=sh, sw=sw, pt=t, pl=l, image=h * w * c, tiled=tiled, full=full,
                   threads=threads_when(Lin.of(image.shape[0]) * (pooled.shape[1] * pooled.shape[2] * c * kh * kw),
                                        POOL_PARALLEL_MIN),
                   epilogue=(), vec_args=(), **fusable)
        template = "pool_grad.c.j2" if mode.endswith("_grad") else "pool.c.j2"
        return Kernel(template, p, f"pads: top {t}, left {l}, bottom {bt}, right {r}")
    return rule


def pool_shape(op):
    def rule(ins, attrs):
        x = ins[0]
        need_rank(x, 4, "input", "NHWC"), need_float(x, "input")
        h, w = static_dim(x, 1, "input"), static_dim(x, 2, "input")
        (kh, kw), (sh, sw), pad = attrs["ksize"], attrs["strides"] or attrs["ksize"], attrs["padding"]
        oh, ow = out_size(h, kh, sh, pad), out_size(w, kw, sw, pad)
        if oh <= 0 or ow <= 0:
            raise OpError(f"`{op}` with VALID padding: a {kh}x{kw} window does not fit in a {h}x{w} input",
                          arg="input", code="window-empty",
                          notes=[f"VALID output size is ceil((in - k + 1) / stride): "
                                 f"ceil(({h} - {kh} + 1) / {sh}) = {out_size(h, kh, sh, 'VALID')}"],
                          help="use padding=\"SAME\" or a smaller window")
        return TensorType("f32", (x.shape[0], oh, ow, x.shape[3]))
    return rule


def _pool_attrs(node):
    a = node.attrs
    return dict(ksize=a["ksize"], strides=a["strides"] or a["ksize"], padding=a["padding"])


def max_pool_vjp(b, node, dout):
    return (b.op("max_pool_grad", node.inputs[0], dout, **_pool_attrs(node)),)


def avg_pool_vjp(b, node, dout):
    x = node.inputs[0]
    return (b.op("avg_pool_grad", dout, input_shape=tuple(x.type.shape[1:3]), **_pool_attrs(node)),)


# strides default to ksize and padding to VALID (Keras' defaults); TF's full forms also work.
POOL_ARGS = (Arg("input", aliases=("value",)), Arg("ksize", "ints", convert=to_pair("ksize"), aliases=("pool_size",)),
             Arg("strides", "ints", None, convert=to_pair("strides")),
             Arg("padding", "str", "VALID", convert=padding))

register(OpDef("max_pool", POOL_ARGS, pool_shape("max_pool"), max_pool_vjp, kernel=pool_kernel("max"),
               doc="max over windows"))
register(OpDef("avg_pool", POOL_ARGS, pool_shape("avg_pool"), avg_pool_vjp, kernel=pool_kernel("avg"),
               doc="mean over windows"))


def _max_pool_grad_shape(ins, attrs):
    return ins[0]


def _avg_pool_grad_shape(ins, attrs):
    dout = ins[0]
    h, w = attrs["input_shape"]
    return TensorType("f32", (dout.shape[0], h, w, dout.shape[3]))


GRAD_ATTRS = (Arg("ksize", "ints"), Arg("strides", "ints"), Arg("padding", "str"))
register(OpDef("max_pool_grad", (Arg("input"), Arg("dout")) + GRAD_ATTRS, _max_pool_grad_shape,
               public=False, kernel=pool_kernel("max_grad"), doc="route each window's gradient to its first maximum"))
register(OpDef("avg_pool_grad", (Arg("dout"), Arg("input_shape", "ints")) + GRAD_ATTRS,
               _avg_pool_grad_shape, public=False, kernel=pool_kernel("avg_grad"), doc="spread each window's gradient evenly"))
