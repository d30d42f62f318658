"""The depthwise and resize references against separately built equivalents (a depthwise
conv is conv2d with a block-diagonal filter; a dilated window is a larger window with zero
taps between) and their vjps against finite differences. Tolerances as in
test_reference_ops.py: float64 throughout, so 1e-10 for the rewrites and RTOL/ATOL for
finite differences."""
from __future__ import annotations

import numpy as np
import pytest

from tests.reference import numpy_ops as ref
from tests.reference.finite_diff import numeric_vjp

RTOL, ATOL, EPS = 1e-6, 1e-7, 1e-6


def _as_conv2d_filter(f, dilations):
    """The conv2d filter computing the same thing as depthwise filter f: [fh', fw', c, c*M],
    tap (a, b) of f at (a*dh, b*dw), input c feeding only outputs c*M .. c*M + M - 1."""
    fh, fw, c, m = f.shape
    dh, dw = dilations
    g = np.zeros(((fh - 1) * dh + 1, (fw - 1) * dw + 1, c, c * m))
    for ch in range(c):
        g[::dh, ::dw, ch, ch * m:(ch + 1) * m] = f[:, :, ch, :]
    return g


@pytest.mark.parametrize("h,w,c,m,k,s,pad,d", [
    (7, 6, 3, 2, (3, 3), (2, 2), "SAME", (1, 1)), (6, 6, 2, 1, (2, 3), (1, 2), "VALID", (1, 1)),
    (9, 8, 2, 3, (3, 2), (1, 1), "SAME", (2, 3)), (8, 9, 1, 2, (2, 2), (1, 1), "VALID", (3, 2))])
def test_depthwise_is_conv2d_with_block_diagonal_filter(h, w, c, m, k, s, pad, d):
    rng = np.random.default_rng(0)
    x, f = rng.standard_normal((2, h, w, c)), rng.standard_normal(k + (c, m))
    got = ref.depthwise_conv2d(x, f, s, pad, d)
    np.testing.assert_allclose(got, ref.conv2d(x, _as_conv2d_filter(f, d), s, pad), rtol=1e-10, atol=1e-10)
    dy = rng.standard_normal(got.shape)
    dx, df = ref.depthwise_conv2d_vjp(x, f, dy, s, pad, d)
    nx, nf = numeric_vjp(lambda x_, f_: ref.depthwise_conv2d(x_, f_, s, pad, d), [x, f], dy, eps=EPS)
    np.testing.assert_allclose(dx, nx, rtol=RTOL, atol=ATOL)
    np.testing.assert_allclose(df, nf, rtol=RTOL, atol=ATOL)


def test_depthwise_rejects_dilation_with_stride():
    with pytest.raises(ValueError):
        ref.depthwise_conv2d(np.zeros((1, 5, 5, 1)), np.zeros((2, 2, 1, 1)), 2, "SAME", 2)


# --------------------------------------------------------------------------- resize
# Worked values of tf.image.resize on a 2x2 image [[1, 2], [3, 4]] and a row 0..3: upsampled
# bilinear samples at -0.25, 0.25, 0.75, 1.25 (clamped at the edges); nearest at
# floor((o + 0.5) * scale): 2 -> 4 picks 0, 0, 1, 1 and 4 -> 2 picks 1, 3.

def test_resize_worked_examples():
    img = np.array([[1.0, 2.0], [3.0, 4.0]]).reshape(1, 2, 2, 1)
    up = ref.resize(img, (4, 4))[0, :, :, 0]
    np.testing.assert_allclose(up, [[1, 1.25, 1.75, 2], [1.5, 1.75, 2.25, 2.5],
                                    [2.5, 2.75, 3.25, 3.5], [3, 3.25, 3.75, 4]], atol=1e-12)
    np.testing.assert_array_equal(ref.resize(img, (4, 4), "nearest")[0, :, :, 0],
                                  [[1, 1, 2, 2], [1, 1, 2, 2], [3, 3, 4, 4], [3, 3, 4, 4]])
    row = np.arange(4.0).reshape(1, 1, 4, 1)
    np.testing.assert_array_equal(ref.resize(row, (1, 2), "nearest")[0, 0, :, 0], [1, 3])
    np.testing.assert_allclose(ref.resize(row, (1, 2))[0, 0, :, 0], [0.5, 2.5], atol=1e-12)


@pytest.mark.parametrize("method", ["bilinear", "nearest"])
@pytest.mark.parametrize("h,w,oh,ow", [(3, 4, 7, 5), (7, 6, 3, 4), (5, 5, 5, 5), (1, 3, 4, 1)])
def test_resize_rows_sum_to_one_and_vjp_matches_finite_differences(method, h, w, oh, ow):
    for n_in, n_out in ((h, oh), (w, ow)):
        np.testing.assert_allclose(ref.resize_weights(n_in, n_out, method).sum(axis=1), 1.0, atol=1e-12)
    rng = np.random.default_rng(1)
    x = rng.standard_normal((2, h, w, 3))
    dy = rng.standard_normal((2, oh, ow, 3))
    (num,) = numeric_vjp(lambda t: ref.resize(t, (oh, ow), method), [x], dy, eps=EPS)
    np.testing.assert_allclose(ref.resize_vjp(x, dy, (oh, ow), method), num, rtol=RTOL, atol=ATOL)


@pytest.mark.parametrize("shape,stat", [((2, 3, 4, 5), (5,)), ((3, 4), (1, 4)), ((2, 3, 4), ())])
def test_batch_normalization_vjp_matches_finite_differences(shape, stat):
    rng = np.random.default_rng(1)
    x, m, o, s = (rng.standard_normal(sh) for sh in (shape, stat, stat, stat))
    v = np.abs(rng.standard_normal(stat)) + 0.5
    y = ref.batch_normalization(x, m, v, o, s, 1e-3)
    np.testing.assert_allclose(y, s * (x - m) / np.sqrt(v + 1e-3) + o, rtol=1e-12)
    dy = rng.standard_normal(shape)
    got = ref.batch_normalization_vjp(x, m, v, o, s, dy, 1e-3)
    num = numeric_vjp(lambda *a: ref.batch_normalization(*a, 1e-3), [x, m, v, o, s], dy, eps=EPS)
    for g, n in zip(got, num):
        np.testing.assert_allclose(g, n, rtol=RTOL, atol=ATOL)


def test_keras_batch_norm_train_vjp_matches_finite_differences():
    """The closed form of the training-mode gradient (through the batch statistics)."""
    rng = np.random.default_rng(2)
    x, g, b = rng.standard_normal((3, 2, 2, 4)), rng.standard_normal(4), rng.standard_normal(4)
    out, mean, var = ref.keras_batch_norm_train(x, g, b)
    np.testing.assert_allclose(out.mean(axis=(0, 1, 2)), b, atol=1e-12)      # normalised, then shifted
    np.testing.assert_allclose(var, ((x - mean) ** 2).mean(axis=(0, 1, 2)), rtol=1e-12)   # biased
    dy = rng.standard_normal(x.shape)
    got = ref.keras_batch_norm_train_vjp(x, g, b, dy)
    num = numeric_vjp(lambda *a: ref.keras_batch_norm_train(*a)[0], [x, g, b], dy, eps=EPS)
    for a, n in zip(got, num):
        np.testing.assert_allclose(a, n, rtol=RTOL, atol=ATOL)
