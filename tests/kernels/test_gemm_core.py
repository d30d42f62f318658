"""The GEMM core (compiler/templates/gemm_core.h) against the NumPy reference: matmul with
every transpose, small-row matmul, and every convolution path the kernels use: direct forward,
direct filter gradient, and the input gradient both as a direct conv (stride 1) and as a
gather GEMM (any stride).

float32 sums of up to ~1000 products of unit normals: relative error ~1e-6 expected; 1e-5
leaves room for summation order without hiding an indexing bug (those give O(1) errors)."""
import ctypes
import shutil
import subprocess
from pathlib import Path

import numpy as np
import pytest

from cnnc.compiler import target
from tests.reference import numpy_ops as ref

TEMPLATES = Path(__file__).resolve().parents[2] / "compiler" / "templates"
CORE = TEMPLATES / "gemm_core.h"
CORE_FILES = (CORE, TEMPLATES / "gemm_api.h")     # the core's code and the interface it includes


def copy_core(d):
    """The GEMM core's files into folder d, for a driver that includes gemm_core.h."""
    for f in CORE_FILES:
        shutil.copy(f, d / f.name)

WRAPPERS = r'''
#include "gemm_core.h"
void matmul(const float *a, const float *b, float *c, int M, int N, int K, int ta, int tb, int acc) {
    cg_dense A = {a, ta ? 1 : K, ta ? M : 1}, B = {b, tb ? 1 : N, tb ? K : 1};
    if (M < CG_MR && !acc)
        cg_gemm_small_m(M, N, K, &A, &B, c, N, 1, 0, 0);
    else
        cg_gemm(M, N, K, cg_pack_a_dense, &A, cg_pack_b_dense, &B, c, N, acc, 1);
}
void conv_fwd(const float *x, const float *f, float *out, float *xpad, int N, int H, int W, int C,
              int OH, int OW, int KH, int KW, int OC, int SH, int SW, int PT, int PL) {
    cg_conv g = {x, H, W, C, OH, OW, KH, KW, SH, SW, PT, PL};
    cg_dense b = {f, OC, 1};
    cg_conv_direct(&g, N, cg_pack_b_dense, &b, 0, OC, out, xpad, 1);
}
/* the filter read unpacked (the generated code does so for OC a multiple of the panel width, up to 128) */
void conv_fwd_unpacked(const float *x, const float *f, float *out, float *xpad, int N, int H, int W, int C,
                       int OH, int OW, int KH, int KW, int OC, int SH, int SW, int PT, int PL) {
    cg_conv g = {x, H, W, C, OH, OW, KH, KW, SH, SW, PT, PL};
    cg_dense b = {f, OC, 1};
    cg_conv_direct(&g, N, cg_pack_b_dense, &b, f, OC, out, xpad, 1);
}
void conv_bwd_filter(const float *x, const float *dy, float *df, float *xpad, int N, int H, int W, int C,
                     int OH, int OW, int KH, int KW, int OC, int SH, int SW, int PT, int PL) {
    static float partials[(CG_MAX_THREADS - 1) * 64 * 64 * 9];
    cg_conv g = {x, H, W, C, OH, OW, KH, KW, SH, SW, PT, PL};
    cg_conv_filter_grad(&g, N, dy, OC, df, xpad, partials, 1);
}
void conv_bwd_input_gather(const float *dy, const float *f, float *dx, int N, int H, int W, int C, int OH,
                           int OW, int KH, int KW, int OC, int SH, int SW, int PT, int PL) {
    cg_convt g = {dy, H, W, C, OH, OW, KH, KW, SH, SW, PT, PL, OC};
    cg_filt b = {f, KW, C, OC};
    cg_gemm(N * H * W, C, KH * KW * OC, cg_pack_a_dygather, &g, cg_pack_b_filt_t, &b, dx, C, 0, 1);
}
void conv_bwd_input_direct(const float *dy, const float *f, float *dx, float *dypad, int N, int H, int W,
                           int C, int OH, int OW, int KH, int KW, int OC, int PT, int PL) {
    cg_conv g = {dy, OH, OW, OC, H, W, KH, KW, 1, 1, KH - 1 - PT, KW - 1 - PL};
    cg_filt_rot b = {f, KH, KW, C, OC};
    cg_conv_direct(&g, N, cg_pack_b_filt_rot, &b, 0, C, dx, dypad, 1);
}
'''


def _flags(t):
    """gcc flags that build gemm_core.h for target t: its ISA and its tile constants."""
    return target.flags(t) + [f"-D{name}={value}" for name, value in target.defines(t)]


