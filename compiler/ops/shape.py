"""Ops that only rearrange values: reshape (with -1 inference), transpose, expand_dims, squeeze,
concat (the variadic op: its `values` is a list of tensors)."""
from __future__ import annotations

import math
from dataclasses import replace

from ..types import Sym, TensorType, dim_str
from . import Arg, OpDef, OpError, register
from .common import norm_axis, shape_str
from ..kernel import ALIAS, Kernel, Lin, contiguous_strides, nest, pointwise, record, split_axis


def _factors(t: TensorType) -> str:
    return "*".join(str(d) for d in t.shape if isinstance(d, int)) or "1"


def reshape_shape(ins, attrs):
    x, target = ins[0], attrs["shape"]
    per, fixed = x.size()
    holes = [i for i, d in enumerate(target) if d == -1]
    if len(holes) > 1:
        raise OpError(f"`reshape` target {shape_str(target)} has {len(holes)} entries of -1; "
                      "at most one size can be inferred", arg="shape", code="reshape-ambiguous")
    for d in target:
        if isinstance(d, int) and d != -1 and d <= 0:
            raise OpError(f"`reshape` sizes must be positive (or -1), got {d}", arg="shape",
                          code="attr")
    syms = [d for d in target if isinstance(d, Sym)]
    static = math.prod(d for d in target if isinstance(d, int) and d != -1)
    note = f"`{{tensor}}` is {x}, {x.count_str()}"
    if per:                                       # symbolic batch: N*per values
        if not syms and not holes:
            raise OpError(f"`reshape` target {shape_str(target)} fixes the batch size",
                          arg="shape", code="reshape-batch", notes=[note],
                          help=f"use -1 for the batch: [-1, {', '.join(map(str, target[1:]))}]")
        coeff = math.prod(s.coeff for s in syms)
        if syms and holes:                        # [N, -1]: the batch is given, -1 is per example
            if per % (static * coeff) == 0:
                return x.with_shape(per // (static * coeff) if d == -1 else d for d in target)
        if per % (static * coeff) != 0 or (syms and not holes and per != static * coeff):
            rows = static * coeff
            help_ = (f"[-1, {per}] fits ({_factors(x)})" if len(target) == 2
                     else f"the fixed sizes multiply to {rows}; they must divide {per}")
            raise OpError(f"`reshape` cannot split {per} values per example into rows of {rows}",
                          arg="shape", code="reshape-size", notes=[note], help=help_)
        batch = x.shape[x.sym_axes[0]].name
        dims = [Sym(batch, per // static) if d == -1 else d for d in target]
    else:
        if syms:
            raise OpError(f"`reshape` target uses the batch size {syms[0]} but the input {x} "
                          "has a fixed size", arg="shape", code="reshape-batch")
        if (holes and fixed % static) or (not holes and fixed != static):
            raise OpError(f"`reshape` cannot arrange {fixed} values as {shape_str(target)}",
                          arg="shape", code="reshape-size", notes=[note],
                          help=f"the sizes must multiply to {fixed}")
        dims = [fixed // static if d == -1 else d for d in target]
    out = x.with_shape(dims)
    if len(out.sym_axes) > 1:
        raise OpError("`reshape` result would have two batch-sized dimensions", arg="shape")
    return out


def reshape_explain(node) -> str | None:
    """The arithmetic behind a -1 in a reshape's target, for an editor's hover."""
    x, target, out = node.inputs[0].type, node.attrs["shape"], node.out.type
    if -1 not in target:
        return None
    i = list(target).index(-1)
    per, fixed = x.size()
    count = per or fixed
    factors = f"{_factors(x)} = " if math.prod(d for d in x.shape if isinstance(d, int)) == count \
        and "*" in _factors(x) else ""
    held = f"{x} holds {factors}{count} values" + (" per example" if per else "")
    if per:
        batch = x.shape[x.sym_axes[0]].name
        total = f"{per}*{batch}" if per != 1 else batch
    else:
        total = str(fixed)
    rest = [dim_str(d) for j, d in enumerate(target) if j != i]
    divisor = "*".join(rest) or "1"
    return f"-1 = {total} / {divisor} = {dim_str(out.shape[i])} ({held})"


def _reshape_vjp(b, node, dout):
    return (b.op("reshape", dout, shape=tuple(node.inputs[0].type.shape)),)


register(OpDef("reshape", (Arg("tensor", aliases=("x", "input")), Arg("shape", "shape")),
               reshape_shape, _reshape_vjp, kernel=lambda node: ALIAS, doc="same values, new shape; one -1 is inferred",
               extra={"explain": reshape_explain}))


def _perm(v):
    if not isinstance(v, tuple) or not all(isinstance(a, int) for a in v):
        raise OpError("`perm` must be a list of axes", arg="perm", code="attr")
    return v


def transpose_shape(ins, attrs):
    x, perm = ins[0], attrs["perm"]
    if sorted(perm) != list(range(x.rank)):
        raise OpError(f"`perm` {list(perm)} is not a permutation of the {x.rank} axes of {x}",
                      arg="perm", code="attr", help=f"list each of 0..{x.rank - 1} exactly once")
    return x.with_shape(x.shape[p] for p in perm)


def _transpose_vjp(b, node, dout):
    perm = node.attrs["perm"]
    inverse = tuple(sorted(range(len(perm)), key=lambda i: perm[i]))
    return (b.op("transpose", dout, perm=inverse),)


def transpose_kernel(node):
    """Walk the output in order; read the input through permuted strides."""
    perm, out = node.attrs["perm"], node.out.type.shape
    src = contiguous_strides(node.inputs[0].type.shape)
    return pointwise(nest(out, [contiguous_strides(out), tuple(src[p] for p in perm)]), "{0} = {1};")


register(OpDef("transpose", (Arg("a", aliases=("x", "input")), Arg("perm", "ints", convert=_perm)),
               transpose_shape, _transpose_vjp, kernel=transpose_kernel, doc="permute axes"))


def expand_dims_shape(ins, attrs):
    x, axis = ins[0], attrs["axis"]
    if not -x.rank - 1 <= axis <= x.rank:
        raise OpError(f"axis {axis} is out of range for expand_dims of a {x.rank}-D tensor "
                      f"(valid: {-x.rank - 1} to {x.rank})", arg="axis", code="axis")
    axis = axis % (x.rank + 1)
    return x.with_shape(x.shape[:axis] + (1,) + x.shape[axis:])


def squeeze_shape(ins, attrs):
    x, axes = ins[0], attrs["axis"]
    if axes is None:
        axes = tuple(i for i, d in enumerate(x.shape) if d == 1)
    axes = {norm_axis(a, x.rank) for a in ((axes,) if isinstance(axes, int) else axes)}
    for a in sorted(axes):
        if x.shape[a] != 1:
            raise OpError(f"cannot squeeze axis {a} of {x}: its size is {dim_str(x.shape[a])}, not 1",
                          arg="axis", code="axis")
    return x.with_shape(d for i, d in enumerate(x.shape) if i not in axes)


register(OpDef("expand_dims", (Arg("input"), Arg("axis", "int")), expand_dims_shape, _reshape_vjp,
               kernel=lambda node: ALIAS, doc="insert an axis of size 1"))
register(OpDef("squeeze", (Arg("input"), Arg("axis", "axes", None)), squeeze_shape, _reshape_vjp,
               kernel=lambda node: ALIAS, doc="remove axes of size 1"))


# ---------------------------------------------------------------- concat: a variadic op

def concat_shape(ins, attrs):
    first = ins[0]
    if first.rank == 0:
        raise OpError(f"cannot concatenate scalars: `{{values[0]}}` is {first}", arg="values[0]",
                      code="concat", help="give them an axis first, e.g. expand_dims(x, 0)")
    axis = norm_axis(attrs["axis"], first.rank)
    total = 0
    for i, t in enumerate(ins):
        if t.dtype != first.dtype:
            raise OpError(f"`{{values[{i}]}}` is {t} but `{{values[0]}}` is {first}: dtypes differ",
                          arg=f"values[{i}]", code="dtype", help=f"cast it: cast({{values[{i}]}}, {first.dtype})")
        notes = [f"`{{values[0]}}` is {first}", f"`{{values[{i}]}}` is {t}"]
        want = shape_str(first.shape[:axis] + ("_",) + first.shape[axis + 1:]) if first.rank else ""
        if t.rank != first.rank:
            raise OpError(f"cannot join a {first.rank}-D and a {t.rank}-D tensor along axis {axis}",
                          arg=f"values[{i}]", code="concat", notes=notes,
                          help=f"every input must be {first.rank}-D with the sizes {want} (_: any)")
        clash = next((k for k, (a, b) in enumerate(zip(first.shape, t.shape)) if k != axis and a != b), None)
        if clash is not None:
            raise OpError(f"shapes {shape_str(first.shape)} and {shape_str(t.shape)} differ on axis {clash} "
                          f"({dim_str(first.shape[clash])} vs {dim_str(t.shape[clash])}), but concat joins "
                          f"them along axis {axis}", arg=f"values[{i}]", code="concat", notes=notes,
                          help=f"every input needs the sizes {want} (_: any): all axes but axis {axis} must match")
        if isinstance(t.shape[axis], Sym):
            raise OpError(f"axis {axis} is the batch ({dim_str(t.shape[axis])}); concat joins "
                          "examples' features, not batches", arg="axis", code="concat",
                          help="concatenate along a feature axis, e.g. axis=-1")
        total += t.shape[axis]
    return first.with_shape(first.shape[:axis] + (total,) + first.shape[axis + 1:])


def _concat_vjp(b, node, dout):
    axis = node.attrs["axis"] % dout.type.rank
    grads, begin = [], 0
    for v in node.inputs:
        size = v.type.shape[axis]
        grads.append(b.op("concat_slice", dout, axis=axis, begin=begin, size=size))
        begin += size
    return tuple(grads)


def concat_kernel(node):
    """Each input fills its band of every output row: rows = the axes before `axis`."""
    axis = node.attrs["axis"] % node.out.type.rank
    rows, width, inner = split_axis(node.out.type, axis)
    bands, at = [], Lin()
    for v in node.inputs:
        w = Lin.of(v.type.shape[axis]) * inner
        bands.append((at, w))
        at = at + w
    return Kernel("concat.c.j2", record(rows=rows, out_width=width * inner, bands=tuple(bands)))


def _slice_shape(ins, attrs):
    d, axis = ins[0], attrs["axis"]
    return d.with_shape(d.shape[:axis] + (attrs["size"],) + d.shape[axis + 1:])


def concat_slice_kernel(node):
    """out = dout[..., begin:begin + size, ...] along `axis`: a strided copy."""
    axis, out = node.attrs["axis"], node.out.type.shape
    src = contiguous_strides(node.inputs[0].type.shape)
    n = nest(out, [contiguous_strides(out), src])
    offset = src[axis] * node.attrs["begin"]
    n = replace(n, idx=(n.idx[0], f"{offset} + {n.idx[1]}" if node.attrs["begin"] else n.idx[1]))
    return pointwise(n, "{0} = {1};")


register(OpDef("concat", (Arg("values", "tensors"), Arg("axis", "int")), concat_shape, _concat_vjp,
               kernel=concat_kernel, doc="join tensors along an axis"))
register(OpDef("concat_slice", (Arg("dout"), Arg("axis", "int"), Arg("begin", "int"), Arg("size", "int")),
               _slice_shape, public=False, kernel=concat_slice_kernel,
               doc="the band of dout one concat input produced"))
