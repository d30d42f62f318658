"""The GEMM core (compiler/templates/gemm_core.h) against the NumPy reference: matmul with
every transpose, and conv2d forward, filter gradient and input gradient as implicit GEMMs.

float32 sums of up to ~1000 products of unit normals: relative error ~1e-6 expected; 1e-5
leaves room for summation order without hiding an indexing bug (those give O(1) errors)."""
import ctypes
import shutil
import subprocess
from pathlib import Path

import numpy as np
import pytest

from tests.reference import numpy_ops as ref

CORE = Path(__file__).resolve().parents[2] / "compiler" / "templates" / "gemm_core.h"

WRAPPERS = r'''
#include "gemm_core.h"
void matmul(const float *a, const float *b, float *c, int M, int N, int K, int ta, int tb, int acc) {
    cg_dense A = {a, ta ? 1 : K, ta ? M : 1}, B = {b, tb ? 1 : N, tb ? K : 1};
    cg_gemm(M, N, K, cg_pack_a_dense, &A, cg_pack_b_dense, &B, c, N, acc, 1);
}
void conv_fwd(const float *x, const float *f, float *out, int N, int H, int W, int C, int OH, int OW,
              int KH, int KW, int OC, int SH, int SW, int PT, int PL) {
    cg_conv g = {x, H, W, C, OH, OW, KH, KW, SH, SW, PT, PL};
    cg_dense b = {f, OC, 1};
    cg_gemm(N * OH * OW, OC, KH * KW * C, cg_pack_a_im2col, &g, cg_pack_b_dense, &b, out, OC, 0, 1);
}
void conv_bwd_filter(const float *x, const float *dy, float *df, int N, int H, int W, int C, int OH, int OW,
                     int KH, int KW, int OC, int SH, int SW, int PT, int PL) {
    cg_conv g = {x, H, W, C, OH, OW, KH, KW, SH, SW, PT, PL};
    cg_dense b = {dy, OC, 1};
    static float partials[7 * 64 * 64 * 9];
    cg_gemm_splitk(KH * KW * C, OC, N * OH * OW, cg_pack_a_im2col_t, &g, cg_pack_b_dense, &b, df, OC, 1, partials);
}
void conv_bwd_input(const float *dy, const float *f, float *dx, int N, int H, int W, int C, int OH, int OW,
                    int KH, int KW, int OC, int SH, int SW, int PT, int PL) {
    cg_convt g = {dy, H, W, C, OH, OW, KH, KW, SH, SW, PT, PL, OC};
    cg_filt b = {f, KW, C, OC};
    cg_gemm(N * H * W, C, KH * KW * OC, cg_pack_a_dygather, &g, cg_pack_b_filt_t, &b, dx, C, 0, 1);
}
'''


@pytest.fixture(scope="module")
def lib(tmp_path_factory):
    if shutil.which("gcc") is None:
        pytest.fail("gcc is required to build kernels")
    d = tmp_path_factory.mktemp("gemm")
    shutil.copy(CORE, d / "gemm_core.h")
    (d / "w.c").write_text(WRAPPERS)
    so = d / "libw.so"
    subprocess.run(["gcc", "-O2", "-march=native", "-fopenmp", "-Wall", "-Wextra", "-Werror", "-shared",
                    "-fPIC", str(d / "w.c"), "-o", str(so)], check=True, capture_output=True)
    return ctypes.CDLL(str(so))


def _p(a):
    return a.ctypes.data_as(ctypes.POINTER(ctypes.c_float))


def _rel(got, want):
    return float(np.abs(got - want).max() / (np.abs(want).max() + 1e-6))


@pytest.mark.parametrize("ta,tb", [(0, 0), (1, 0), (0, 1), (1, 1)])
@pytest.mark.parametrize("m,n,k", [(1, 1, 1), (13, 35, 7), (200, 33, 300), (97, 64, 257)])
def test_matmul(lib, rng, m, n, k, ta, tb):
    a = rng.standard_normal((k, m) if ta else (m, k)).astype(np.float32)
    b = rng.standard_normal((n, k) if tb else (k, n)).astype(np.float32)
    c = rng.standard_normal((m, n)).astype(np.float32)
    c0 = c.copy()
    lib.matmul(_p(a), _p(b), _p(c), m, n, k, ta, tb, 1)          # accumulate into c
    assert _rel(c, c0 + ref.matmul(a, b, bool(ta), bool(tb))) < 1e-5


