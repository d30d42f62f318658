"""Tensor types: a dtype and a shape whose dims are ints or a multiple of the batch symbol.

Every dimension but the batch is a compile-time constant. The batch dimension is kept
symbolic (`N`, or `k*N` after a reshape folds rows into it) so one build serves any batch."""
from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Iterable, Union

DTYPES = ("f32", "i32", "bool")
DECLARABLE_DTYPES = ("f32", "i32")
C_TYPES = {"f32": "float", "i32": "int32_t", "bool": "uint8_t"}
ITEMSIZE = {"f32": 4, "i32": 4, "bool": 1}


@dataclass(frozen=True)
class Sym:
    """`coeff * name`: a dimension proportional to the run-time batch size."""

    name: str = "N"
    coeff: int = 1

    def __str__(self) -> str:
        return self.name if self.coeff == 1 else f"{self.coeff}*{self.name}"


Dim = Union[int, Sym]


def dim_str(d: Dim) -> str:
    return str(d)


def dim_mul(d: Dim, k: int) -> Dim:
    return Sym(d.name, d.coeff * k) if isinstance(d, Sym) else d * k


@dataclass(frozen=True)
class TensorType:
    dtype: str
    shape: tuple[Dim, ...]

    def __str__(self) -> str:
        return f"{self.dtype}[{', '.join(dim_str(d) for d in self.shape)}]"

    @property
    def rank(self) -> int:
        return len(self.shape)

    @property
    def sym_axes(self) -> tuple[int, ...]:
        return tuple(i for i, d in enumerate(self.shape) if isinstance(d, Sym))

    @property
    def is_static(self) -> bool:
        return not self.sym_axes

    def size(self) -> tuple[int, int]:
        """Element count as (per_batch, fixed): per_batch * N when symbolic, else (0, fixed)."""
        static = math.prod(d for d in self.shape if isinstance(d, int))
        syms = [d for d in self.shape if isinstance(d, Sym)]
        if not syms:
            return 0, static
        return static * math.prod(s.coeff for s in syms), 0

    def count_str(self) -> str:
        per, fixed = self.size()
        return f"{per} values per example" if per else f"{fixed} values"

    def with_dtype(self, dtype: str) -> "TensorType":
        return TensorType(dtype, self.shape)

    def with_shape(self, shape: Iterable[Dim]) -> "TensorType":
        return TensorType(self.dtype, tuple(shape))


def scalar(dtype: str = "f32") -> TensorType:
    return TensorType(dtype, ())


def concrete_shape(t: TensorType, n: int) -> tuple[int, ...]:
    """The shape for a run-time batch size n."""
    return tuple(d.coeff * n if isinstance(d, Sym) else d for d in t.shape)


class BroadcastError(Exception):
    pass


def broadcast_shapes(a: tuple[Dim, ...], b: tuple[Dim, ...]) -> tuple[Dim, ...]:
    """NumPy broadcasting; a symbolic dim broadcasts only against 1 or the same symbol."""
    out: list[Dim] = []
    for i in range(1, max(len(a), len(b)) + 1):
        x = a[-i] if i <= len(a) else 1
        y = b[-i] if i <= len(b) else 1
        if x == y or y == 1:
            out.append(x)
        elif x == 1:
            out.append(y)
        else:
            raise BroadcastError(f"dimension {dim_str(x)} does not broadcast against {dim_str(y)}")
    return tuple(reversed(out))
