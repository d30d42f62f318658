"""Tests of tests/reference/numpy_ops.py, the oracle the C kernels are compared against.

Four kinds of evidence, each independent of the reference's own code path:
  1. the worked TensorFlow examples in ../shared/vectors/conv_examples.json;
  2. every vjp against central finite differences;
  3. conv2d against a separately written im2col + matmul, and the backprop ops as the
     exact adjoints of conv2d;
  4. hand-worked pooling cases (SAME divisor, tie routing) and brute-force window
     enumeration for the padding rules.

Tolerances for finite differences: everything runs in float64 with eps = 1e-6. The
central difference has truncation error ~ eps^2 * |third derivative| ~ 1e-12 for the
smooth ops (sigmoid, tanh, softmax, div, losses) and none at all for the piecewise-linear
ones (conv, pools, relu, min/max, reshapes) as long as no kink lies within eps; rounding
error is ~ 1e-16 * |L| / eps ~ 1e-10 * |L| for the probed scalar L = sum(f * dout),
where |L| stays below ~1e2 for these small shapes, i.e. ~1e-8 absolute. So rtol = 1e-6 with
atol = 1e-7 leaves ~10x headroom over rounding and still catches any real formula error
(those are O(1) relative). Kinks are kept > 1e-2 away from every input by construction:
max_pool / reduce_max / argmax-like inputs are a shuffled arange * 0.1 (all distinct,
gaps 0.1), relu inputs have |x| >= 0.1, minimum/maximum operands differ by >= 0.1.
"""

from __future__ import annotations

import itertools
import json
import math
import re
from pathlib import Path

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from tests.reference import numpy_ops as ref
from tests.reference.finite_diff import check_vjp, numeric_vjp

RTOL, ATOL, EPS = 1e-6, 1e-7, 1e-6

VECTORS = Path(__file__).resolve().parents[3] / "shared" / "vectors"
CONV_EXAMPLES = VECTORS / "conv_examples.json"


def check(f, vjp, inputs, seed=0):
    return check_vjp(f, vjp, inputs, np.random.default_rng(seed), rtol=RTOL, atol=ATOL, eps=EPS)


def distinct(shape, rng):
    """Values all distinct, 0.1 apart, centred on 0: no ties for max/argmax within eps."""
    n = math.prod(shape)
    return (rng.permutation(n).reshape(shape) - n / 2) * 0.1


def away_from_zero(shape, rng):
    """Values with |x| in [0.1, 1]: no relu kink within eps."""
    return rng.choice([-1.0, 1.0], size=shape) * rng.uniform(0.1, 1.0, size=shape)


# =========================================================================== 1. shared TF vectors


def _load_cases():
    if not CONV_EXAMPLES.exists():
        return [pytest.param(None, marks=pytest.mark.skip(reason=f"shared vectors not found at {CONV_EXAMPLES}"))]
    cases = json.loads(CONV_EXAMPLES.read_text())["cases"]
    return [pytest.param(c, id=c["name"]) for c in cases]


def _example_input(value):
    """The case's input array; a few inputs are described in words instead of listed."""
    if not isinstance(value, str):
        return np.array(value, dtype=np.float64)
    m = re.fullmatch(r"(\d+)x(\d+)x1, value at row r, column c is c \+ r/10", value)
    assert m, f"unrecognised input description: {value!r}"
    h, w = int(m[1]), int(m[2])
    r, c = np.meshgrid(np.arange(h), np.arange(w), indexing="ij")
    return (c + r / 10.0).reshape(1, h, w, 1)


