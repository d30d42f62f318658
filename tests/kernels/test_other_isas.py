"""The GEMM core built for an ISA this CPU does not have, run under an emulator: aarch64 NEON
(8 x 3 tiles of 4 floats) cross-compiled with aarch64-linux-gnu-gcc and run by qemu-aarch64.
A C driver checks every kernel path of test_gemm_core.py (matmul with each transpose and
accumulation, the few-row product, the direct conv forward with a packed and an unpacked
filter, the filter gradient, the input gradient as a gather GEMM and as a direct conv)
against naive loops written out in the driver, over shapes with partial tiles. Skipped
where the cross compiler or qemu is missing (Debian: gcc-aarch64-linux-gnu, qemu-user)."""
import shutil
import subprocess
from pathlib import Path

import pytest

from cnnc.compiler import target

from .test_gemm_core import WRAPPERS, copy_core

CROSS, QEMU = "aarch64-linux-gnu-gcc", "qemu-aarch64"
SYSROOT = Path("/usr/aarch64-linux-gnu")

DRIVER = r'''
#include <math.h>
#include <stdio.h>
#include <stdlib.h>

static float *rnd(long n) {
    float *p = malloc((size_t)(n > 0 ? n : 1) * sizeof(float));
    for (long i = 0; i < n; i++) p[i] = (float)rand() / RAND_MAX - 0.5f;
    return p;
}
static double err(const float *got, const double *want, long n) {
    double e = 0, m = 1e-6;
    for (long i = 0; i < n; i++) { double d = fabs(got[i] - want[i]); e = d > e ? d : e; m = fabs(want[i]) > m ? fabs(want[i]) : m; }
    return e / m;
}
static int bad = 0;
static void check(const char *what, double e) { if (!(e < 1e-5)) { printf("FAIL %s: %g\n", what, e); bad = 1; } }

/* out[n,oy,ox,o] = sum x[n, oy*s - pt + a, ox*s - pl + b, c] f[a,b,c,o] (zero outside) */
static void ref_conv(const float *x, const float *f, double *y, int N, int H, int W, int C, int OH, int OW,
                     int KH, int KW, int OC, int S, int PT, int PL) {
    for (int n = 0; n < N; n++) for (int oy = 0; oy < OH; oy++) for (int ox = 0; ox < OW; ox++) for (int o = 0; o < OC; o++) {
        double s = 0;
        for (int a = 0; a < KH; a++) for (int b = 0; b < KW; b++) {
            int iy = oy * S - PT + a, ix = ox * S - PL + b;
            if (iy < 0 || iy >= H || ix < 0 || ix >= W) continue;
            for (int c = 0; c < C; c++) s += (double)x[((n * H + iy) * W + ix) * C + c] * f[((a * KW + b) * C + c) * OC + o];
        }
        y[((n * OH + oy) * OW + ox) * OC + o] = s;
    }
}

int main(void) {
    srand(1);
    int mm[][3] = {{1, 1, 1}, {13, 35, 7}, {200, 33, 300}, {97, 64, 257}, {24, 1100, 300}, {3, 37, 131}, {1, 1024, 300}};
    for (unsigned t = 0; t < sizeof mm / sizeof mm[0]; t++)
        for (int ta = 0; ta < 2; ta++) for (int tb = 0; tb < 2; tb++) {
            int M = mm[t][0], N = mm[t][1], K = mm[t][2], acc = M >= CG_MR;
            float *a = rnd((long)M * K), *b = rnd((long)K * N), *c = rnd((long)M * N);
            double *want = malloc(sizeof(double) * M * N);
            for (int i = 0; i < M; i++) for (int j = 0; j < N; j++) {
                double s = acc ? c[i * N + j] : 0;
                for (int k = 0; k < K; k++) s += (double)a[ta ? k * M + i : i * K + k] * b[tb ? j * K + k : k * N + j];
                want[i * N + j] = s;
            }
            matmul(a, b, c, M, N, K, ta, tb, acc);
            char what[64]; snprintf(what, sizeof what, "matmul %dx%dx%d ta %d tb %d", M, N, K, ta, tb);
            check(what, err(c, want, (long)M * N));
            free(a); free(b); free(c); free(want);
        }
    /* N, H, C, K, OC, S, SAME(1)/VALID(0) */
    int cv[][7] = {{2, 9, 3, 5, 24, 1, 1}, {1, 8, 20, 3, 48, 1, 1}, {3, 7, 5, 3, 13, 2, 0}, {2, 6, 16, 2, 40, 1, 0},
                   {1, 12, 8, 3, 96, 1, 1}, {2, 11, 4, 4, 7, 3, 1}};
    for (unsigned t = 0; t < sizeof cv / sizeof cv[0]; t++) {
        int N = cv[t][0], H = cv[t][1], W = H, C = cv[t][2], KH = cv[t][3], KW = KH, OC = cv[t][4], S = cv[t][5];
        int OH = cv[t][6] ? (H + S - 1) / S : (H - KH) / S + 1, OW = OH;
        int PT = cv[t][6] ? (((OH - 1) * S + KH - H) > 0 ? ((OH - 1) * S + KH - H) / 2 : 0) : 0, PL = PT;
        long nx = (long)N * H * W * C, nf = (long)KH * KW * C * OC, ny = (long)N * OH * OW * OC;
        float *x = rnd(nx), *f = rnd(nf), *dy = rnd(ny), *y = rnd(ny), *df = rnd(nf), *dx = rnd(nx);
        long pad = (long)N * ((OH - 1) * S + KH) * ((OW - 1) * S + KW) * C + 16;
        long padt = (long)N * (H + KH - 1) * (W + KW - 1) * OC + 16;
        float *xpad = rnd(pad > padt ? pad : padt);
        double *want = malloc(sizeof(double) * (ny > nf ? (ny > nx ? ny : nx) : (nf > nx ? nf : nx)));
        char what[64];
        ref_conv(x, f, want, N, H, W, C, OH, OW, KH, KW, OC, S, PT, PL);
        conv_fwd(x, f, y, xpad, N, H, W, C, OH, OW, KH, KW, OC, S, S, PT, PL);
        snprintf(what, sizeof what, "conv fwd case %u", t); check(what, err(y, want, ny));
        if (OC % CG_NR == 0) {
            conv_fwd_unpacked(x, f, y, xpad, N, H, W, C, OH, OW, KH, KW, OC, S, S, PT, PL);
            snprintf(what, sizeof what, "conv fwd unpacked case %u", t); check(what, err(y, want, ny));
        }
        /* df[a,b,c,o] = sum over pixels x[window] dy */
        for (int a = 0; a < KH; a++) for (int b = 0; b < KW; b++) for (int c = 0; c < C; c++) for (int o = 0; o < OC; o++) {
            double s = 0;
            for (int n = 0; n < N; n++) for (int oy = 0; oy < OH; oy++) for (int ox = 0; ox < OW; ox++) {
                int iy = oy * S - PT + a, ix = ox * S - PL + b;
                if (iy < 0 || iy >= H || ix < 0 || ix >= W) continue;
                s += (double)x[((n * H + iy) * W + ix) * C + c] * dy[((n * OH + oy) * OW + ox) * OC + o];
            }
            want[((a * KW + b) * C + c) * OC + o] = s;
        }
        conv_bwd_filter(x, dy, df, xpad, N, H, W, C, OH, OW, KH, KW, OC, S, S, PT, PL);
        snprintf(what, sizeof what, "conv filter grad case %u", t); check(what, err(df, want, nf));
        /* dx[n,iy,ix,c] = sum dy[window hits] f */
        for (long i = 0; i < nx; i++) want[i] = 0;
        for (int n = 0; n < N; n++) for (int oy = 0; oy < OH; oy++) for (int ox = 0; ox < OW; ox++)
            for (int a = 0; a < KH; a++) for (int b = 0; b < KW; b++) {
                int iy = oy * S - PT + a, ix = ox * S - PL + b;
                if (iy < 0 || iy >= H || ix < 0 || ix >= W) continue;
                for (int c = 0; c < C; c++) for (int o = 0; o < OC; o++)
                    want[((n * H + iy) * W + ix) * C + c] += (double)dy[((n * OH + oy) * OW + ox) * OC + o] * f[((a * KW + b) * C + c) * OC + o];
            }
        conv_bwd_input_gather(dy, f, dx, N, H, W, C, OH, OW, KH, KW, OC, S, S, PT, PL);
        snprintf(what, sizeof what, "conv input grad (gather) case %u", t); check(what, err(dx, want, nx));
        if (S == 1) {
            conv_bwd_input_direct(dy, f, dx, xpad, N, H, W, C, OH, OW, KH, KW, OC, PT, PL);
            snprintf(what, sizeof what, "conv input grad (direct) case %u", t); check(what, err(dx, want, nx));
        }
        free(x); free(f); free(dy); free(y); free(df); free(dx); free(xpad); free(want);
    }
    printf(bad ? "failed\n" : "ok\n");
    return bad;
}
'''


@pytest.mark.skipif(shutil.which(CROSS) is None or shutil.which(QEMU) is None,
                    reason=f"needs {CROSS} and {QEMU} (Debian: gcc-aarch64-linux-gnu, qemu-user)")
def test_neon_kernels_under_qemu(tmp_path):
    t = target.TARGETS["neon"]
    assert target.native(CROSS) is t                  # what a build with CC=the cross compiler picks
    copy_core(tmp_path)
    (tmp_path / "t.c").write_text(WRAPPERS + DRIVER)
    exe = tmp_path / "t"
    defines = [f"-D{name}={value}" for name, value in target.defines(t)]
    r = subprocess.run([CROSS, "-O2", *target.flags(t, CROSS), *defines, "-fopenmp", "-Wall", "-Wextra", "-Werror",
                        str(tmp_path / "t.c"), "-o", str(exe), "-lm"], capture_output=True, text=True)
    assert r.returncode == 0, r.stderr
    r = subprocess.run([QEMU, "-L", str(SYSROOT), str(exe)], capture_output=True, text=True, timeout=300,
                       env={"OMP_NUM_THREADS": "2"})
    assert r.returncode == 0 and r.stdout.strip().endswith("ok"), r.stdout + r.stderr
