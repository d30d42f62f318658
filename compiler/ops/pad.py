"""pad: tf.pad with modes CONSTANT, REFLECT and SYMMETRIC, and its gradient (TF's PadGrad
slice, or MirrorPadGrad for the mirrored modes, where reflected cells add back)."""
from __future__ import annotations

from dataclasses import dataclass

from ..types import Sym, TensorType, dim_str
from . import Arg, OpDef, OpError, register
from .common import fmt, need_float
from ..kernel import Kernel, Lin, c_float, numel, record

MODES = ("CONSTANT", "REFLECT", "SYMMETRIC")


def _mode(v):
    if not isinstance(v, str) or v.upper() not in MODES:
        raise OpError(f"`mode` must be \"CONSTANT\", \"REFLECT\" or \"SYMMETRIC\", got {fmt(v)}",
                      arg="mode", code="attr")
    return v.upper()


def _paddings(v):
    if not isinstance(v, tuple) or not all(isinstance(p, tuple) and len(p) == 2 for p in v):
        raise OpError(f"`paddings` must be a list of [before, after] pairs, one per axis, got {fmt(v)}",
                      arg="paddings", code="attr", help="e.g. [[0, 0], [1, 1], [1, 1], [0, 0]] for NHWC")
    return v


def pad_shape(ins, attrs):
    x, pads, mode = ins[0], attrs["paddings"], attrs["mode"]
    need_float(x, "tensor")
    if len(pads) != x.rank:
        raise OpError(f"`paddings` has {len(pads)} [before, after] pairs but `{{tensor}}` is {x}, "
                      f"which has {x.rank} axes", arg="paddings", code="pad",
                      help=f"give one pair per axis ({x.rank}), [0, 0] where nothing is added")
    dims = []
    for axis, ((before, after), d) in enumerate(zip(pads, x.shape)):
        if before < 0 or after < 0:
            raise OpError(f"padding of axis {axis} is [{before}, {after}]: amounts must not be negative",
                          arg="paddings", code="pad", help="to remove cells, use a VALID conv or pool")
        if isinstance(d, Sym):
            if before or after:
                raise OpError(f"axis {axis} of `{{tensor}}` is the batch ({dim_str(d)}); it cannot be "
                              f"padded, got [{before}, {after}]", arg="paddings", code="pad",
                              help=f"use [0, 0] for axis {axis}")
            dims.append(d)
            continue
        most = d - 1 if mode == "REFLECT" else d
        if mode != "CONSTANT" and max(before, after) > most:
            rel = "less than" if mode == "REFLECT" else "at most"
            raise OpError(f"{mode} padding of axis {axis} is [{before}, {after}] but that axis has size {d}; "
                          f"each amount must be {rel} {most + (mode == 'REFLECT')}",
                          arg="paddings", code="pad",
                          help=(f"REFLECT mirrors without repeating the edge, so it can add at most {d - 1} "
                                f"cells per side; SYMMETRIC allows {d}" if mode == "REFLECT" else
                                f"SYMMETRIC mirrors the edge too, so it can add at most {d} cells per side"))
        dims.append(before + d + after)
    return x.with_shape(dims)


def pad_grad_shape(ins, attrs):
    dout, pads = ins[0], attrs["paddings"]
    return TensorType("f32", tuple(d if isinstance(d, Sym) else d - b - a for d, (b, a) in zip(dout.shape, pads)))


def _pad_vjp(b, node, dout):
    return (b.op("pad_grad", dout, paddings=node.attrs["paddings"], mode=node.attrs["mode"]),)


@dataclass(frozen=True)
class PadAxis:
    """One loop of the pad kernel: output extent, input extent, cells added before and after.
    Adjacent unpadded axes are merged into one."""

    out: Lin
    inp: Lin
    before: int
    after: int

    @property
    def padded(self) -> bool:
        return bool(self.before or self.after)

    @property
    def top(self) -> int:                      # the last valid source index
        return self.inp.b - 1


def pad_axes(in_shape, pads) -> tuple[PadAxis, ...]:
    axes: list[PadAxis] = []
    for d, (before, after) in zip(in_shape, pads):
        d = Lin.of(d)
        if not (before or after) and axes and not axes[-1].padded and not (axes[-1].inp.a and d.a):
            axes[-1] = PadAxis(axes[-1].out * d, axes[-1].inp * d, 0, 0)
        else:
            axes.append(PadAxis(d + (before + after), d, before, after))
    return tuple(axes)


def pad_kernel(node, grad=False):
    """forward: walk the output, read the source cell; grad: walk dout, add into the source."""
    x = node.out.type if grad else node.inputs[0].type
    mode = node.attrs["mode"]
    return Kernel("pad.c.j2", record(axes=pad_axes(x.shape, node.attrs["paddings"]), mode=mode, grad=grad,
                                     value=c_float(node.attrs.get("constant_values", 0.0)),
                                     in_size=numel(x)))


register(OpDef("pad", (Arg("tensor", aliases=("x", "input")), Arg("paddings", "pairs", convert=_paddings),
                       Arg("mode", "str", "CONSTANT", convert=_mode), Arg("constant_values", "float", 0.0)),
               pad_shape, _pad_vjp, kernel=pad_kernel,
               doc="add cells around each axis: a constant, or the tensor mirrored"))
register(OpDef("pad_grad", (Arg("dout"), Arg("paddings", "pairs"), Arg("mode", "str")), pad_grad_shape,
               public=False, kernel=lambda node: pad_kernel(node, grad=True),
               doc="the cells of dout each input cell produced, summed (MirrorPadGrad)"))
