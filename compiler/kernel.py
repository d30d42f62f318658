"""Kernel records: what one op node becomes in C, with every size resolved.

A size is `Lin(a, b)` = a*N + b, N being the run-time batch size. Each op's `kernel` rule
(in ops/*.py) turns a node into a frozen `Kernel`: the template that lays it out and a
record of ints for it. Strided loop nests (`Nest`) serve every elementwise, broadcasting,
transposing and reducing op: one loop per (collapsed) axis, one stride per operand."""
from __future__ import annotations

import math
import re
from dataclasses import dataclass, field, replace
from typing import Any

import numpy as np

from .types import C_TYPES, Sym, TensorType


@dataclass(frozen=True)
class Lin:
    """a*N + b, printed as a C expression over the int `N`."""

    a: int = 0
    b: int = 0

    @staticmethod
    def of(d) -> "Lin":
        if isinstance(d, Lin):
            return d
        return Lin(d.coeff, 0) if isinstance(d, Sym) else Lin(0, int(d))

    def __add__(self, o) -> "Lin":
        o = Lin.of(o)
        return Lin(self.a + o.a, self.b + o.b)

    def __mul__(self, o) -> "Lin":
        o = Lin.of(o)
        if self.a and o.a:
            raise ValueError(f"{self} * {o} is not linear in N")
        return Lin(self.a * o.b + o.a * self.b, self.b * o.b)

    __rmul__ = __mul__

    @property
    def is_zero(self) -> bool:
        return self.a == 0 and self.b == 0

    def at(self, n: int) -> int:
        return self.a * n + self.b

    def __str__(self) -> str:
        if self.a == 0:
            return str(self.b)
        # a long multiply: 320000*N in int arithmetic would overflow past N = 6710
        t = "N" if self.a == 1 else f"{self.a}L*N"
        return t if self.b == 0 else f"({t} + {self.b})"


PARALLEL_MIN = 1 << 18            # multiply-adds: ~50-100 us of work, well above a parallel region's cost
POINTWISE_PARALLEL_MIN = 1 << 18  # points of a memory-bound loop: below this, one core keeps up


def threads_when(work: Lin, minimum: int = PARALLEL_MIN) -> str:
    """A C condition on N, true when `work` (a*N + b multiply-adds) exceeds `minimum`: whether
    a kernel's threads pay for their start-up. Decided here, so C never multiplies sizes."""
    if work.a <= 0:
        return "1" if work.b > minimum else "0"
    need = (minimum - work.b) // work.a + 1          # the least N with a*N + b > minimum
    return "1" if need <= 1 else f"N >= {need}"


def numel(t: TensorType) -> Lin:
    out = Lin(0, 1)
    for d in t.shape:
        out = out * Lin.of(d)
    return out


def contiguous_strides(shape) -> tuple[Lin, ...]:
    s, out = Lin(0, 1), []
    for d in reversed(shape):
        out.append(s)
        s = s * Lin.of(d)
    return tuple(reversed(out))


def broadcast_strides(shape, out_shape) -> tuple[Lin, ...]:
    """Strides of an operand of `shape` read at each index of `out_shape` (0 on broadcast axes)."""
    own = contiguous_strides(shape)
    lead = len(out_shape) - len(shape)
    res = []
    for i, d in enumerate(out_shape):
        j = i - lead
        if j < 0 or (shape[j] == 1 and d != 1):
            res.append(Lin())
        else:
            res.append(own[j])
    return tuple(res)


@dataclass(frozen=True)
class Loop:
    extent: Lin
    strides: tuple[Lin, ...]        # one per operand


@dataclass(frozen=True)
class Nest:
    """A loop nest over `loops` (outermost first); idx[k] is operand k's index expression."""

    loops: tuple[Loop, ...]
    idx: tuple[str, ...]

    @property
    def vars(self) -> tuple[str, ...]:
        return tuple(f"i{d}" for d in range(len(self.loops)))


def _merges(outer: Lin, inner: Lin, inner_extent: Lin) -> bool:
    try:
        return outer == inner * inner_extent
    except ValueError:
        return False


