"""2-D convolution (NHWC, filters [fh, fw, in, out]), its transpose, and the filter gradient.

A dilated window (TF's `dilations`) spans (k - 1) * d + 1 cells and is padded for that span;
as in TF, dilation > 1 needs stride 1. Undilated convs keep their direct kernels; dilated ones
run as implicit GEMMs whose packers gather the taps (gemm_core.h, cg_conv_dil)."""
from __future__ import annotations

from ..types import Sym, TensorType
from . import Arg, OpDef, OpError, register
from .common import need_float, need_rank, padding, static_dim, to_pair
from .window import out_size, pads, transpose_sizes
from .. import target
from ..kernel import Kernel, Lin, record, threads_when


def span(k: int, d: int) -> int:
    """Cells a window of k taps dilated by d covers."""
    return (k - 1) * d + 1


def conv_geometry(in_shape, filter_hw, out_shape, strides, padding, dilations=(1, 1)):
    """Every int a conv-family template needs: sizes of the image side (h, w, c) and of the
    output side (oh, ow, oc) of the underlying conv2d, window, strides, dilations and TF pads."""
    (kh, kw), (sh, sw), (dh, dw) = filter_hw, strides, dilations
    t, bt, l, r = conv_pads(in_shape[1:3], (span(kh, dh), span(kw, dw)), (sh, sw), padding)
    (h, w, c), (oh, ow, oc) = in_shape[1:], out_shape[1:]
    p = record(batch=Lin.of(in_shape[0]), h=h, w=w, c=c, oh=oh, ow=ow, oc=oc, kh=kh, kw=kw, sh=sh, sw=sw,
               dh=dh, dw=dw, dilated=(dh, dw) != (1, 1), pt=t, pl=l, padded=bool(t or bt or l or r),
               image=h * w * c, out_image=oh * ow * oc, taps=kh * kw, tap=c * oc,
               macs=oh * ow * oc * kh * kw * c,
               threads=threads_when(Lin.of(in_shape[0]) * (oh * ow * oc * kh * kw * c)))
    return p, f"pads: top {t}, left {l}, bottom {bt}, right {r}"


def _padded_floats(out_h, out_w, sh, sw, kh, kw, channels) -> int:
    """Floats per image of an input copied with the zero border that puts every window of a
    conv producing out_h x out_w inside it: gemm_core.h's Hp x Wp x C."""
    return ((out_h - 1) * sh + kh) * ((out_w - 1) * sw + kw) * channels


def conv2d_kernel(node):
    x, f = node.inputs
    p, note = conv_geometry(x.type.shape, f.type.shape[:2], node.out.type.shape, **_sp(node))
    if p.dilated:       # an implicit GEMM gathering the taps: no padded copy, no scratch
        p = record(**dict(p.items), epilogue=(), vec_args=(), epilogue_index="column", filter_direct=False)
        return Kernel("conv2d.c.j2", p, note)
    # scratch: the input with its zero border, so every window lies inside
    padded = _padded_floats(p.oh, p.ow, p.sh, p.sw, p.kh, p.kw, p.c)
    # The micro-kernel reads the filter's rows of oc floats unpacked when every panel (the
    # target's tile width) is whole and a row spans at most 512 bytes: a strided B panel then
    # stays in L2, and no thread packs (and passes between cores) a filter copy on each call.
    # Measured on flowers at batch 1 (AVX-512): conv3 -4%, conv4 -7%; at 256+ channels the
    # stride would thrash L2 sets.
    filter_direct = p.oc % target.current().nr == 0 and p.oc <= 128
    p = record(**dict(p.items), epilogue=(), vec_args=(), epilogue_index="column",  # fuse.py may fill them
               filter_direct=filter_direct)
    return Kernel("conv2d.c.j2", p, note, scratch=Lin.of(x.type.shape[0]) * (4 * padded))