RUNNABLE = [name for name, t in target.TARGETS.items() if target.runnable(t)]


@pytest.fixture(scope="module", params=RUNNABLE)
def lib(request, tmp_path_factory):
    """The wrappers built for each target this CPU runs (the target table says which)."""
    if shutil.which("gcc") is None:
        pytest.fail("gcc is required to build kernels")
    d = tmp_path_factory.mktemp("gemm_" + request.param)
    copy_core(d)
    (d / "w.c").write_text(WRAPPERS)
    so = d / "libw.so"
    subprocess.run(["gcc", "-O2", *_flags(target.TARGETS[request.param]), "-fopenmp", "-Wall", "-Wextra",
                    "-Werror", "-shared", "-fPIC", str(d / "w.c"), "-o", str(so)], check=True, capture_output=True)
    return ctypes.CDLL(str(so))


@pytest.mark.parametrize("name", sorted(set(target.TARGETS) - set(RUNNABLE) - {"neon"}))
def test_other_targets_compile(tmp_path, name):
    """Targets this CPU cannot run still compile warning-free (an AVX2 machine builds the
    AVX-512 kernels; the code cannot be run here)."""
    t = target.TARGETS[name]
    if not set(t.needs) <= {"__AVX512F__", "__AVX2__", "__FMA__"} or "__x86_64__" not in target.predefines()[1]:
        pytest.skip(f"{name} is not an x86-64 target")
    copy_core(tmp_path)
    (tmp_path / "w.c").write_text(WRAPPERS)
    r = subprocess.run(["gcc", "-O2", *_flags(t), "-fopenmp", "-Wall", "-Wextra", "-Werror", "-fPIC", "-c",
                        str(tmp_path / "w.c"), "-o", str(tmp_path / "w.o")], capture_output=True, text=True)
    assert r.returncode == 0, r.stderr


def _p(a):
    return a.ctypes.data_as(ctypes.POINTER(ctypes.c_float))


def _rel(got, want):
    return float(np.abs(got - want).max() / (np.abs(want).max() + 1e-6))


@pytest.mark.parametrize("ta,tb", [(0, 0), (1, 0), (0, 1), (1, 1)])
# N >= M splits columns among threads (N past one 1024-column block), else rows
@pytest.mark.parametrize("m,n,k", [(1, 1, 1), (13, 35, 7), (200, 33, 300), (97, 64, 257), (24, 1100, 300), (40, 2100, 33)])
def test_matmul(lib, rng, m, n, k, ta, tb):
    a = rng.standard_normal((k, m) if ta else (m, k)).astype(np.float32)
    b = rng.standard_normal((n, k) if tb else (k, n)).astype(np.float32)
    c = rng.standard_normal((m, n)).astype(np.float32)
    c0 = c.copy()
    lib.matmul(_p(a), _p(b), _p(c), m, n, k, ta, tb, 1)          # accumulate into c
    assert _rel(c, c0 + ref.matmul(a, b, bool(ta), bool(tb))) < 1e-5


@pytest.mark.parametrize("ta,tb", [(0, 0), (1, 0), (0, 1), (1, 1)])
# K >= 64 splits B's rows among threads (partials added after); 4608 x 1024 is flowers' fc1
@pytest.mark.parametrize("m,n,k", [(1, 300, 70), (3, 17, 5), (11, 1024, 40), (1, 1024, 4608), (3, 37, 131),
                                   (11, 300, 67), (1, 10, 3136), (2, 5, 512), (1, 16, 9), (3, 1, 40)])