def nest(extents, operand_strides) -> Nest:
    """Drop unit axes and merge axes every operand walks contiguously, then index each operand."""
    ext = [Lin.of(e) for e in extents]
    strides = [list(s) for s in operand_strides]
    keep = [d for d in range(len(ext)) if ext[d] != Lin(0, 1)]
    ext = [ext[d] for d in keep]
    strides = [[s[d] for d in keep] for s in strides]
    d = len(ext) - 2
    while d >= 0:
        if not (ext[d].a and ext[d + 1].a) and all(_merges(s[d], s[d + 1], ext[d + 1]) for s in strides):
            ext[d] = ext[d] * ext[d + 1]
            del ext[d + 1]
            for s in strides:
                s[d:d + 2] = [s[d + 1]]
        d -= 1
    if not ext:
        ext, strides = [Lin(0, 1)], [[Lin()] for _ in strides]
    loops = tuple(Loop(e, tuple(s[k] for s in strides)) for k, e in enumerate(ext))
    idx = []
    for s in strides:
        terms = []
        for k, st in enumerate(s):
            if st.is_zero:
                continue
            terms.append(f"i{k}" if st == Lin(0, 1) else f"i{k}*{st}")
        idx.append(" + ".join(terms) or "0")
    return Nest(loops, tuple(idx))


ALIAS = "alias"      # a kernel rule's answer for ops that only relabel memory (reshape, squeeze)


@dataclass(frozen=True)
class Kernel:
    """One node's C function: `template` lays it out from the record `p`.

    Arguments are the output first, then the node's inputs in order (G7), each a pointer to
    its dtype. `scratch` bytes of workspace live only during the call; `rng` kernels also
    get the dropout key and the training flag."""

    template: str
    p: Any
    note: str = ""                   # extra comment line: pads, fan-in, ...
    scratch: Lin = Lin()
    rng: bool = False
    call: str = ""                   # the comment's right-hand side, when not one op (fused)
    exact: bool = False              # float ops rounded one by one, never contracted (CNNC_EXACT)


def ctype(t: TensorType) -> str:
    return C_TYPES[t.dtype]


def sanitize(name: str) -> str:
    """A C identifier from a spec name: "layer1-conv1/conv" -> layer1_conv1_conv."""
    s = re.sub(r"[^A-Za-z0-9_]", "_", name).strip("_")
    s = re.sub(r"_+", "_", s) or "v"
    return s if not s[0].isdigit() else "v" + s


def comment_text(text: str) -> str:
    """Text from outside (a file name, a scope or param name, a string) made inert inside a C
    block comment: every character that is not printable ASCII, and the backslash (which could
    splice lines), becomes `_`, and `*/` and `/*` are broken apart. Names reach generated C only
    as identifiers (`sanitize`) or through here."""
    text = "".join(c if " " <= c <= "~" and c != "\\" else "_" for c in text)
    while "*/" in text or "/*" in text:
        text = text.replace("*/", "* /").replace("/*", "/ *")
    return text


def c_comment(lines) -> str:
    """A C block comment of `lines`, each made inert (comment_text)."""
    return "/* " + "\n   ".join(comment_text(line) for line in lines) + " */"


def c_float(v: float) -> str:
    """An exact float32 C literal."""
    if math.isnan(v):
        return "NAN"
    if math.isinf(v):
        return "INFINITY" if v > 0 else "(-INFINITY)"
    f = np.float32(v)
    if f != 0 and not 1e-4 <= abs(f) < 1e7:
        return np.format_float_scientific(f, unique=True, trim="0") + "f"
    return np.format_float_positional(f, unique=True, trim="0") + "f"


@dataclass(frozen=True)
class Pointwise:
    """`stmt` runs once per point of `nest`; `init` (if any) first fills the output."""

    nest: Nest
    stmt: str                         # C statement; @0 is the output, @1.. the inputs (C names at emit)
    init: str | None = None
    out_size: Lin = Lin()
    scale: str | None = None          # divide the output by this afterwards (reduce_mean)

    @property
    def parallel(self) -> bool:
        """Threads may split the outer loop: each point assigns its own output element (no
        reduction), and the output moves along that loop, so the slices are disjoint."""
        return self.init is None and bool(self.nest.loops) and not self.nest.loops[0].strides[0].is_zero

    @property
    def threads(self) -> str:
        return threads_when(self.points, POINTWISE_PARALLEL_MIN)

    @property
    def points(self) -> Lin:
        n = Lin(0, 1)
        for loop in self.nest.loops:
            n = n * loop.extent
        return n