def conv2d_transpose_kernel(node):
    """The gradient of conv2d wrt its input: GEMM then col2im for few channels, a direct conv of
    dy with the filter turned 180 degrees at stride 1, otherwise a gather GEMM."""
    x, f = node.inputs
    p, note = conv_geometry(node.out.type.shape, f.type.shape[:2], x.type.shape, **_sp(node))
    if p.dilated:       # the gather GEMM, its packer stepping taps by the dilation
        return Kernel("conv2d_transpose.c.j2", record(**dict(p.items), col2im=False, direct=False), note)
    # With fewer input channels than half a micro-tile's columns, the gather GEMM would
    # mostly multiply padding: use GEMM-then-col2im, whose scratch holds a tile of windows.
    if p.c < target.current().nr // 2:
        k = p.kh * p.kw * p.c
        tile = max(64, min(4096, (1 << 20) // k))
        p = record(**dict(p.items), col2im=True, direct=False, tile=tile)
        return Kernel("conv2d_transpose.c.j2", p, note, scratch=Lin(0, 4 * tile * k))
    if (p.sh, p.sw) == (1, 1):
        # stride 1: a direct conv of dy (padded to (h + kh - 1) x (w + kw - 1)) producing dx
        padded = _padded_floats(p.h, p.w, 1, 1, p.kh, p.kw, p.oc)
        return Kernel("conv2d_transpose.c.j2", record(**dict(p.items), col2im=False, direct=True), note,
                      scratch=Lin.of(node.out.type.shape[0]) * (4 * padded))
    return Kernel("conv2d_transpose.c.j2", record(**dict(p.items), col2im=False, direct=False), note)


def conv2d_backprop_filter_kernel(node):
    x, dout = node.inputs
    p, note = conv_geometry(x.type.shape, node.attrs["filter_shape"][:2], dout.type.shape, **_sp(node))
    if p.dilated:       # df = windows^T dy, one GEMM summing every pixel in order
        return Kernel("conv2d_backprop_filter.c.j2", record(**dict(p.items), partials=0), note)
    # partials: one filter gradient per extra thread (CG_MAX_THREADS in gemm_core.h);
    # scratch: the input with its zero border, plus slack the last row tiles read (MR floats)
    padded = _padded_floats(p.oh, p.ow, p.sh, p.sw, p.kh, p.kw, p.c) + 16
    p = record(**dict(p.items), partials=(target.MAX_THREADS - 1) * p.kh * p.kw * p.c * p.oc)
    return Kernel("conv2d_backprop_filter.c.j2", p, note, scratch=Lin.of(x.type.shape[0]) * (4 * padded))


def _sp(node):
    return dict(strides=node.attrs["strides"], padding=node.attrs["padding"], dilations=node.attrs["dilations"])


def _window_error(op, in_hw, k, strides, dilations=(1, 1)):
    (h, w), (kh, kw), (sh, sw), (dh, dw) = in_hw, k, strides, dilations
    if (dh, dw) != (1, 1):
        eh, ew = span(kh, dh), span(kw, dw)
        return OpError(f"`{op}` with VALID padding: a {kh}x{kw} window dilated to {eh}x{ew} does not fit "
                       f"in a {h}x{w} input", arg="input", code="window-empty",
                       notes=[f"VALID output size is ceil((in - span + 1) / stride), span = (k - 1) * dilation + 1: "
                              f"ceil(({h} - {eh} + 1) / {sh}) = {out_size(h, eh, sh, 'VALID')}"],
                       help="use padding=\"SAME\", a smaller window or dilation")
    return OpError(f"`{op}` with VALID padding: a {kh}x{kw} window does not fit in a {h}x{w} input",
                   arg="input", code="window-empty",
                   notes=[f"VALID output size is ceil((in - k + 1) / stride): "
                          f"ceil(({h} - {kh} + 1) / {sh}) = {out_size(h, kh, sh, 'VALID')}"],
                   help="use padding=\"SAME\", a smaller window, or fewer downsampling steps before it")


def check_dilation(op: str, strides, dilations) -> None:
    """As in TF, a dilated window moves one cell at a time."""
    (sh, sw), (dh, dw) = strides, dilations
    if (dh > 1 or dw > 1) and (sh > 1 or sw > 1):
        raise OpError(f"`{op}` with dilations [{dh}, {dw}] must have strides of 1, got [{sh}, {sw}]",
                      arg="dilations", code="attr",
                      notes=["as in TensorFlow, a dilated window moves one cell at a time"],
                      help="use strides=1 and downsample in a separate step (a pool), or set dilations=1")


def image_and_filter(op: str, x: TensorType, f: TensorType, filter_arg: str, last: str):
    """An NHWC input and a 4-D filter [height, width, in, `last`] whose `in` is the input's
    channels: (h, w, c) and (fh, fw, last size), or OpError naming both tensors."""
    need_rank(x, 4, "input", "NHWC"), need_rank(f, 4, filter_arg, f"[height, width, in, {last}]")
    need_float(x, "input"), need_float(f, filter_arg)
    h, w, c = (static_dim(x, i, "input") for i in (1, 2, 3))
    fh, fw, fin, fout = (static_dim(f, i, filter_arg) for i in range(4))
    if fin != c:
        verb = "expect" if filter_arg.endswith("s") else "expects"
        raise OpError(f"`{op}` {filter_arg} `{{{filter_arg}}}` {verb} {fin} input channels but `{{input}}` has {c}",
                      arg=filter_arg, code="channels",
                      notes=[f"`{{input}}` is {x}: NHWC, so {c} channel{'s' if c != 1 else ''}",
                             f"`{{{filter_arg}}}` is {f} = [height, width, in, {last}]: {fin} in"],
                      help=f"declare `{{{filter_arg}}}` as f32[{fh}, {fw}, {c}, {fout}]")
    return (h, w, c), (fh, fw, fout)


def conv2d_shape(ins, attrs):
    x, f = ins
    (h, w, c), (fh, fw, fout) = image_and_filter("conv2d", x, f, "filters", "out")
    (sh, sw), (dh, dw), pad = attrs["strides"], attrs["dilations"], attrs["padding"]
    check_dilation("conv2d", (sh, sw), (dh, dw))
    oh, ow = out_size(h, span(fh, dh), sh, pad), out_size(w, span(fw, dw), sw, pad)
    if oh <= 0 or ow <= 0:
        raise _window_error("conv2d", (h, w), (fh, fw), (sh, sw), (dh, dw))
    return TensorType("f32", (x.shape[0], oh, ow, fout))


def conv2d_vjp(b, node, dout):
    x, f = node.inputs
    s, p, d = node.attrs["strides"], node.attrs["padding"], node.attrs["dilations"]
    dx = b.op("conv2d_transpose", dout, f, output_shape=(-1,) + tuple(x.type.shape[1:]), strides=s, padding=p,
              dilations=d)
    df = b.op("conv2d_backprop_filter", x, dout, filter_shape=tuple(f.type.shape), strides=s, padding=p,
              dilations=d)
    return dx, df


STRIDES = Arg("strides", "ints", convert=to_pair("strides"))
PADDING = Arg("padding", "str", convert=padding)
DILATIONS = Arg("dilations", "ints", (1, 1), convert=to_pair("dilations"), quiet_default=True)

register(OpDef("conv2d", (Arg("input"), Arg("filters", aliases=("filter",)), STRIDES, PADDING, DILATIONS),
               conv2d_shape, conv2d_vjp, kernel=conv2d_kernel, doc="2-D convolution, TF semantics",
               extra={"macs": lambda ins, out, a: out[1] * out[2] * out[3] * ins[1][0] * ins[1][1] * ins[1][2]}))


def _output_shape(v):
    if not isinstance(v, tuple) or len(v) != 4:
        raise OpError("`output_shape` must list 4 sizes [batch, height, width, channels]",
                      arg="output_shape", code="attr")
    return v


def conv2d_transpose_shape(ins, attrs):
    x, f = ins
    need_rank(x, 4, "input", "NHWC"), need_rank(f, 4, "filters", "[height, width, out, in]")
    need_float(x, "input"), need_float(f, "filters")
    h, w, c = (static_dim(x, i, "input") for i in (1, 2, 3))
    fh, fw, fout, fin = (static_dim(f, i, "filters") for i in range(4))
    if fin != c:
        raise OpError(f"`conv2d_transpose` filters `{{filters}}` expect {fin} input channels but "
                      f"`{{input}}` has {c}", arg="filters", code="channels",
                      notes=[f"`{{input}}` is {x}: NHWC, so {c} channel{'s' if c != 1 else ''}",
                             f"`{{filters}}` is {f} = [height, width, out, in]: {fin} in"],
                      help=f"declare `{{filters}}` as f32[{fh}, {fw}, {fout}, {c}]")
    batch, oh, ow, oc = attrs["output_shape"]
    if batch not in (-1, x.shape[0]) and not isinstance(batch, Sym):
        raise OpError(f"`output_shape` batch {batch} differs from the input's {x.shape[0]}",
                      arg="output_shape", help="write -1 (or N) for the batch entry", code="attr")
    if oc != fout:
        raise OpError(f"`output_shape` has {oc} channels but the filters produce {fout}",
                      arg="output_shape", code="attr", help=f"use {fout} channels")
    (sh, sw), (dh, dw), pad = attrs["strides"], attrs["dilations"], attrs["padding"]
    check_dilation("conv2d_transpose", (sh, sw), (dh, dw))
    bad = [(name, o, i, k, s) for name, o, i, k, s in (("height", oh, h, span(fh, dh), sh),
                                                       ("width", ow, w, span(fw, dw), sw))
           if out_size(o, k, s, pad) != i]
    if bad:
        notes, helps = [], []
        for name, o, i, k, s in bad:
            legal = transpose_sizes(i, k, s, pad)
            notes.append(f"conv2d with {pad} padding, stride {s}, window {k} maps {name} {o} to "
                         f"{out_size(o, k, s, pad)}, not the input's {i}")
            said = (" or ".join(map(str, legal)) if legal.stop - legal.start <= 4
                    else f"{legal.start} to {legal.stop - 1}") if legal.stop > legal.start else "none"
            helps.append(f"{name} {said}")
        raise OpError(f"`output_shape` {[batch if batch != -1 else -1, oh, ow, oc]} is not one that "
                      f"conv2d maps back to the input's {h}x{w}", arg="output_shape",
                      notes=notes, help="legal sizes: " + "; ".join(helps), code="transpose-shape")
    return TensorType("f32", (x.shape[0], oh, ow, oc))


def conv2d_transpose_vjp(b, node, dout):
    x, f = node.inputs
    s, p, d = node.attrs["strides"], node.attrs["padding"], node.attrs["dilations"]
    dx = b.op("conv2d", dout, f, strides=s, padding=p, dilations=d)
    df = b.op("conv2d_backprop_filter", dout, x, filter_shape=tuple(f.type.shape), strides=s, padding=p,
              dilations=d)
    return dx, df


register(OpDef("conv2d_transpose",
               (Arg("input", aliases=("value",)), Arg("filters", aliases=("filter",)),
                Arg("output_shape", "shape", convert=_output_shape), STRIDES, PADDING, DILATIONS),
               conv2d_transpose_shape, conv2d_transpose_vjp, kernel=conv2d_transpose_kernel,
               doc="gradient of conv2d w.r.t. its input, used as an upsampling layer",
               extra={"macs": lambda ins, out, a: ins[0][1] * ins[0][2] * ins[0][3] * ins[1][0] * ins[1][1] * ins[1][2]}))


def backprop_filter_shape(ins, attrs):
    x, dout = ins
    fh, fw, fin, fout = attrs["filter_shape"]
    return TensorType("f32", (fh, fw, fin, fout))


register(OpDef("conv2d_backprop_filter",
               (Arg("input"), Arg("out_backprop"), Arg("filter_shape", "shape"), STRIDES, PADDING, DILATIONS),
               backprop_filter_shape, None, public=False, kernel=conv2d_backprop_filter_kernel,
               doc="gradient of conv2d w.r.t. its filters"))


def conv_pads(in_hw, k_hw, strides, pad):
    """(top, bottom, left, right) padding of a conv or pool window, for kernels."""
    (t, bt), (l, r) = pads(in_hw[0], k_hw[0], strides[0], pad), pads(in_hw[1], k_hw[1], strides[1], pad)
    return t, bt, l, r
