"""Image resize (tf.image.resize in TF 2: half-pixel centres, no antialiasing), NHWC, methods
`bilinear` and `nearest`, up and down, and their gradients (scatter-adds, as TF's
ResizeBilinearGrad and ResizeNearestNeighborGrad).

Along each axis scale = in / out, a float32 as in TF. Bilinear samples at
(o + 0.5) * scale - 0.5 between rows floor and ceil of it (clamped to the image); nearest takes
row min(floor((o + 0.5) * scale), in - 1)."""
from __future__ import annotations

import numpy as np

from ..types import TensorType
from . import Arg, OpDef, OpError, register
from .common import fmt, need_float, need_rank, static_dim
from ..kernel import POINTWISE_PARALLEL_MIN, Kernel, Lin, c_float, record, threads_when

METHODS = ("bilinear", "nearest")


def _size(v):
    if isinstance(v, int):
        v = (v,)
    if len(v) != 2:
        raise OpError(f"`size` must list 2 sizes [new_height, new_width], got {fmt(v)}", arg="size", code="attr",
                      help="write size=[new_height, new_width]")
    if any(not isinstance(s, int) or s < 1 for s in v):
        raise OpError(f"`size` entries must be positive integers, got {fmt(v)}", arg="size", code="attr",
                      notes=["`size` is the output's [new_height, new_width]: at least one row and one column"],
                      help="give the height and width the images should have, each at least 1")
    return tuple(v)


def _method(v):
    if not isinstance(v, str) or v.lower() not in METHODS:
        raise OpError(f"`method` must be \"bilinear\" or \"nearest\", got {fmt(v)}", arg="method", code="attr")
    return v.lower()


def resize_shape(ins, attrs):
    x = ins[0]
    need_rank(x, 4, "images", "NHWC"), need_float(x, "images")
    static_dim(x, 1, "images"), static_dim(x, 2, "images")
    nh, nw = attrs["size"]
    return TensorType("f32", (x.shape[0], nh, nw, x.shape[3]))


def resize_vjp(b, node, dout):
    x = node.inputs[0]
    return (b.op("resize_grad", dout, original_size=tuple(x.type.shape[1:3]), method=node.attrs["method"]),)


def _scale(n_in: int, n_out: int) -> str:
    """TF's float32 in / out, as an exact C literal."""
    return c_float(np.float32(n_in) / np.float32(n_out))


def _geometry(image, resized, method):
    """Sizes of the image side (h, w, c) and the resized side (oh, ow), and the scales."""
    h, w, c = image.shape[1:]
    oh, ow = resized.shape[1:3]
    batch = Lin.of(image.shape[0])
    return record(method=method, batch=batch, h=h, w=w, c=c, oh=oh, ow=ow,
                  scale_h=_scale(h, oh), scale_w=_scale(w, ow), image=h * w * c,
                  threads=threads_when(batch * (oh * ow * c), POINTWISE_PARALLEL_MIN))


def resize_kernel(node):
    # exact: the sample positions are computed in float32 step by step, as TF does
    p = _geometry(node.inputs[0].type, node.out.type, node.attrs["method"])
    return Kernel("resize.c.j2", p, exact=True)


def resize_grad_kernel(node):
    p = _geometry(node.out.type, node.inputs[0].type, node.attrs["method"])
    return Kernel("resize_grad.c.j2", p, exact=True)


register(OpDef("resize", (Arg("images"), Arg("size", "ints", convert=_size),
                          Arg("method", "str", "bilinear", convert=_method)),
               resize_shape, resize_vjp, kernel=resize_kernel,
               doc="resize images, tf.image.resize (half-pixel centres, no antialiasing)"))


def _resize_grad_shape(ins, attrs):
    d = ins[0]
    h, w = attrs["original_size"]
    return TensorType("f32", (d.shape[0], h, w, d.shape[3]))


register(OpDef("resize_grad", (Arg("grads"), Arg("original_size", "ints"), Arg("method", "str")),
               _resize_grad_shape, None, public=False, kernel=resize_grad_kernel,
               doc="gradient of resize: each output cell's gradient added back to the cells it read"))
