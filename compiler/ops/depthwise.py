"""Depthwise 2-D convolution (tf.nn.depthwise_conv2d, NHWC, filter [fh, fw, in, multiplier]) and
its two gradients. Output channel c * multiplier + m sees only input channel c.

A dilated window spans (k - 1) * d + 1 cells; TF pads SAME for that span, so window.py's
arithmetic applies to it unchanged. As in TF, dilation > 1 needs stride 1."""
from __future__ import annotations

from ..types import TensorType
from . import Arg, OpDef, OpError, register
from .common import padding, to_pair
from .conv import conv_pads, image_and_filter
from .window import out_size
from ..kernel import Kernel, Lin, record, threads_when

# The filter gradient sums into this many partial filters, each over a fixed share of the
# output rows, then adds them in order: the same bits for any thread count.
FILTER_GRAD_PARTS = 8


def span(k: int, d: int) -> int:
    """Cells a window of k taps dilated by d covers."""
    return (k - 1) * d + 1


def affine(*terms) -> str:
    """A C expression for sum of var * k (pairs) and int constants, without the * 1 and + 0."""
    out = ""
    for t in terms:
        var, k = t if isinstance(t, tuple) else ("", t)
        if k == 0:
            continue
        mag = abs(k)
        body = var if var and mag == 1 else f"{var} * {mag}" if var else str(mag)
        out += (" - " if k < 0 else " + ") + body if out else ("-" if k < 0 else "") + body
    return out or "0"


def _geometry(image, filter_shape, out_hw, attrs):
    """The ints every depthwise template needs: image side (h, w, c), output side (oh, ow, oc),
    taps, strides, dilations and TF pads."""
    h, w, c = image.shape[1:]
    kh, kw, _, m = filter_shape
    (sh, sw), (dh, dw) = attrs["strides"], attrs["dilations"]
    t, bt, l, r = conv_pads((h, w), (span(kh, dh), span(kw, dw)), (sh, sw), attrs["padding"])
    oh, ow = out_hw
    batch = Lin.of(image.shape[0])
    p = record(batch=batch, h=h, w=w, c=c, m=m, oc=c * m, oh=oh, ow=ow, kh=kh, kw=kw, sh=sh, sw=sw,
               dh=dh, dw=dw, pt=t, pl=l, taps=kh * kw, filter_size=kh * kw * c * m,
               # the image cell a tap reads, and (input gradient) the output cell times the stride
               y=affine(("oy", sh), ("ky", dh), -t), x=affine(("ox", sw), ("kx", dw), -l),
               ty=affine(("y", 1), ("ky", -dh), t), tx=affine(("x", 1), ("kx", -dw), l),
               parts=FILTER_GRAD_PARTS,
               threads=threads_when(batch * (oh * ow * c * m * kh * kw)))
    return p, f"pads: top {t}, left {l}, bottom {bt}, right {r}"


def depthwise_kernel(node):
    x, f = node.inputs
    p, note = _geometry(x.type, f.type.shape, node.out.type.shape[1:3], node.attrs)
    return Kernel("depthwise_conv2d.c.j2", p, note)


def depthwise_backprop_input_kernel(node):
    f, dout = node.inputs
    p, note = _geometry(node.out.type, f.type.shape, dout.type.shape[1:3], node.attrs)
    return Kernel("depthwise_backprop_input.c.j2", p, note)


def depthwise_backprop_filter_kernel(node):
    x, dout = node.inputs
    p, note = _geometry(x.type, node.attrs["filter_shape"], dout.type.shape[1:3], node.attrs)
    # scratch: one partial filter per part
    return Kernel("depthwise_backprop_filter.c.j2", p, note, scratch=Lin(0, 4 * p.parts * p.filter_size))


def depthwise_shape(ins, attrs):
    x, f = ins
    (h, w, c), (fh, fw, m) = image_and_filter("depthwise_conv2d", x, f, "filter", "multiplier")
    (sh, sw), (dh, dw), pad = attrs["strides"], attrs["dilations"], attrs["padding"]
    if (dh > 1 or dw > 1) and (sh > 1 or sw > 1):
        raise OpError(f"`depthwise_conv2d` with dilations [{dh}, {dw}] must have strides of 1, got [{sh}, {sw}]",
                      arg="dilations", code="attr",
                      notes=["as in TensorFlow, a dilated window moves one cell at a time"],
                      help="use strides=1 and downsample in a separate step (a pool), or set dilations=1")
    eh, ew = span(fh, dh), span(fw, dw)
    oh, ow = out_size(h, eh, sh, pad), out_size(w, ew, sw, pad)
    if oh <= 0 or ow <= 0:
        dilated = f" (dilated to {eh}x{ew})" if (dh, dw) != (1, 1) else ""
        raise OpError(f"`depthwise_conv2d` with VALID padding: a {fh}x{fw} window{dilated} does not fit "
                      f"in a {h}x{w} input", arg="input", code="window-empty",
                      notes=[f"VALID output size is ceil((in - span + 1) / stride), span = (k - 1) * dilation + 1: "
                             f"ceil(({h} - {eh} + 1) / {sh}) = {out_size(h, eh, sh, 'VALID')}"],
                      help="use padding=\"SAME\", a smaller window or dilation")
    return TensorType("f32", (x.shape[0], oh, ow, c * m))


def _attrs(node):
    return {k: node.attrs[k] for k in ("strides", "padding", "dilations")}


def depthwise_vjp(b, node, dout):
    x, f = node.inputs
    dx = b.op("depthwise_conv2d_backprop_input", f, dout, input_sizes=tuple(x.type.shape[1:]), **_attrs(node))
    df = b.op("depthwise_conv2d_backprop_filter", x, dout, filter_shape=tuple(f.type.shape), **_attrs(node))
    return dx, df


STRIDES = Arg("strides", "ints", convert=to_pair("strides"))
PADDING = Arg("padding", "str", convert=padding)
DILATIONS = Arg("dilations", "ints", (1, 1), convert=to_pair("dilations"), aliases=("rate",))

register(OpDef("depthwise_conv2d", (Arg("input"), Arg("filter", aliases=("filters",)), STRIDES, PADDING, DILATIONS),
               depthwise_shape, depthwise_vjp, kernel=depthwise_kernel,
               doc="depthwise 2-D convolution, TF semantics",
               extra={"macs": lambda ins, out, a: out[1] * out[2] * out[3] * ins[1][0] * ins[1][1]}))


def _backprop_input_shape(ins, attrs):
    f, dout = ins
    h, w, c = attrs["input_sizes"]
    return TensorType("f32", (dout.shape[0], h, w, c))


def _backprop_filter_shape(ins, attrs):
    return TensorType("f32", tuple(attrs["filter_shape"]))


register(OpDef("depthwise_conv2d_backprop_input",
               (Arg("filter"), Arg("out_backprop"), Arg("input_sizes", "ints"), STRIDES, PADDING, DILATIONS),
               _backprop_input_shape, None, public=False, kernel=depthwise_backprop_input_kernel,
               doc="gradient of depthwise_conv2d w.r.t. its input"))
register(OpDef("depthwise_conv2d_backprop_filter",
               (Arg("input"), Arg("out_backprop"), Arg("filter_shape", "shape"), STRIDES, PADDING, DILATIONS),
               _backprop_filter_shape, None, public=False, kernel=depthwise_backprop_filter_kernel,
               doc="gradient of depthwise_conv2d w.r.t. its filter"))
