"""TF's SAME/VALID window arithmetic, shared by convolution and pooling."""
from __future__ import annotations


def out_size(size: int, k: int, stride: int, padding: str) -> int:
    """Output length along one axis: SAME ceil(in/s), VALID ceil((in-k+1)/s) (may be <= 0)."""
    if padding == "SAME":
        return -(-size // stride)
    return -(-(size - k + 1) // stride)


def pads(size: int, k: int, stride: int, padding: str) -> tuple[int, int]:
    """(before, after) padding; SAME puts the odd cell after (bottom/right), as TF does."""
    if padding == "VALID":
        return 0, 0
    total = max((out_size(size, k, stride, "SAME") - 1) * stride + k - size, 0)
    return total // 2, total - total // 2


def transpose_sizes(size: int, k: int, stride: int, padding: str) -> range:
    """Every output length a transposed conv may produce so that conv maps it back to `size`.

    SAME: ceil(o / s) == size, so (size-1)*s < o <= size*s; VALID shifts that by k - 1."""
    shift = 0 if padding == "SAME" else k - 1
    return range(max(1, (size - 1) * stride + 1 + shift), size * stride + shift + 1)


def transpose_size(size: int, k: int, stride: int, padding: str) -> int:
    """The output length the conv_transpose layer picks: SAME the largest (size * stride),
    VALID the smallest ((size - 1) * stride + k)."""
    sizes = transpose_sizes(size, k, stride, padding)
    return sizes[-1] if padding == "SAME" else sizes[0]
