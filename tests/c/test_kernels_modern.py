"""Kernels of the modern CNN blocks (depthwise and dilated convolution, resize, batch
normalization), forward and backward, against the float64 NumPy reference
(tests/reference/numpy_ops.py, written from TF's definitions). Tolerance: check_case's rtol 1e-4 of the largest magnitude, as for conv2d: each
output is a sum of at most a few hundred O(1) products (float32 rounding stays ~1e-6)."""
from __future__ import annotations

import numpy as np
import pytest

from cnnc.compiler.ops.window import out_size
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


def _dilated_conv_case(i, h, w, c, oc, kh, kw, pad, d):
    return Case(f"conv2d_dilated_{i}_{h}x{w}x{c}to{oc}_k{kh}x{kw}_d{d[0]}x{d[1]}_{pad}", "conv2d",
                [((N, h, w, c), "f32", normal), ((kh, kw, c, oc), "f32", normal)],
                dict(strides=(1, 1), padding=pad, dilations=d),
                ref=lambda x, f: ref.conv2d(x, f, 1, pad, d),
                vjp=lambda x, f, dy: ref.conv2d_vjp(x, f, dy, 1, pad, d))


def _dilated_transpose_case(i, oh, ow, oc, ic, kh, kw, pad, d):
    ih, iw = (out_size(o, (k - 1) * e + 1, 1, pad) for o, k, e in ((oh, kh, d[0]), (ow, kw, d[1])))
    return Case(f"conv2d_transpose_dilated_{i}_{ih}x{iw}to{oh}x{ow}_k{kh}x{kw}_d{d[0]}x{d[1]}_{pad}",
                "conv2d_transpose", [((N, ih, iw, ic), "f32", normal), ((kh, kw, oc, ic), "f32", normal)],
                dict(output_shape=(-1, oh, ow, oc), strides=(1, 1), padding=pad, dilations=d),
                ref=lambda x, f: ref.conv2d_transpose(x, f, (x.shape[0], oh, ow, oc), 1, pad, d),
                vjp=lambda x, f, dy: ref.conv2d_transpose_vjp(x, f, dy, (x.shape[0], oh, ow, oc), 1, pad, d))


def dilated_conv_cases():
    """conv2d with dilations > 1 (its vjp runs the dilated conv2d_transpose and filter-gradient
    kernels), and conv2d_transpose with them: hand-picked SAME/VALID spans, 16+ channels, a
    layer large enough for threads, then random shapes."""
    fixed = [(7, 7, 2, 3, 3, 3, "SAME", (2, 2)), (9, 8, 3, 4, 3, 2, "VALID", (2, 3)),
             (6, 6, 17, 5, 3, 3, "SAME", (3, 1)), (8, 8, 4, 18, 2, 2, "SAME", (1, 2)),
             (5, 9, 1, 2, 1, 3, "VALID", (1, 4)), (16, 16, 32, 32, 3, 3, "SAME", (2, 2))]
    cases = [_dilated_conv_case(i, *f) for i, f in enumerate(fixed)]
    for i in range(len(fixed), 14):
        h, w = (int(v) for v in _rng.integers(3, 11, 2))
        c, oc = int(_rng.integers(1, 6)), int(_rng.integers(1, 7))
        kh, kw = (int(v) for v in _rng.integers(1, 5, 2))
        d = tuple(int(v) for v in _rng.integers(1, 4, 2))
        d = d if d != (1, 1) else (2, 1)
        pad = ("SAME", "VALID")[i % 2]
        if pad == "VALID":
            kh, kw = min(kh, (h - 1) // d[0] + 1), min(kw, (w - 1) // d[1] + 1)
        cases.append(_dilated_conv_case(i, h, w, c, oc, kh, kw, pad, d))
    for i, f in enumerate([(7, 7, 2, 3, 3, 3, "SAME", (2, 2)), (9, 8, 3, 2, 2, 3, "VALID", (3, 2)),
                           (6, 7, 20, 4, 3, 2, "SAME", (1, 3))]):
        cases.append(_dilated_transpose_case(i, *f))
    return cases


CASES = depthwise_cases() + resize_cases() + dilated_conv_cases() + batch_normalization_cases()


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


DILATED_LAYER = """model dilated_layer
input x: f32[N, 12, 12, 8]
y = conv(x, 24, 3, dilation_rate=2, activation=relu, bias_init=constant(0.1))
output y
"""


def test_a_dilated_conv_layer_fuses_its_bias_and_relu_and_matches_numpy(out_root):
    """The conv layer with dilation_rate: bias and relu fused into the dilated GEMM's epilogue;
    forward and gradients against the reference, and the same bits on one and two threads
    (each output element sums its taps in one order)."""
    from cnnc import pipeline
    mod = pipeline.compile(DILATED_LAYER, out_root / "dilated_layer")
    src = next((out_root / "dilated_layer").glob("*/model.c")).read_text()
    assert "cg_pack_a_dil_windows" in src and "_epilogue" in src
    model = mod.Model(seed=0)
    rng = np.random.default_rng(5)
    x = rng.standard_normal((16, 12, 12, 8)).astype(np.float32)
    w, b = model.params["conv_1/weight"], model.params["conv_1/bias"]
    pre = ref.conv2d(x, w, 1, "SAME", 2) + b
    np.testing.assert_allclose(model.forward(x=x)["y"], np.maximum(pre, 0), rtol=1e-4, atol=1e-4)
    dy = rng.standard_normal(pre.shape).astype(np.float32)
    runs = []
    for threads in (1, 2):
        model.threads = threads
        runs.append(model.backward({"x": x}, {"y": dy}))
    dpre = dy * (pre > 0)
    dx, dw = ref.conv2d_vjp(x, w, dpre, 1, "SAME", 2)
    np.testing.assert_allclose(runs[0]["x"], dx, rtol=1e-4, atol=1e-3)
    np.testing.assert_allclose(runs[0]["conv_1/weight"], dw, rtol=1e-4, atol=1e-3)
    np.testing.assert_allclose(runs[0]["conv_1/bias"], dpre.sum(axis=(0, 1, 2)), rtol=1e-4, atol=1e-3)
    for k in runs[0]:
        np.testing.assert_array_equal(runs[1][k], runs[0][k], err_msg=f"{k}: 1 and 2 threads differ")
