"""Small checks shared by shape rules: ranks, dtypes, and converters for static arguments."""
from __future__ import annotations

from ..types import Sym, TensorType, dim_str
from . import OpError


def need_rank(t: TensorType, rank: int, arg: str, what: str = "") -> None:
    if t.rank != rank:
        layout = f" ({what})" if what else ""
        raise OpError(f"`{arg}` must be a {rank}-D tensor{layout}, got {t}", arg=arg)


def need_dtype(t: TensorType, dtypes: tuple[str, ...], arg: str) -> None:
    if t.dtype not in dtypes:
        want = " or ".join(dtypes)
        help_ = f"convert it with cast({{{arg}}}, {dtypes[0]})" if dtypes[0] in ("f32", "i32") else None
        raise OpError(f"`{arg}` must be {want}, got {t}", arg=arg, help=help_, code="dtype")


def need_float(t: TensorType, arg: str) -> None:
    need_dtype(t, ("f32",), arg)


def static_dim(t: TensorType, axis: int, arg: str) -> int:
    d = t.shape[axis]
    if isinstance(d, Sym):
        raise OpError(f"axis {axis} of `{arg}` ({t}) must be a fixed size, not the batch size {d}",
                      arg=arg)
    return d


def norm_axis(axis: int, rank: int, arg: str = "axis") -> int:
    if not -rank <= axis < rank:
        raise OpError(f"axis {axis} is out of range for a {rank}-D tensor "
                      f"(valid: {-rank} to {rank - 1})", arg=arg, code="axis")
    return axis % rank


def to_pair(name: str):
    """strides/ksize given as an int, [h, w] or TF's [1, h, w, 1] -> (h, w)."""
    def convert(v):
        if isinstance(v, int):
            vals = (v, v)
        elif isinstance(v, tuple) and len(v) == 2:
            vals = v
        elif isinstance(v, tuple) and len(v) == 4:
            if v[0] != 1 or v[3] != 1:
                raise OpError(f"`{name}` {list(v)} must have 1 as its first and last entries "
                              "(batch and channels are not strided or pooled)", arg=name,
                              help=f"use {[1, v[1], v[2], 1]}", code="attr")
            vals = (v[1], v[2])
        else:
            raise OpError(f"`{name}` must be an int, [h, w] or [1, h, w, 1], got {fmt(v)}",
                          arg=name, code="attr")
        if any(not isinstance(x, int) or x < 1 for x in vals):
            raise OpError(f"`{name}` entries must be positive integers, got {fmt(v)}", arg=name,
                          code="attr")
        return tuple(vals)
    return convert


def padding(v):
    if not isinstance(v, str) or v.upper() not in ("SAME", "VALID"):
        raise OpError(f"`padding` must be \"SAME\" or \"VALID\", got {fmt(v)}", arg="padding",
                      code="attr")
    return v.upper()


def fmt(v) -> str:
    if isinstance(v, tuple):
        return "[" + ", ".join(fmt(x) for x in v) + "]"
    if isinstance(v, str):
        return f'"{v}"'
    return str(v)


def shape_str(shape) -> str:
    return "[" + ", ".join(dim_str(d) for d in shape) + "]"