@pytest.mark.parametrize("case", _load_cases())
def test_shared_conv_example(case):
    op, strides, padding = case["op"], case["strides"], case["padding"]
    expected = np.array(case["expected"], dtype=np.float64)
    if op == "conv2d":
        got = ref.conv2d(_example_input(case["input"]), np.array(case["filters"]), strides, padding)
    elif op == "conv2d_backprop_input":
        got = ref.conv2d_backprop_input(case["input_sizes"], np.array(case["filters"]),
                                        np.array(case["out_backprop"]), strides, padding)
        # conv2d_transpose is the same op with output_shape = input_sizes.
        again = ref.conv2d_transpose(np.array(case["out_backprop"]), np.array(case["filters"]),
                                     case["input_sizes"], strides, padding)
        np.testing.assert_array_equal(again, got)
    elif op == "conv2d_backprop_filter":
        got = ref.conv2d_backprop_filter(_example_input(case["input"]), case["filter_sizes"],
                                         np.array(case["out_backprop"]), strides, padding)
    else:
        pytest.fail(f"unknown op {op!r} in {CONV_EXAMPLES.name}")
    assert got.shape == expected.shape
    # Integer-valued cases are exact; the derived 0.1-step case differs only by float64 rounding.
    np.testing.assert_allclose(got, expected, rtol=0, atol=1e-12)


def test_shared_conv_example_float32_inputs_accepted():
    x = np.arange(9, dtype=np.float32).reshape(1, 3, 3, 1)
    f = np.ones((2, 2, 1, 1), dtype=np.float32)
    out = ref.conv2d(x, f, [1, 1, 1, 1], "VALID")
    assert out.dtype == np.float64
    np.testing.assert_array_equal(out[0, :, :, 0], [[8, 12], [20, 24]])


# =========================================================================== conv configurations

STRIDES = [(1, 1), (2, 2), (3, 3), (1, 2), (3, 2), (2, 3)]
KERNELS = [(2, 3), (3, 2), (1, 1), (4, 4), (3, 3), (2, 2), (1, 4), (5, 2)]  # odd and even


def _conv_configs():
    """(n, h, w, cin, cout, fh, fw, strides, padding): every stride/padding pairing, kernels odd/even."""
    rng = np.random.default_rng(20240601)
    configs = []
    for p, padding in enumerate(("SAME", "VALID")):
        for k, strides in enumerate(STRIDES):
            fh, fw = KERNELS[(k + 3 * p) % len(KERNELS)]
            h, w = fh + int(rng.integers(0, 5)), fw + int(rng.integers(0, 5))
            configs.append((2, h, w, 2, 3, fh, fw, strides, padding))
    return configs


CONV_CONFIGS = _conv_configs()


def _cfg_id(c):
    n, h, w, cin, cout, fh, fw, (sh, sw), padding = c
    return f"{padding}-in{h}x{w}-k{fh}x{fw}-s{sh}x{sw}"


def _conv_operands(cfg, seed=0):
    n, h, w, cin, cout, fh, fw, strides, padding = cfg
    rng = np.random.default_rng(seed)
    return rng.standard_normal((n, h, w, cin)), rng.standard_normal((fh, fw, cin, cout)), strides, padding


def test_conv_configs_exercise_asymmetric_same_padding():
    asym = [c for c in CONV_CONFIGS if c[-1] == "SAME"
            and (ref.same_pads(c[1], c[5], c[7][0])[0] != ref.same_pads(c[1], c[5], c[7][0])[1]
                 or ref.same_pads(c[2], c[6], c[7][1])[0] != ref.same_pads(c[2], c[6], c[7][1])[1])]
    assert asym, "no SAME config has before != after padding"
    assert {c[7][0] for c in CONV_CONFIGS} == {1, 2, 3}
    assert {c[5] % 2 for c in CONV_CONFIGS} == {0, 1}


# =========================================================================== 3. conv: alternative formulation, adjoints


