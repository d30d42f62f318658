"""Convolution and pooling kernels, forward and backward, against the NumPy reference and
the worked TF examples in shared/vectors/conv_examples.json."""
from __future__ import annotations

import json

import numpy as np
import pytest

from cnnc.compiler.ops.window import out_size
from tests.reference import numpy_ops as ref

from .conftest import N, VECTORS, Case, check_case, normal, run_zoo

_rng = np.random.default_rng(20240601)


def _conv_case(i, h, w, c, oc, kh, kw, sh, sw, pad):
    s = (sh, sw)
    return Case(f"conv2d_{i}_{h}x{w}x{c}to{oc}_k{kh}x{kw}_s{sh}x{sw}_{pad}", "conv2d",
                [((N, h, w, c), "f32", normal), ((kh, kw, c, oc), "f32", normal)],
                dict(strides=s, padding=pad),
                ref=lambda x, f: ref.conv2d(x, f, s, pad),
                vjp=lambda x, f, d: ref.conv2d_vjp(x, f, d, s, pad))


def conv_cases():
    # hand-picked: TF's asymmetric SAME padding (even kernels, stride 2 and 3), 1x1, no padding needed
    fixed = [(7, 7, 2, 3, 2, 2, 2, 2, "SAME"), (6, 6, 1, 2, 3, 3, 3, 3, "SAME"), (5, 8, 3, 4, 4, 4, 2, 3, "SAME"),
             (5, 5, 2, 2, 1, 1, 1, 1, "VALID"), (8, 6, 2, 3, 3, 2, 3, 1, "VALID"), (4, 4, 3, 5, 4, 4, 1, 1, "VALID"),
             # 16+ input channels: the input gradient takes the gather-GEMM path, not col2im
             (6, 5, 17, 5, 3, 3, 1, 1, "SAME"), (7, 7, 20, 3, 2, 3, 2, 1, "SAME"), (6, 6, 16, 4, 3, 3, 2, 2, "VALID")]
    cases = [_conv_case(i, *f) for i, f in enumerate(fixed)]
    for i in range(len(fixed), 16):
        h, w = (int(v) for v in _rng.integers(3, 10, 2))
        c, oc = int(_rng.integers(1, 4)), int(_rng.integers(1, 6))
        kh, kw = (int(v) for v in _rng.integers(1, 6, 2))
        sh, sw = (int(v) for v in _rng.integers(1, 4, 2))
        pad = ("SAME", "VALID")[i % 2]
        if pad == "VALID":
            kh, kw = min(kh, h), min(kw, w)
        cases.append(_conv_case(i, h, w, c, oc, kh, kw, sh, sw, pad))
    return cases


def transpose_cases():
    cases = []
    for i, (oh, ow, oc, ic, kh, kw, sh, sw, pad) in enumerate(
            [(7, 7, 2, 3, 3, 3, 2, 2, "SAME"), (8, 8, 1, 2, 2, 2, 2, 2, "SAME"), (9, 7, 2, 2, 3, 2, 3, 2, "VALID"),
             (5, 6, 3, 1, 4, 3, 1, 2, "SAME"), (6, 6, 2, 2, 3, 3, 1, 1, "VALID"),
             (6, 6, 18, 3, 3, 3, 2, 2, "SAME")]):              # 18 output channels: gather-GEMM path
        ih, iw = out_size(oh, kh, sh, pad), out_size(ow, kw, sw, pad)
        s = (sh, sw)

        def fwd(x, f, oh=oh, ow=ow, oc=oc, s=s, pad=pad):
            return ref.conv2d_transpose(x, f, (x.shape[0], oh, ow, oc), s, pad)

        def vjp(x, f, d, oh=oh, ow=ow, oc=oc, s=s, pad=pad):
            return ref.conv2d_transpose_vjp(x, f, d, (x.shape[0], oh, ow, oc), s, pad)
        cases.append(Case(f"conv2d_transpose_{i}_{ih}x{iw}to{oh}x{ow}_k{kh}x{kw}_s{sh}x{sw}_{pad}",
                          "conv2d_transpose", [((N, ih, iw, ic), "f32", normal), ((kh, kw, oc, ic), "f32", normal)],
                          dict(output_shape=(-1, oh, ow, oc), strides=s, padding=pad), ref=fwd, vjp=vjp))
    return cases


def filter_grad_cases():
    cases = []
    for i, (h, w, c, oc, kh, kw, sh, sw, pad) in enumerate(
            [(7, 7, 2, 3, 2, 2, 2, 2, "SAME"), (6, 5, 1, 2, 3, 3, 3, 1, "VALID"), (5, 5, 2, 2, 4, 4, 1, 1, "SAME")]):
        oh, ow = out_size(h, kh, sh, pad), out_size(w, kw, sw, pad)
        s, fshape = (sh, sw), (kh, kw, c, oc)
        cases.append(Case(f"conv2d_backprop_filter_{i}_{h}x{w}_k{kh}x{kw}_s{sh}x{sw}_{pad}", "conv2d_backprop_filter",
                          [((N, h, w, c), "f32", normal), ((N, oh, ow, oc), "f32", normal)],
                          dict(filter_shape=fshape, strides=s, padding=pad),
                          ref=lambda x, d, fshape=fshape, s=s, pad=pad: ref.conv2d_backprop_filter(x, fshape, d, s, pad)))
    return cases