def _case(rng, trial):
    n, h, w, c, oc = (int(v) for v in (rng.integers(1, 4), rng.integers(3, 14), rng.integers(3, 14),
                                        rng.integers(1, 9), rng.integers(1, 40)))
    kh, kw = int(rng.integers(1, min(h, 5) + 1)), int(rng.integers(1, min(w, 5) + 1))
    s, pad = int(rng.integers(1, 4)), ("SAME", "VALID")[trial % 2]
    oh, ow = ref.out_size(h, kh, s, pad), ref.out_size(w, kw, s, pad)
    geo = (n, h, w, c, oh, ow, kh, kw, oc, s, s, ref.pads(h, kh, s, pad)[0], ref.pads(w, kw, s, pad)[0])
    x = rng.standard_normal((n, h, w, c)).astype(np.float32)
    f = rng.standard_normal((kh, kw, c, oc)).astype(np.float32)
    dy = rng.standard_normal((n, oh, ow, oc)).astype(np.float32)
    return geo, x, f, dy, (s, s), pad


@pytest.mark.parametrize("trial", range(24))
def test_conv_as_gemm(lib, trial):
    rng = np.random.default_rng(trial)
    geo, x, f, dy, strides, pad = _case(rng, trial)
    out = np.empty(dy.shape, np.float32)
    lib.conv_fwd(_p(x), _p(f), _p(out), *geo)
    assert _rel(out, ref.conv2d(x, f, strides, pad)) < 1e-5
    df = np.empty_like(f)
    lib.conv_bwd_filter(_p(x), _p(dy), _p(df), *geo)
    assert _rel(df, ref.conv2d_backprop_filter(x, f.shape, dy, strides, pad)) < 1e-5
    dx = np.empty_like(x)
    lib.conv_bwd_input(_p(dy), _p(f), _p(dx), *geo)
    assert _rel(dx, ref.conv2d_backprop_input(x.shape, f, dy, strides, pad)) < 1e-5


DIRECT = r'''
#include "gemm_core.h"
void conv_direct(const float *x, const float *f, float *out, float *xpad, int N, int H, int W, int C,
                 int OH, int OW, int KH, int KW, int OC, int SH, int SW, int PT, int PL) {
    cg_conv g = {x, H, W, C, OH, OW, KH, KW, SH, SW, PT, PL};
    cg_dense b = {f, OC, 1};
    cg_conv_direct(&g, N, cg_pack_b_dense, &b, OC, out, xpad, 1);
}
void filter_grad_direct(const float *x, const float *dy, float *df, float *xpad, int N, int H, int W, int C,
                        int OH, int OW, int KH, int KW, int OC, int SH, int SW, int PT, int PL) {
    static float partials[7 * 64 * 64 * 9];
    cg_conv g = {x, H, W, C, OH, OW, KH, KW, SH, SW, PT, PL};
    cg_conv_filter_grad(&g, N, dy, OC, df, xpad, partials, 1);
}
'''


@pytest.fixture(scope="module")
def direct(tmp_path_factory):
    d = tmp_path_factory.mktemp("direct")
    shutil.copy(CORE, d / "gemm_core.h")
    (d / "d.c").write_text(DIRECT)
    so = d / "libd.so"
    subprocess.run(["gcc", "-O2", "-march=native", "-fopenmp", "-Wall", "-Wextra", "-Werror", "-shared",
                    "-fPIC", str(d / "d.c"), "-o", str(so)], check=True, capture_output=True)
    return ctypes.CDLL(str(so))


@pytest.mark.parametrize("trial", range(24))
def test_direct_conv(direct, trial):
    rng = np.random.default_rng(100 + trial)
    geo, x, f, dy, strides, pad = _case(rng, trial)
    n, h, w, c, oh, ow, kh, kw, oc, s, _, _, _ = geo
    xpad = np.empty(n * ((oh - 1) * s + kh) * ((ow - 1) * s + kw) * c, np.float32)
    out = np.empty(dy.shape, np.float32)
    direct.conv_direct(_p(x), _p(f), _p(out), _p(xpad), *geo)
    assert _rel(out, ref.conv2d(x, f, strides, pad)) < 1e-5
    xpad = np.empty(xpad.size + 16, np.float32)          # + slack the filter gradient may read
    df = np.empty_like(f)
    direct.filter_grad_direct(_p(x), _p(dy), _p(df), _p(xpad), *geo)
    assert _rel(df, ref.conv2d_backprop_filter(x, f.shape, dy, strides, pad)) < 1e-5
