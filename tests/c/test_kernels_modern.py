"""Kernels of the modern CNN blocks (depthwise convolution, resize, batch normalization), forward and backward,
against the float64 NumPy reference (tests/reference/numpy_ops.py, written from TF's
definitions). Tolerance: check_case's rtol 1e-4 of the largest magnitude, as for conv2d: each
output is a sum of at most a few hundred O(1) products (float32 rounding stays ~1e-6)."""
from __future__ import annotations

import numpy as np
import pytest

from tests.reference import numpy_ops as ref

from .conftest import N, Case, check_case, normal, run_zoo

_rng = np.random.default_rng(20261202)


def _depthwise_case(i, h, w, c, m, kh, kw, s, pad, d=(1, 1)):
    return Case(f"depthwise_{i}_{h}x{w}x{c}m{m}_k{kh}x{kw}_s{s[0]}x{s[1]}_d{d[0]}x{d[1]}_{pad}", "depthwise_conv2d",
                [((N, h, w, c), "f32", normal), ((kh, kw, c, m), "f32", normal)],
                dict(strides=s, padding=pad, dilations=d),
                ref=lambda x, f: ref.depthwise_conv2d(x, f, s, pad, d),
                vjp=lambda x, f, dy: ref.depthwise_conv2d_vjp(x, f, dy, s, pad, d))


def depthwise_cases():
    # hand-picked: TF's asymmetric SAME pads (even windows, stride 2 and 3), multipliers,
    # dilations with SAME and VALID, and a 64-channel layer large enough to run on threads
    fixed = [(7, 7, 3, 1, 3, 3, (2, 2), "SAME"), (6, 5, 2, 2, 2, 2, (2, 1), "SAME"),
             (8, 8, 4, 3, 3, 3, (3, 3), "SAME"), (6, 7, 2, 1, 3, 2, (1, 2), "VALID"),
             (5, 5, 1, 4, 1, 1, (1, 1), "VALID"), (9, 8, 3, 2, 3, 3, (1, 1), "SAME", (2, 3)),
             (9, 9, 2, 1, 3, 2, (1, 1), "VALID", (2, 2)), (16, 16, 64, 1, 3, 3, (1, 1), "SAME"),
             (12, 12, 32, 2, 3, 3, (2, 2), "SAME")]
    cases = [_depthwise_case(i, *f) for i, f in enumerate(fixed)]
    for i in range(len(fixed), 18):
        h, w = (int(v) for v in _rng.integers(3, 11, 2))
        c, m = int(_rng.integers(1, 6)), int(_rng.integers(1, 4))
        kh, kw = (int(v) for v in _rng.integers(1, 5, 2))
        pad = ("SAME", "VALID")[i % 2]
        if i % 3 == 0:
            s, d = (1, 1), tuple(int(v) for v in _rng.integers(1, 4, 2))
        else:
            s, d = tuple(int(v) for v in _rng.integers(1, 4, 2)), (1, 1)
        if pad == "VALID":
            kh, kw = min(kh, (h - 1) // d[0] + 1), min(kw, (w - 1) // d[1] + 1)
        cases.append(_depthwise_case(i, h, w, c, m, kh, kw, s, pad, d))
    return cases


def resize_cases():
    # up, down, mixed and identity along each axis; integer and non-dyadic scales (5 -> 3,
    # 3 -> 7) whose float32 sample positions TF rounds; 40 channels to exercise vector loops
    sizes = [((4, 4, 3), (8, 8)), ((6, 9, 2), (3, 4)), ((5, 3, 2), (3, 7)), ((3, 5, 40), (7, 5)),
             ((2, 2, 1), (5, 1)), ((9, 7, 3), (9, 7)), ((1, 4, 2), (3, 2))]
    cases = []
    for method in ("bilinear", "nearest"):
        for (h, w, c), size in sizes:
            cases.append(Case(f"resize_{method}_{h}x{w}x{c}_to_{size[0]}x{size[1]}", "resize",
                              [((N, h, w, c), "f32", normal)], dict(size=size, method=method),
                              ref=lambda x, size=size, method=method: ref.resize(x, size, method),
                              vjp=lambda x, d, size=size, method=method: ref.resize_vjp(x, d, size, method)))
    return cases


def _positive(rng, shape):
    return (np.abs(rng.standard_normal(shape)) + 0.2).astype(np.float32)


def batch_normalization_cases():
    # per-channel statistics of an NHWC batch (the layer's case), of a [N, C] batch, keepdims
    # statistics [1, C] and scalar ones; 40 channels to exercise vector loops
    shapes = [((N, 5, 4, 3), (3,)), ((N, 6), (6,)), ((N, 3, 40), (1, 40)), ((N, 4, 2), ())]
    cases = []
    for i, (x, st) in enumerate(shapes):
        eps = (1e-3, 1e-5, 0.1, 0.0)[i]
        cases.append(Case(f"batch_normalization_{i}", "batch_normalization",
                          [(x, "f32", normal), (st, "f32", normal), (st, "f32", _positive),
                           (st, "f32", normal), (st, "f32", normal)], dict(variance_epsilon=eps),
                          ref=lambda *a, eps=eps: ref.batch_normalization(*a, eps),
                          vjp=lambda *a, eps=eps: ref.batch_normalization_vjp(*a, eps)))
    return cases


CASES = depthwise_cases() + resize_cases() + batch_normalization_cases()


@pytest.fixture(scope="module")
def zoo(out_root):
    return run_zoo("modern_zoo", CASES, out_root, n=2)


@pytest.mark.parametrize("case", CASES, ids=lambda c: c.id)
def test_kernels(zoo, case):
    check_case(zoo, case)


# --------------------------------------------------------------------------- thread counts

THREADED = """model dw_threads
input x: f32[N, 24, 24, 32]
param f: f32[3, 3, 32, 2] = glorot_uniform()
output y = depthwise_conv2d(x, f, strides=1, padding="SAME")
"""


def test_depthwise_gradients_have_the_same_bits_for_any_thread_count(out_root):
    """The filter gradient sums fixed row shares in a fixed order and the input gradient writes
    each cell once, so one and two threads agree bit for bit (at N = 8 every depthwise kernel
    runs threaded: 8 * 24 * 24 * 64 * 9 multiply-adds > 2^18)."""
    from cnnc import pipeline
    mod = pipeline.compile(THREADED, out_root / "dw_threads")
    src = next((out_root / "dw_threads").glob("*/model.c")).read_text()
    assert src.count("CNNC_PARALLEL_FOR(1)") >= 3, "a depthwise kernel runs serially at this size"
    model = mod.Model(seed=0)
    rng = np.random.default_rng(3)
    x = rng.standard_normal((8, 24, 24, 32)).astype(np.float32)
    dy = rng.standard_normal((8, 24, 24, 64)).astype(np.float32)
    runs = []
    for threads in (1, 2, 1):
        model.threads = threads
        runs.append(model.backward({"x": x}, {"y": dy}))
    for k in runs[0]:
        np.testing.assert_array_equal(runs[1][k], runs[0][k], err_msg=f"{k}: 1 and 2 threads differ")
        np.testing.assert_array_equal(runs[2][k], runs[0][k], err_msg=f"{k}: two 1-thread runs differ")