def conv2d_im2col(x, f, strides, padding):
    """conv2d written a second way: gather all patches at once, then one matmul."""
    n, h, w, c = x.shape
    fh, fw, _, o = f.shape
    sh, sw = strides
    if padding == "SAME":
        oh, ow = -(-h // sh), -(-w // sw)
        ph, pw = max((oh - 1) * sh + fh - h, 0), max((ow - 1) * sw + fw - w, 0)
    else:
        oh, ow = (h - fh) // sh + 1, (w - fw) // sw + 1
        ph = pw = 0
    xp = np.zeros((n, h + ph, w + pw, c))
    xp[:, ph // 2 : ph // 2 + h, pw // 2 : pw // 2 + w, :] = x
    rows = (np.arange(oh) * sh)[:, None] + np.arange(fh)[None, :]  # [oh, fh]
    cols = (np.arange(ow) * sw)[:, None] + np.arange(fw)[None, :]  # [ow, fw]
    patches = xp[:, rows[:, None, :, None], cols[None, :, None, :], :]  # [n, oh, ow, fh, fw, c]
    return (patches.reshape(n * oh * ow, fh * fw * c) @ f.reshape(fh * fw * c, o)).reshape(n, oh, ow, o)


@pytest.mark.parametrize("cfg", CONV_CONFIGS, ids=_cfg_id)
def test_conv2d_matches_im2col(cfg):
    x, f, strides, padding = _conv_operands(cfg)
    np.testing.assert_allclose(ref.conv2d(x, f, strides, padding), conv2d_im2col(x, f, strides, padding),
                               rtol=1e-12, atol=1e-12)


@pytest.mark.parametrize("cfg", CONV_CONFIGS, ids=_cfg_id)
def test_conv2d_backprops_are_adjoints(cfg):
    x, f, strides, padding = _conv_operands(cfg)
    y = np.random.default_rng(1).standard_normal(ref.conv2d(x, f, strides, padding).shape)
    lhs = np.sum(ref.conv2d(x, f, strides, padding) * y)
    dx = ref.conv2d_backprop_input(x.shape, f, y, strides, padding)
    df = ref.conv2d_backprop_filter(x, f.shape, y, strides, padding)
    assert dx.shape == x.shape and df.shape == f.shape
    assert np.sum(x * dx) == pytest.approx(lhs, rel=1e-12, abs=1e-12)
    assert np.sum(f * df) == pytest.approx(lhs, rel=1e-12, abs=1e-12)


@pytest.mark.parametrize("cfg", CONV_CONFIGS, ids=_cfg_id)
def test_conv2d_transpose_is_backprop_input(cfg):
    x, f, strides, padding = _conv_operands(cfg)
    y = ref.conv2d(x, f, strides, padding)
    ft = f  # [fh, fw, cin, cout] read as conv2d_transpose's [fh, fw, out, in]
    np.testing.assert_array_equal(ref.conv2d_transpose(y, ft, x.shape, strides, padding),
                                  ref.conv2d_backprop_input(x.shape, f, y, strides, padding))


def test_conv2d_transpose_rejects_inconsistent_output_shape():
    x = np.zeros((1, 3, 3, 2))
    f = np.zeros((3, 3, 4, 2))
    ref.conv2d_transpose(x, f, (1, 6, 6, 4), (2, 2), "SAME")  # ceil(6/2) = 3: fine
    with pytest.raises(ValueError, match="conv2d_transpose"):
        ref.conv2d_transpose(x, f, (1, 8, 8, 4), (2, 2), "SAME")


# =========================================================================== 2. vjps vs finite differences: conv, pools


@pytest.mark.parametrize("cfg", CONV_CONFIGS, ids=_cfg_id)
def test_conv2d_vjp(cfg):
    x, f, strides, padding = _conv_operands(cfg)
    check(lambda x, f: ref.conv2d(x, f, strides, padding),
          lambda x, f, d: ref.conv2d_vjp(x, f, d, strides, padding), [x, f])


@pytest.mark.parametrize("cfg", CONV_CONFIGS, ids=_cfg_id)
def test_conv2d_transpose_vjp(cfg):
    big, f, strides, padding = _conv_operands(cfg)  # big: the transpose's output shape
    x = np.random.default_rng(2).standard_normal(ref.conv2d(big, f, strides, padding).shape)
    shape = big.shape
    check(lambda x, f: ref.conv2d_transpose(x, f, shape, strides, padding),
          lambda x, f, d: ref.conv2d_transpose_vjp(x, f, d, shape, strides, padding), [x, f])


def _pool_operand(cfg, seed=0):
    n, h, w, cin, _, kh, kw, strides, padding = cfg
    return distinct((n, h, w, cin), np.random.default_rng(seed)), (kh, kw), strides, padding


@pytest.mark.parametrize("cfg", CONV_CONFIGS, ids=_cfg_id)
def test_max_pool_vjp(cfg):
    x, ksize, strides, padding = _pool_operand(cfg)
    check(lambda x: ref.max_pool(x, ksize, strides, padding),
          lambda x, d: ref.max_pool_vjp(x, d, ksize, strides, padding), [x])


@pytest.mark.parametrize("cfg", CONV_CONFIGS, ids=_cfg_id)
def test_avg_pool_vjp(cfg):
    x, ksize, strides, padding = _pool_operand(cfg)
    check(lambda x: ref.avg_pool(x, ksize, strides, padding),
          lambda x, d: ref.avg_pool_vjp(x, d, ksize, strides, padding), [x])


# =========================================================================== 4. pooling by hand


def test_avg_pool_same_divides_by_cells_present():
    # 3x3 input 1..9, 2x2 window, stride 1, SAME: pad_total = 1 -> 0 before, 1 after, so the
    # right column's windows hold 2 cells, the bottom row's 2, the corner's 1.
    x = np.arange(1.0, 10.0).reshape(1, 3, 3, 1)
    expected = [[(1 + 2 + 4 + 5) / 4, (2 + 3 + 5 + 6) / 4, (3 + 6) / 2],
                [(4 + 5 + 7 + 8) / 4, (5 + 6 + 8 + 9) / 4, (6 + 9) / 2],
                [(7 + 8) / 2, (8 + 9) / 2, 9 / 1]]
    np.testing.assert_allclose(ref.avg_pool(x, (2, 2), (1, 1), "SAME")[0, :, :, 0], expected, rtol=1e-15)
    # dout = 1 everywhere: each input cell collects 1/count from every window holding it.
    expected_dx = [[1 / 4, 1 / 4 + 1 / 4, 1 / 4 + 1 / 2],
                   [1 / 4 + 1 / 4, 4 / 4, 2 * (1 / 4 + 1 / 2)],
                   [1 / 4 + 1 / 2, 2 * (1 / 4 + 1 / 2), 1 / 4 + 1 / 2 + 1 / 2 + 1]]
    dx = ref.avg_pool_grad(x.shape, np.ones((1, 3, 3, 1)), (2, 2), (1, 1), "SAME")
    np.testing.assert_allclose(dx[0, :, :, 0], expected_dx, rtol=1e-15)


def test_avg_pool_same_padding_before_and_after():
    # 5x5, 3x3 window, stride 1, SAME: pad 1 before and 1 after; corners hold 4 cells, edges 6.
    x = np.ones((1, 5, 5, 1))
    x[0, 0, 0, 0] = 5.0
    out = ref.avg_pool(x, (3, 3), (1, 1), "SAME")[0, :, :, 0]
    assert out[0, 0] == pytest.approx((5 + 1 + 1 + 1) / 4)
    assert out[0, 1] == pytest.approx((5 + 5 * 1) / 6)
    assert out[1, 1] == pytest.approx((5 + 8) / 9)
    assert out[4, 4] == 1.0


def test_max_pool_ties_go_to_first_in_row_major_order():
    x = np.array([[5.0, 5.0, 1.0, 7.0],
                  [5.0, 5.0, 7.0, 3.0]]).reshape(1, 2, 4, 1)
    dx = ref.max_pool_grad(x, np.array([[[[10.0], [20.0]]]]), (2, 2), (2, 2), "VALID")
    np.testing.assert_array_equal(dx[0, :, :, 0], [[10, 0, 0, 20],
                                                   [0, 0, 0, 0]])


def test_max_pool_overlapping_windows_accumulate_and_padding_never_wins():
    x = -np.arange(1.0, 10.0).reshape(1, 3, 3, 1)  # all negative: a zero pad would win if counted
    out = ref.max_pool(x, (2, 2), (1, 1), "SAME")
    np.testing.assert_array_equal(out[0, :, :, 0], [[-1, -2, -3], [-4, -5, -6], [-7, -8, -9]])
    dx = ref.max_pool_grad(x, np.ones_like(out), (2, 2), (1, 1), "SAME")
    # each window's max is its top-left real cell, so every cell gets exactly one unit
    np.testing.assert_array_equal(dx[0, :, :, 0], np.ones((3, 3)))
    x2 = np.zeros((1, 3, 3, 1))
    x2[0, 1, 1, 0] = 1.0  # the centre is the max of all four 2x2 VALID windows
    dx2 = ref.max_pool_grad(x2, np.ones((1, 2, 2, 1)), (2, 2), (1, 1), "VALID")
    assert dx2[0, 1, 1, 0] == 4.0 and dx2.sum() == 4.0


# =========================================================================== padding rules vs brute force


@settings(max_examples=300, deadline=None)
@given(in_size=st.integers(1, 40), k=st.integers(1, 9), stride=st.integers(1, 6))
def test_valid_out_size_counts_windows_that_fit(in_size, k, stride):
    starts = [p for p in range(0, in_size, stride) if p + k <= in_size]
    if not starts:
        with pytest.raises(ValueError):
            ref.out_size(in_size, k, stride, "VALID")
    else:
        assert ref.out_size(in_size, k, stride, "VALID") == len(starts)
        assert ref.pads(in_size, k, stride, "VALID") == (0, 0)


@settings(max_examples=300, deadline=None)
@given(in_size=st.integers(1, 40), k=st.integers(1, 9), stride=st.integers(1, 6))
def test_same_pads_by_enumeration(in_size, k, stride):
    # SAME: one output per stride step starting inside the input; the smallest total
    # padding that lets every window fit; the odd cell goes after (bottom/right).
    starts = list(range(0, in_size, stride))
    assert ref.out_size(in_size, k, stride, "SAME") == len(starts)
    total = next(t for t in range(0, k + 1) if starts[-1] + k <= in_size + t)
    before, after = ref.same_pads(in_size, k, stride)
    assert (before, after) == (total // 2, total - total // 2)
    assert before <= after <= before + 1
    for p in starts:  # every window, shifted by the leading pad, still touches a real cell
        lo, hi = p - before, p - before + k
        assert -before <= lo and hi <= in_size + after
        assert max(lo, 0) < min(hi, in_size)


@settings(max_examples=40, deadline=None)
@given(h=st.integers(1, 7), w=st.integers(1, 7), kh=st.integers(1, 4), kw=st.integers(1, 4),
       sh=st.integers(1, 3), sw=st.integers(1, 3), padding=st.sampled_from(["SAME", "VALID"]))
def test_pool_shapes_and_divisors(h, w, kh, kw, sh, sw, padding):
    if padding == "VALID" and (kh > h or kw > w):
        with pytest.raises(ValueError):
            ref.avg_pool(np.ones((1, h, w, 1)), (kh, kw), (sh, sw), padding)
        return
    shape = (1, ref.out_size(h, kh, sh, padding), ref.out_size(w, kw, sw, padding), 2)
    ones = np.ones((1, h, w, 2))
    assert ref.conv2d(ones, np.ones((kh, kw, 2, 2)), (sh, sw), padding).shape == shape
    np.testing.assert_allclose(ref.avg_pool(ones, (kh, kw), (sh, sw), padding), np.ones(shape), rtol=1e-15)
    np.testing.assert_array_equal(ref.max_pool(-3 * ones, (kh, kw), (sh, sw), padding), np.full(shape, -3.0))
    # avg_pool_grad conserves the total gradient: each window hands out exactly its dout
    d = np.random.default_rng(h * 100 + w).standard_normal(shape)
    assert ref.avg_pool_grad(ones.shape, d, (kh, kw), (sh, sw), padding).sum() == pytest.approx(d.sum())


def test_strides_and_ksize_forms_agree():
    x = np.random.default_rng(0).standard_normal((1, 5, 5, 1))
    f = np.ones((2, 2, 1, 1))
    a = ref.conv2d(x, f, [1, 2, 2, 1], "SAME")
    np.testing.assert_array_equal(a, ref.conv2d(x, f, (2, 2), "SAME"))
    np.testing.assert_array_equal(a, ref.conv2d(x, f, 2, "SAME"))
    np.testing.assert_array_equal(ref.max_pool(x, [1, 2, 2, 1], [1, 2, 2, 1], "SAME"),
                                  ref.max_pool(x, 2, 2, "SAME"))
    with pytest.raises(ValueError):
        ref.conv2d(x, f, [2, 2, 2, 1], "SAME")
    with pytest.raises(ValueError):
        ref.conv2d(x, f, (1, 1), "same")


# =========================================================================== 2. vjps vs finite differences: the rest

RNG = np.random.default_rng


def test_activation_vjps():
    rng = RNG(3)
    x = away_from_zero((3, 4), rng)
    check(ref.relu, ref.relu_vjp, [x])
    x = 3 * rng.standard_normal((3, 4))
    check(ref.sigmoid, ref.sigmoid_vjp, [x])
    check(ref.tanh, ref.tanh_vjp, [x])
    for axis in (-1, 0, 1):
        check(lambda x: ref.softmax(x, axis), lambda x, d: ref.softmax_vjp(x, d, axis), [x])


BROADCAST_PAIRS = [((3, 4), (3, 4)), ((2, 3, 4), (4,)), ((2, 1, 4), (3, 1)), ((1,), (2, 3)), ((), (2, 2)),
                   ((2, 3), ())]


@pytest.mark.parametrize("sx,sy", BROADCAST_PAIRS)
def test_binary_vjps(sx, sy):
    rng = RNG(4)
    x, y = rng.standard_normal(sx), rng.standard_normal(sy)
    ypos = rng.uniform(0.5, 2.0, sy) * rng.choice([-1, 1], sy)  # keep away from the pole of 1/y
    check(ref.add, ref.add_vjp, [x, y])
    check(ref.sub, ref.sub_vjp, [x, y])
    check(ref.mul, ref.mul_vjp, [x, y])
    check(ref.div, ref.div_vjp, [x, ypos])
    # min/max: x integers, y integers + 0.3 or + 0.7, so no tie within 0.3 >> eps
    x2 = np.round(x * 3)
    y2 = rng.integers(-4, 4, sy) + np.where(rng.random(sy) < 0.5, 0.3, 0.7)  # never within 0.3 of an integer
    check(ref.minimum, ref.minimum_vjp, [x2, y2])
    check(ref.maximum, ref.maximum_vjp, [x2, y2])


def test_dense_vjps():
    rng = RNG(5)
    v, b = rng.standard_normal((2, 3, 4)), rng.standard_normal(4)
    check(ref.bias_add, ref.bias_add_vjp, [v, b])
    a = rng.standard_normal((3, 4))
    for ta, tb in itertools.product([False, True], repeat=2):
        aa = a.T if ta else a
        bb = rng.standard_normal((5, 4) if tb else (4, 5))
        out = ref.matmul(aa, bb, ta, tb)
        np.testing.assert_allclose(out, (aa.T if ta else aa) @ (bb.T if tb else bb))
        check(lambda p, q: ref.matmul(p, q, ta, tb), lambda p, q, d: ref.matmul_vjp(p, q, d, ta, tb), [aa, bb])
    x = rng.standard_normal((4, 5))
    mask = (rng.random((4, 5)) > 0.3).astype(np.float64)
    check(lambda x: ref.dropout_apply(x, mask, 0.3), lambda x, d: ref.dropout_apply_vjp(x, mask, d, 0.3), [x])
    check(ref.l2_loss, ref.l2_loss_vjp, [x])


def test_shape_op_vjps():
    rng = RNG(6)
    x = rng.standard_normal((2, 3, 4))
    check(lambda x: ref.reshape(x, [-1, 4]), lambda x, d: ref.reshape_vjp(x, d, [-1, 4]), [x])
    for perm in [(2, 0, 1), (1, 2, 0), None]:
        check(lambda x: ref.transpose(x, perm), lambda x, d: ref.transpose_vjp(x, d, perm), [x])
    for axis in (0, 2, -1, 3):
        check(lambda x: ref.expand_dims(x, axis), lambda x, d: ref.expand_dims_vjp(x, d, axis), [x])
    y = rng.standard_normal((2, 1, 3, 1))
    for axis in (None, 1, [1, 3], -1):
        check(lambda y: ref.squeeze(y, axis), lambda y, d: ref.squeeze_vjp(y, d, axis), [y])


@pytest.mark.parametrize("axis", [None, 0, 1, -1, [0, 2], [2, 0, 1]])
@pytest.mark.parametrize("keepdims", [False, True])
def test_reduction_vjps(axis, keepdims):
    x = distinct((2, 3, 4), RNG(7))
    for op in ("reduce_sum", "reduce_mean", "reduce_max"):
        fwd, vjp = getattr(ref, op), getattr(ref, op + "_vjp")
        check(lambda x: fwd(x, axis, keepdims), lambda x, d: vjp(x, d, axis, keepdims), [x])


def test_loss_vjps():
    rng = RNG(8)
    logits = 2 * rng.standard_normal((4, 5))
    labels = rng.random((4, 5))
    labels /= labels.sum(axis=1, keepdims=True)
    check(ref.softmax_cross_entropy_with_logits, ref.softmax_cross_entropy_with_logits_vjp, [labels, logits])
    ids = np.array([0, 4, 2, 2], dtype=np.int32)
    check(ref.sparse_softmax_cross_entropy_with_logits,
          lambda lab, lg, d: (None, ref.sparse_softmax_cross_entropy_with_logits_vjp(lab, lg, d)), [ids, logits])


def test_embedding_lookup_vjp():
    rng = RNG(9)
    table = rng.standard_normal((5, 3))
    ids = np.array([[1, 3, 1], [0, 1, 4]], dtype=np.int32)  # id 1 thrice: its rows accumulate
    check(lambda t: ref.embedding_lookup(t, ids), lambda t, d: ref.embedding_lookup_vjp(t, ids, d), [table])
    d = np.ones((2, 3, 3))
    np.testing.assert_array_equal(ref.embedding_lookup_vjp(table, ids, d)[:, 0], [1, 3, 0, 1, 1])


# =========================================================================== TF-specific semantics


def test_relu_gradient_at_zero_is_zero():
    np.testing.assert_array_equal(ref.relu_vjp(np.array([-1.0, 0.0, 2.0]), np.ones(3)), [0, 0, 1])


def test_minimum_maximum_ties_go_to_x():
    x, y = np.array([1.0, 2.0, 3.0]), np.array([1.0, 1.0, 4.0])
    dx, dy = ref.minimum_vjp(x, y, np.ones(3))
    np.testing.assert_array_equal(dx, [1, 0, 1])
    np.testing.assert_array_equal(dy, [0, 1, 0])
    dx, dy = ref.maximum_vjp(x, y, np.ones(3))
    np.testing.assert_array_equal(dx, [1, 1, 0])
    np.testing.assert_array_equal(dy, [0, 0, 1])
    dx, dy = ref.maximum_vjp(np.array([[1.0], [5.0]]), np.array([1.0, 2.0, 7.0]), np.ones((2, 3)))
    # grid x=1 vs y=(1,2,7): x wins the tie only; x=5 vs (1,2,7): x wins twice
    np.testing.assert_array_equal(dx, [[1], [2]])
    np.testing.assert_array_equal(dy, [0, 1, 2])


def test_reduce_max_splits_ties_equally():
    x = np.array([[1.0, 3.0, 3.0], [2.0, 2.0, 2.0]])
    np.testing.assert_allclose(ref.reduce_max_vjp(x, np.array([6.0, 3.0]), axis=1),
                               [[0, 3, 3], [1, 1, 1]])
    np.testing.assert_allclose(ref.reduce_max_vjp(x, 4.0), [[0, 2, 2], [0, 0, 0]])


def test_softmax_xent_gradient_is_softmax_minus_labels_for_distributions():
    rng = RNG(10)
    logits = rng.standard_normal((3, 4))
    labels = ref.one_hot([0, 3, 1], 4)
    _, dlogits = ref.softmax_cross_entropy_with_logits_vjp(labels, logits, np.ones(3))
    np.testing.assert_allclose(dlogits, ref.softmax(logits) - labels, atol=1e-15)
    np.testing.assert_allclose(ref.sparse_softmax_cross_entropy_with_logits(np.array([0, 3, 1]), logits),
                               ref.softmax_cross_entropy_with_logits(labels, logits), rtol=1e-14)
    big = np.array([[1000.0, 0.0], [-1000.0, 0.0]])  # stable: no overflow, no nan
    np.testing.assert_allclose(ref.softmax_cross_entropy_with_logits([[0.0, 1.0], [1.0, 0.0]], big), [1000, 1000])
    with pytest.raises(IndexError):
        ref.sparse_softmax_cross_entropy_with_logits(np.array([4, 0, 0]), logits)


def test_small_ops():
    np.testing.assert_array_equal(ref.one_hot(np.array([2, 0, -1, 3]), 3),
                                  [[0, 0, 1], [1, 0, 0], [0, 0, 0], [0, 0, 0]])
    assert ref.one_hot(np.array([[1]]), 2).shape == (1, 1, 2)
    np.testing.assert_array_equal(ref.argmax(np.array([[1, 5, 5], [7, 7, 0]]), 1), [1, 0])
    assert ref.argmax(np.array([[1, 5, 5], [7, 7, 0]]), 0).dtype == np.int64
    np.testing.assert_array_equal(ref.equal(np.array([1, 2, 3]), np.array([[1], [2]])),
                                  [[True, False, False], [False, True, False]])
    np.testing.assert_array_equal(ref.cast(np.array([-1.7, -0.2, 1.7]), "i32"), [-1, 0, 1])
    assert ref.cast(np.array([True, False]), "f32").tolist() == [1.0, 0.0]
    assert ref.cast(np.array([0.1]), "f32")[0] == np.float64(np.float32(0.1))
    assert ref.l2_loss(np.array([[1.0, 2.0], [3.0, 4.0]])) == 15.0
    np.testing.assert_array_equal(ref.dropout_apply(np.ones(4), np.array([1, 0, 1, 0]), 0.5), [2, 0, 2, 0])
    np.testing.assert_array_equal(ref.bias_add(np.zeros((2, 3)), np.array([1.0, 2.0, 3.0])), [[1, 2, 3]] * 2)
    assert ref.reshape(np.zeros(24), [2, -1, 4]).shape == (2, 3, 4)
    with pytest.raises(ValueError):
        ref.reshape(np.zeros(24), [-1, 5])
    with pytest.raises(ValueError):
        ref.squeeze(np.zeros((2, 1)), 0)
    with pytest.raises(IndexError):
        ref.embedding_lookup(np.zeros((3, 2)), np.array([3]))
    assert ref.sigmoid(np.array([-1000.0]))[0] == 0.0 and ref.sigmoid(np.array([1000.0]))[0] == 1.0
    assert ref.reduce_mean(np.arange(6.0).reshape(2, 3), axis=[0, 1], keepdims=True).shape == (1, 1)
    assert ref.reduce_sum(np.ones((2, 3, 4)), axis=-2).shape == (2, 4)


@settings(max_examples=60, deadline=None)
@given(st.lists(st.integers(1, 3), min_size=0, max_size=4), st.data())
def test_unbroadcast_sums_over_broadcast_copies(shape, data):
    # an operand shape obtained by dropping leading axes and setting some axes to 1
    drop = data.draw(st.integers(0, len(shape)))
    small = [1 if data.draw(st.booleans()) else d for d in shape[drop:]]
    full = tuple(shape)
    copies = math.prod(full) // max(math.prod(small), 1)
    g = ref.unbroadcast(np.ones(full), small)
    assert g.shape == tuple(small)
    np.testing.assert_array_equal(g, np.full(small, float(copies)))


def test_numeric_vjp_and_check_vjp_report_the_worst_element():
    f = lambda x: x**2
    g = numeric_vjp(f, [np.array([1.0, -2.0])], np.array([1.0, 1.0]), eps=1e-3)[0]
    np.testing.assert_allclose(g, [2.0, -4.0], rtol=1e-9)
    wrong = lambda x, d: d * 2 * x + np.array([0.0, 1.0])
    with pytest.raises(AssertionError, match=r"index \(1,\)"):
        check_vjp(f, wrong, [np.array([1.0, -2.0])], RNG(0))