def operand(k: int, nest_: Nest, names: tuple[str, ...]) -> str:
    return f"{names[k]}[{nest_.idx[k]}]"


def pointwise(nest_: Nest, template: str, **kw) -> Kernel:
    """A Pointwise kernel whose statement is `template` with {0} the output, {1}.. the inputs."""
    names = tuple(f"@{k}" for k in range(len(nest_.idx)))     # emit's `operands`: the C names
    stmt = template.format(*(operand(k, nest_, names) for k in range(len(names))))
    return Kernel("pointwise.c.j2", Pointwise(nest_, stmt, **kw))


def elementwise(expr: str):
    """A kernel rule for an elementwise op: expr over {1}, {2}.. (inputs), NumPy broadcasting."""
    def rule(node) -> Kernel:
        out = node.out.type.shape
        strides = [contiguous_strides(out)] + [broadcast_strides(v.type.shape, out) for v in node.inputs]
        # exact: a fused epilogue applying the same expr then rounds as this kernel does
        return replace(pointwise(nest(out, strides), "{0} = " + expr + ";"), exact=True)
    rule.expr = expr            # what fuse.py applies in a producer's epilogue
    return rule


def reduction(node, mode: str) -> Kernel:
    """reduce_sum/mean/max: walk the input in order, accumulating into the kept index."""
    x = node.inputs[0].type
    axes = _axes(node.attrs["axis"], x.rank)
    kept = [d if i not in axes else 1 for i, d in enumerate(x.shape)]
    out_strides = [Lin() if i in axes else s for i, s in enumerate(contiguous_strides(kept))]
    n = nest(x.shape, [out_strides, contiguous_strides(x.shape)])
    count = Lin(0, 1)
    for i in axes:
        count = count * Lin.of(x.shape[i])
    size = numel(node.out.type)
    if x.dtype == "f32" and axes == tuple(range(len(axes))) and size.a == 0 and size.b >= 32 and size.b % 16 == 0:
        # over the leading axes (count rows) into a wide row (bias gradients): threads split the row
        return Kernel("reduce_rows.c.j2", record(mode=mode, rows=count, width=size.b,
                                                 threads=threads_when(count * size.b, POINTWISE_PARALLEL_MIN)))
    if mode == "max":
        init = "-INFINITY" if x.dtype == "f32" else "INT32_MIN"
        return pointwise(n, "{0} = {1} > {0} ? {1} : {0};", init=init, out_size=size)
    zero = "0.0f" if x.dtype == "f32" else "0"
    scale = f"(float)({count})" if mode == "mean" else None
    if mode == "mean" and x.dtype != "f32":
        raise NotImplementedError("reduce_mean of i32")
    return pointwise(n, "{0} += {1};", init=zero, out_size=size, scale=scale)


def _axes(axes, rank) -> tuple[int, ...]:
    if axes is None:
        return tuple(range(rank))
    return tuple(sorted({a % rank for a in axes}))


def reduced_view(in_type: TensorType, axes) -> tuple[tuple, tuple[Lin, ...]]:
    """(input shape, strides of the reduced tensor read at each input index)."""
    axes = _axes(axes, in_type.rank)
    kept = [d if i not in axes else 1 for i, d in enumerate(in_type.shape)]
    return in_type.shape, tuple(Lin() if i in axes else s for i, s in enumerate(contiguous_strides(kept)))


def split_axis(t: TensorType, axis: int) -> tuple[Lin, Lin, Lin]:
    """(outer, length, inner) sizes around `axis`."""
    axis %= t.rank
    outer, inner = Lin(0, 1), Lin(0, 1)
    for d in t.shape[:axis]:
        outer = outer * Lin.of(d)
    for d in t.shape[axis + 1:]:
        inner = inner * Lin.of(d)
    return outer, Lin.of(t.shape[axis]), inner


@dataclass(frozen=True)
class Record:
    """A generic frozen record of named ints/strings for a template (hashable, comparable)."""

    items: tuple[tuple[str, Any], ...] = field(default=())

    def __getattr__(self, name):
        for k, v in self.items:
            if k == name:
                return v
        raise AttributeError(name)


def record(**kw) -> Record:
    return Record(tuple(sorted(kw.items())))
