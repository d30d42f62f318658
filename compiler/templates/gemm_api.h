/* ------------------------------------------------------------------ GEMM core: interface
 * What the generated kernels call. The core itself (gemm_core.h, compiled as gemm_core.c) is
 * built once per machine, target and compiler and linked into every model (compiler/build.py),
 * so a model compiles only its own kernels. Its functions have hidden visibility: two models
 * built for different targets and loaded in one process never call each other's core. */
#ifndef CNNC_GEMM_API_H
#define CNNC_GEMM_API_H
#ifdef _OPENMP
#include <omp.h>
#endif

/* The target's shape comes from the generator (compiler/target.py), defined before this
 * header (model.c and gemm_core.c both define them): CG_VL floats per vector; micro-tiles of
 * CG_MR rows x CG_NRV vectors, whose accumulators, B vectors and a broadcast of A fit the vector registers (AVX-512 12 x 2 of 16,
 * AVX2 6 x 2 of 8, NEON 8 x 3 of 4, generic 6 x 2 of 4); blocks of CG_KC (depth), CG_MC (rows)
 * and CG_NC (columns, a multiple of CG_NRV * CG_VL); CG_MAX_THREADS packing buffers. */
#if !defined(CG_VL) || !defined(CG_MR) || !defined(CG_NRV) || !defined(CG_KC) || !defined(CG_MC) || \
    !defined(CG_NC) || !defined(CG_MAX_THREADS)
#error "gemm_api.h: define CG_VL, CG_MR, CG_NRV, CG_KC, CG_MC, CG_NC and CG_MAX_THREADS (compiler/target.py)"
#endif
#if CG_MR > 16 || CG_NRV > 4
#error "gemm_api.h: the core's loops unroll at most 16 rows and 4 vectors"
#endif
/* model.c compiled without its target's flags (by hand, without -march): vectors no wider
 * than the compiler was told the CPU has, so the code stays correct and warning-free. */
#if defined(__AVX512F__)
#define CG_ISA_VL 16
#elif defined(__AVX__)
#define CG_ISA_VL 8
#else
#define CG_ISA_VL 4
#endif
#if CG_VL > CG_ISA_VL
#undef CG_VL
#define CG_VL CG_ISA_VL
#endif
#define CG_NR (CG_NRV * CG_VL)

#define CG_API __attribute__((visibility("hidden")))

/* A packer writes rows i0..i0+mc-1, columns p0..p0+kc-1 of A as MR-row slivers, k-major,
 * zero-padding rows past mc. A B packer writes rows p0..p0+kc-1, columns j0..j0+nc-1 of B as
 * NR-column slivers, k-major, zero-padding columns past nc. */
typedef void (*cg_pack_a)(const void *ctx, int i0, int mc, int p0, int kc, float *out);
typedef void (*cg_pack_b)(const void *ctx, int p0, int kc, int j0, int nc, float *out);

/* An epilogue finishes a block of C in place once all of K is summed into it: rows of `c`
 * (ldc apart), columns j0..j0+cols-1 (the generated model's fused bias, relu, ...). It runs
 * while the block is still in cache, instead of as another pass over the whole output. */
typedef void (*cg_epi)(const void *ctx, float *c, long ldc, int rows, int j0, int cols);

/* A dense matrix: element (i, k) at p[i*rs + k*cs] (rs/cs swap for a transpose). */
typedef struct { const float *p; long rs, cs; } cg_dense;

/* Convolution geometry (NHWC input, TF filter [KH, KW, C, OC]). */
typedef struct { const float *x; int H, W, C, OH, OW, KH, KW, SH, SW, PT, PL; } cg_conv;

/* B for the input gradient as a direct conv of dy: rows (a, b, oc) of the filter turned 180
 * degrees, columns c: element ((a, b, oc), c) is f[KH-1-a, KW-1-b, c, oc]. */
typedef struct { const float *f; int KH, KW, C, OC; } cg_filt_rot;

/* conv2d input gradient, A = gather(dy): row m = (n, ih, iw), column k = (kh, kw, oc) holds
 * dy[n, oh, ow, oc] for the output pixel whose window puts tap (kh, kw) on (ih, iw), or 0.
 * g describes the forward conv: x = the input geometry, OH/OW/C as in forward, dy in g->x. */
typedef struct { const float *dy; int H, W, C, OH, OW, KH, KW, SH, SW, PT, PL, OC; } cg_convt;

/* B = the filter seen as [(kh, kw, oc), c]: element (k, c) is f[kh, kw, c, oc]. */
typedef struct { const float *f; int KW, C, OC; } cg_filt;

/* Dilated convolution (DH, DW > 1): the window does not read contiguous kernel rows, so these
 * convs are implicit GEMMs whose packers gather each tap's C channels (contiguous in NHWC)
 * from the unpadded input, or 0 where the tap falls in the border. Undilated convs never come
 * here. x: the forward conv's input [batch, H, W, C]; taps (kh, kw) at
 * (oy * SH - PT + kh * DH, ox * SW - PL + kw * DW). */
typedef struct { const float *x; int H, W, C, OH, OW, KH, KW, SH, SW, DH, DW, PT, PL, OC; } cg_conv_dil;

