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