def pool_cases():
    cases = []
    for i in range(14):
        h, w, c = int(_rng.integers(2, 9)), int(_rng.integers(2, 9)), int(_rng.integers(1, 4))
        kh, kw = int(_rng.integers(1, 4)), int(_rng.integers(1, 4))
        sh, sw = int(_rng.integers(1, 4)), int(_rng.integers(1, 4))
        pad = ("SAME", "VALID")[(i // 2) % 2]
        if pad == "VALID":
            kh, kw = min(kh, h), min(kw, w)
        op = ("max_pool", "avg_pool")[i % 2]
        k, s = (kh, kw), (sh, sw)
        fwd, vjp = getattr(ref, op), getattr(ref, op + "_vjp")
        cases.append(Case(f"{op}_{i}_{h}x{w}x{c}_k{kh}x{kw}_s{sh}x{sw}_{pad}", op, [((N, h, w, c), "f32", normal)],
                          dict(ksize=k, strides=s, padding=pad),
                          ref=lambda x, fwd=fwd, k=k, s=s, pad=pad: fwd(x, k, s, pad),
                          vjp=lambda x, d, vjp=vjp, k=k, s=s, pad=pad: vjp(x, d, k, s, pad)))
    # Ties (relu outputs are often 0): the gradient goes to the first maximum in row-major
    # order, both where the windows tile the image (each cell written once) and where they
    # overlap or are clipped by SAME padding (accumulated).
    tied = lambda rng, shape: np.maximum(rng.integers(-2, 3, shape), 0).astype(np.float32)
    for h, w, c, k, s, pad in [(6, 8, 5, 2, 2, "VALID"), (4, 6, 33, 2, 2, "VALID"), (7, 7, 3, 3, 2, "SAME"),
                               (5, 7, 2, 2, 2, "SAME"), (6, 6, 4, 3, 3, "VALID")]:
        k2, s2 = (k, k), (s, s)
        cases.append(Case(f"max_pool_ties_{h}x{w}x{c}_k{k}_s{s}_{pad}", "max_pool", [((N, h, w, c), "f32", tied)],
                          dict(ksize=k2, strides=s2, padding=pad),
                          ref=lambda x, k=k2, s=s2, pad=pad: ref.max_pool(x, k, s, pad),
                          vjp=lambda x, d, k=k2, s=s2, pad=pad: ref.max_pool_vjp(x, d, k, s, pad)))
    return cases


CASES = conv_cases() + transpose_cases() + filter_grad_cases() + pool_cases()


@pytest.fixture(scope="module")
def zoo(out_root):
    return run_zoo("conv_zoo", CASES, out_root, n=2)


@pytest.mark.parametrize("case", CASES, ids=lambda c: c.id)
def test_conv_and_pool_kernels(zoo, case):
    check_case(zoo, case)


# --------------------------------------------------------------------------- worked examples


def _vector_cases():
    spec = json.loads((VECTORS / "conv_examples.json").read_text())
    cases = []
    for ex in spec["cases"]:
        fixed = lambda a: (lambda rng, shape, a=np.asarray(a, np.float32): a)
        s = tuple(ex["strides"][1:3])
        expected = np.asarray(ex["expected"], np.float64)
        if ex["op"] == "conv2d":
            x = (np.asarray(ex["input"], np.float32) if not isinstance(ex["input"], str) else
                 np.array([[[[c + r / 10] for c in range(6)] for r in range(6)]], np.float32))
            f = np.asarray(ex["filters"], np.float32)
            cases.append(Case(ex["name"], "conv2d", [(x.shape, "f32", fixed(x)), (f.shape, "f32", fixed(f))],
                              dict(strides=s, padding=ex["padding"]), ref=lambda *a, e=expected: e))
        elif ex["op"] == "conv2d_backprop_input":
            d, f = np.asarray(ex["out_backprop"], np.float32), np.asarray(ex["filters"], np.float32)
            cases.append(Case(ex["name"], "conv2d_transpose", [(d.shape, "f32", fixed(d)), (f.shape, "f32", fixed(f))],
                              dict(output_shape=tuple(ex["input_sizes"]), strides=s, padding=ex["padding"]),
                              ref=lambda *a, e=expected: e))
        else:
            x, d = np.asarray(ex["input"], np.float32), np.asarray(ex["out_backprop"], np.float32)
            cases.append(Case(ex["name"], "conv2d_backprop_filter",
                              [(x.shape, "f32", fixed(x)), (d.shape, "f32", fixed(d))],
                              dict(filter_shape=tuple(ex["filter_sizes"]), strides=s, padding=ex["padding"]),
                              ref=lambda *a, e=expected: e))
    return cases


VECTOR_CASES = _vector_cases() if (VECTORS / "conv_examples.json").exists() else []


@pytest.fixture(scope="module")
def vector_zoo(out_root):
    return run_zoo("conv_vectors", VECTOR_CASES, out_root, n=1)


@pytest.mark.parametrize("case", VECTOR_CASES, ids=lambda c: c.id)
def test_worked_examples(vector_zoo, case):
    # The given values are small integers and sums of a few products: exact in float32 up to
    # the rounding of decimal inputs like 2.2 (one ulp, ~2e-7).
    np.testing.assert_allclose(vector_zoo.outs[case.id], case.ref(), rtol=1e-6, atol=1e-6)
