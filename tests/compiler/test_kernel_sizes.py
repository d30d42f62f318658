"""Sizes in generated C: every a*N + b prints as 64-bit arithmetic, and each kernel's thread
condition is a plain test of N worked out in Python. (A product such as N * 128000000 in C int
arithmetic overflows at N = 17 and silently turned the largest flowers layer single-threaded.)"""
from __future__ import annotations

import re

from hypothesis import given
from hypothesis import strategies as st

from cnnc import pipeline
from cnnc.compiler.kernel import PARALLEL_MIN, Lin, threads_when

INT_MAX = 2**31 - 1


def holds(cond: str, n: int) -> bool:
    """Evaluate a thread condition ("0", "1" or "N >= k") at batch size n."""
    if cond in ("0", "1"):
        return cond == "1"
    m = re.fullmatch(r"N >= (\d+)", cond)
    assert m, f"unexpected condition {cond!r}"
    return n >= int(m.group(1))


@given(a=st.integers(0, 10**9), b=st.integers(0, 10**7), minimum=st.integers(0, 10**7))
def test_thread_condition_is_exact(a, b, minimum):
    cond = threads_when(Lin(a, b), minimum)
    for n in (1, 2, 3, 17, 32, 1000, 10**6):
        assert holds(cond, n) == (a * n + b > minimum), (a, b, minimum, n, cond)


def test_batch_sizes_print_as_long_products():
    assert str(Lin(320000, 0)) == "320000L*N"
    assert str(Lin(3, 7)) == "(3L*N + 7)"
    assert str(Lin(1, 0)) == "N"
    assert str(Lin(0, 5)) == "5"


FLOWERS_CONV2 = """model t
input x: f32[N, 50, 50, 32]
param w: f32[5, 5, 32, 64] = truncated_normal(stddev=0.1)
y = conv2d(x, w, strides=[1, 1, 1, 1], padding="SAME")
output y
"""


def test_a_layer_past_int_range_still_gets_threads():
    """128M multiply-adds per example: N * macs passes INT_MAX at N = 17, and threads must stay on."""
    prog = pipeline.lowered(pipeline.check(FLOWERS_CONV2))
    conds = {fn.name: fn.kernel.p.threads for fn in prog.kernels if hasattr(fn.kernel.p, "threads")}
    assert conds, "no conv kernel carries a thread condition"
    macs = 50 * 50 * 64 * 5 * 5 * 32
    assert 32 * macs > INT_MAX
    for name, cond in conds.items():
        assert holds(cond, 32), f"{name}: threads off at N = 32 ({cond})"
        assert holds(cond, 1) == (macs > PARALLEL_MIN), f"{name}: {cond}"