/* ---- threads ---------------------------------------------------------------------------- */

/* Threads for one product: what OpenMP would use, capped at the packing buffers we have. */
static inline int cg_threads(void)
{
#ifdef _OPENMP
    int n = omp_get_max_threads();
    return n < CG_MAX_THREADS ? n : CG_MAX_THREADS;
#else
    return 1;
#endif
}

/* The calling thread's number and its team's size (0 and 1 without OpenMP). */
static inline int cg_thread_num(void)
{
#ifdef _OPENMP
    return omp_get_thread_num();
#else
    return 0;
#endif
}

static inline int cg_num_threads(void)
{
#ifdef _OPENMP
    return omp_get_num_threads();
#else
    return 1;
#endif
}

/* Thread t's share [*lo, *hi) of n items split among nt threads, cut at multiples of `align`
 * (a micro-tile, a panel, a cache line): every split in the generated code goes through here. */
static inline void cg_share(long n, long align, int t, int nt, long *lo, long *hi)
{
    const long units = (n + align - 1) / align;
    *lo = units * t / nt * align < n ? units * t / nt * align : n;
    *hi = units * (t + 1) / nt * align < n ? units * (t + 1) / nt * align : n;
}

/* One buffer for the whole team: the thread-local `own` of one team member (a filter the
 * threads pack together and all read, the filter gradient's partial sums). Every thread of the
 * team must call it at the same point; it ends with the team's barrier. */
static inline float *cg_team_buffer(float *own)
{
    float *buffer = own;
#ifdef _OPENMP
#pragma omp single copyprivate(buffer)
    buffer = own;
#endif
    return buffer;
}

/* Whether cg_gemm_small_m_part may split K among threads: enough rows of B to share, and
 * the partials fit a packing buffer. */
static inline int cg_small_m_split(int M, int N, int K)
{
    return K >= 64 && (long)M * N <= (long)CG_KC * (CG_NC + CG_NR);
}

/* ---- products (gemm_core.h says what each does) ----------------------------------------- */

/* C (+)= A B: the calling thread's share (t of nt), or the whole product in one call. */
CG_API void cg_gemm_part(int M, int N, int K, cg_pack_a pa, const void *actx, cg_pack_b pb, const void *bctx,
           float *C, int ldc, int accumulate, cg_epi epi, const void *ectx, int t, int nt);
CG_API void cg_gemm(int M, int N, int K, cg_pack_a pa, const void *actx, cg_pack_b pb, const void *bctx,
           float *C, int ldc, int accumulate, int threads);

/* The few-row product (M < CG_MR: batch-1 inference), without packing. */
CG_API void cg_gemm_small_m_part(int M, int N, int K, const cg_dense *A, const cg_dense *B, float *C, int ldc,
           cg_epi epi, const void *ectx, int t, int nt);
CG_API void cg_gemm_small_m(int M, int N, int K, const cg_dense *A, const cg_dense *B, float *C, int ldc,
           int threads, cg_epi epi, const void *ectx);

/* conv2d forward, and the filter gradient, reading windows of the zero-bordered input. */
CG_API void cg_conv_direct_part(const cg_conv *g, int batch, cg_pack_b pb, const void *bctx,
           const float *bdirect, int OC, float *out, float *xpad, cg_epi epi, const void *ectx, int t,
           int nt);
CG_API void cg_conv_direct(const cg_conv *g, int batch, cg_pack_b pb, const void *bctx, const float *bdirect,
           int OC, float *out, float *xpad, int threads);
CG_API void cg_conv_filter_grad_part(const cg_conv *g, int batch, const float *dy, int OC, float *df,
           float *xpad, float *partials, int t, int nt);
CG_API void cg_conv_filter_grad(const cg_conv *g, int batch, const float *dy, int OC, float *df, float *xpad,
           float *partials, int threads);

/* Packers: a dense matrix (A or B), the filter turned 180 degrees (input gradient as a
 * direct conv), dy gathered for the input gradient of a strided conv, the filter as
 * [(kh, kw, oc), c]. */
CG_API void cg_pack_a_dense(const void *ctx, int i0, int mc, int p0, int kc, float *out);
CG_API void cg_pack_b_dense(const void *ctx, int p0, int kc, int j0, int nc, float *out);
CG_API void cg_pack_b_filt_rot(const void *ctx, int p0, int kc, int j0, int nc, float *out);
CG_API void cg_pack_a_dygather(const void *ctx, int i0, int mc, int p0, int kc, float *out);
CG_API void cg_pack_b_filt_t(const void *ctx, int p0, int kc, int j0, int nc, float *out);

/* Dilated convs (implicit GEMMs): A = the windows (rows: output pixels), the windows
 * transposed (filter gradient), dy gathered for the input gradient. */
CG_API void cg_pack_a_dil_windows(const void *ctx, int i0, int mc, int p0, int kc, float *out);
CG_API void cg_pack_a_dil_windows_t(const void *ctx, int i0, int mc, int p0, int kc, float *out);
CG_API void cg_pack_a_dil_dygather(const void *ctx, int i0, int mc, int p0, int kc, float *out);

#endif