def test_matmul_few_rows(lib, rng, m, n, k, ta, tb):
    a = rng.standard_normal((k, m) if ta else (m, k)).astype(np.float32)
    b = rng.standard_normal((n, k) if tb else (k, n)).astype(np.float32)
    c = np.empty((m, n), np.float32)
    lib.matmul(_p(a), _p(b), _p(c), m, n, k, ta, tb, 0)          # below a micro-tile: no packing
    assert _rel(c, ref.matmul(a, b, bool(ta), bool(tb))) < 1e-5


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
def test_conv_paths(lib, trial):
    rng = np.random.default_rng(trial)
    geo, x, f, dy, strides, pad = _case(rng, trial)
    n, h, w, c, oh, ow, kh, kw, oc, s, _, pt, pl = geo
    # zero-bordered input, plus the slack the filter gradient's last row tiles read
    xpad = np.empty(n * ((oh - 1) * s + kh) * ((ow - 1) * s + kw) * c + 16, np.float32)
    out = np.empty(dy.shape, np.float32)
    lib.conv_fwd(_p(x), _p(f), _p(out), _p(xpad), *geo)
    assert _rel(out, ref.conv2d(x, f, strides, pad)) < 1e-5
    df = np.empty_like(f)
    lib.conv_bwd_filter(_p(x), _p(dy), _p(df), _p(xpad), *geo)
    assert _rel(df, ref.conv2d_backprop_filter(x, f.shape, dy, strides, pad)) < 1e-5
    want_dx = ref.conv2d_backprop_input(x.shape, f, dy, strides, pad)
    dx = np.empty_like(x)
    lib.conv_bwd_input_gather(_p(dy), _p(f), _p(dx), *geo)
    assert _rel(dx, want_dx) < 1e-5
    if s == 1:
        dypad = np.empty(n * (h + kh - 1) * (w + kw - 1) * oc, np.float32)
        dx = np.empty_like(x)
        lib.conv_bwd_input_direct(_p(dy), _p(f), _p(dx), _p(dypad), n, h, w, c, oh, ow, kh, kw, oc, pt, pl)
        assert _rel(dx, want_dx) < 1e-5


# (..., 3, 5, 1088, 1): past one 1024-column block, so each thread packs slices of 5 short
# kernel rows itself (and the second block is partial)
@pytest.mark.parametrize("n,h,c,k,oc,s", [(1, 12, 128, 3, 128, 1), (2, 9, 5, 5, 32, 1), (3, 7, 16, 3, 64, 2),
                                          (1, 25, 64, 3, 96, 1), (2, 6, 3, 2, 160, 1), (1, 5, 3, 5, 1088, 1)])
def test_conv_wide_outputs_packed_and_unpacked(lib, rng, n, h, c, k, oc, s):
    """Whole panels (OC a multiple of every target's CG_NR): the filter read as packed panels
    (threads sharing the packing) and read unpacked, row by row, give the reference within
    float tolerance and the same bits as each other (the same products summed in the same
    order)."""
    pad = "SAME"
    oh = ref.out_size(h, k, s, pad)
    pt = ref.pads(h, k, s, pad)[0]
    geo = (n, h, h, c, oh, oh, k, k, oc, s, s, pt, pt)
    x = rng.standard_normal((n, h, h, c)).astype(np.float32)
    f = rng.standard_normal((k, k, c, oc)).astype(np.float32)
    xpad = np.empty(n * ((oh - 1) * s + k) ** 2 * c + 16, np.float32)
    packed, unpacked = (np.empty((n, oh, oh, oc), np.float32) for _ in range(2))
    lib.conv_fwd(_p(x), _p(f), _p(packed), _p(xpad), *geo)
    lib.conv_fwd_unpacked(_p(x), _p(f), _p(unpacked), _p(xpad), *geo)
    assert _rel(packed, ref.conv2d(x, f, (s, s), pad)) < 1e-5
    np.testing.assert_array_equal(unpacked, packed)


@pytest.mark.parametrize("h,w,c,kh,oc", [(30, 50, 1, 20, 10), (12, 7, 3, 4, 33), (5, 300, 1, 2, 4)])
def test_conv_window_spanning_the_width(lib, rng, h, w, c, kh, oc):
    """A VALID window as wide as the input (textcnn's word vectors): its rows are adjacent in
    memory, and the direct conv walks them as one run of kh*w*c values."""
    n = 2
    x = rng.standard_normal((n, h, w, c)).astype(np.float32)
    f = rng.standard_normal((kh, w, c, oc)).astype(np.float32)
    oh = h - kh + 1
    geo = (n, h, w, c, oh, 1, kh, w, oc, 1, 1, 0, 0)
    xpad = np.empty(n * h * w * c + 16, np.float32)
    out = np.empty((n, oh, 1, oc), np.float32)
    lib.conv_fwd(_p(x), _p(f), _p(out), _p(xpad), *geo)
    assert _rel(out, ref.conv2d(x, f, (1, 1), "VALID")) < 1e-5
    dy = rng.standard_normal((n, oh, 1, oc)).astype(np.float32)
    df = np.empty_like(f)
    lib.conv_bwd_filter(_p(x), _p(dy), _p(df), _p(xpad), *geo)
    assert _rel(df, ref.conv2d_backprop_filter(x, f.shape, dy, (1, 1), "VALID")) < 1e-5
