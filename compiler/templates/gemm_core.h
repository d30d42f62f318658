/* ------------------------------------------------------------------ GEMM core
 * C[M x N] (+)= A[M x K] * B[K x N], A and B read through panel packers.
 * Portable vector code (GCC vector extensions): the compiler picks the ISA (-march).
 * The interface (types, thread helpers, declarations) is gemm_api.h; this is the code behind
 * it, compiled on its own as gemm_core.c once per target (or included by a test driver). */
#include <string.h>
#ifdef _OPENMP
#include <omp.h>
#endif
#include "gemm_api.h"

typedef float cg_vf __attribute__((vector_size(CG_VL * 4), aligned(4)));

/* Packing buffers: each OS thread has its own, made on its first use (thread-local), so
 * models running at the same time on different threads (each with its own OpenMP team) never
 * share one. Where a thread reads a team member's buffer (partial sums, a filter packed once
 * for all), it finds it through cg_team_bpacks. */
static _Thread_local float cg_bpack[CG_KC * (CG_NC + CG_NR)] __attribute__((aligned(64)));
static _Thread_local float cg_apack[(CG_MC + CG_MR) * CG_KC] __attribute__((aligned(64)));
static _Thread_local float *cg_team_table[CG_MAX_THREADS];

/* The B packing buffer of every thread of the calling team, by thread number: one thread of
 * the team lends its table, and each writes its own buffer into it. Every thread of the team
 * must call it at the same point, and read another's entry only after a barrier that follows.
 * (An entry's value is fixed for its thread, so a table a later call lends holds the same.) */
static inline float *const *cg_team_bpacks(int t)
{
    float **table = cg_team_table;
#ifdef _OPENMP
#pragma omp single copyprivate(table)
    table = cg_team_table;
#endif
    table[t] = cg_bpack;
    return table;
}

/* dst[i][j] += src[i][j] for rows [i0, i1) and columns [j0, j1): one thread's part of adding
 * another thread's partial result, which callers do in thread order. */
static inline void cg_add_block(float *dst, long ldd, const float *src, long lds, long i0, long i1, long j0,
                                long j1)
{
    for (long i = i0; i < i1; i++)
        for (long j = j0; j < j1; j++) dst[i * ldd + j] += src[i * lds + j];
}

/* Rows that fall in padding read from here, so packing loops need no branch per element. */
#define CG_ZLEN 1024
static const float cg_zero[CG_ZLEN] __attribute__((aligned(64), unused));

/* out[j*MR + i] = row[i][j] for j < len: one packed k-column per j, written contiguously. */
static inline void cg_gather_rows(const float *const row[CG_MR], int len, float *restrict out)
{
    for (int j = 0; j < len; j++) {
#pragma GCC unroll 16
        for (int i = 0; i < CG_MR; i++) out[j * CG_MR + i] = row[i][j];
    }
}

/* Unaligned vector loads and stores of floats (may_alias: any float array may be read so).
 * Not memcpy: GCC then routes the micro-kernels' B vectors through the stack. */
typedef float cg_vfm __attribute__((vector_size(CG_VL * 4), aligned(4), may_alias));
static inline cg_vf cg_load(const float *p) { return *(const cg_vfm *)p; }
static inline void cg_store(float *p, cg_vf v) { *(cg_vfm *)p = v; }

/* Store (or add) a micro-tile's accumulators into C; edge tiles keep only mr x nr of them. */
static inline void cg_writeback(cg_vf acc[CG_MR][CG_NRV], float *restrict c, int ldc, int mr, int nr,
                                int accumulate)
{
    if (mr == CG_MR && nr == CG_NR) {
        for (int i = 0; i < CG_MR; i++)
            for (int j = 0; j < CG_NRV; j++) {
                float *p = c + i * ldc + j * CG_VL;
                cg_store(p, accumulate ? cg_load(p) + acc[i][j] : acc[i][j]);
            }
        return;
    }
    float tile[CG_MR * CG_NR] __attribute__((aligned(64)));
    for (int i = 0; i < CG_MR; i++)
        for (int j = 0; j < CG_NRV; j++)
            cg_store(tile + i * CG_NR + j * CG_VL, acc[i][j]);
    for (int i = 0; i < mr; i++)
        for (int j = 0; j < nr; j++)
            c[i * ldc + j] = (accumulate ? c[i * ldc + j] : 0.f) + tile[i * CG_NR + j];
}

/* The k loop shared by the micro-kernels, inside a function that has `acc[CG_MR][CG_NRV]`
 * and `nr`: for k < kc, acc[i][j] += A(i, k) * (vector j of B's row k), where `aik` is an
 * expression for A(i, k) in i and k and `bk` one for the address of B's row k. A narrow panel
 * (at most one vector of real columns) takes only the first vector. The two loops are
 * written out, not one loop with a test inside: with the test inside, GCC kept fewer
 * accumulators in registers (AVX2 6 x 2: 4 stack accesses and 14 more loads per k step). */
#define CG_KLOOP(kc, aik, bk)                                                                            \
    do {                                                                                                 \
        if (nr <= CG_VL)                                                                                 \
            for (int k = 0; k < (kc); k++) {                                                             \
                const cg_vf b0_ = cg_load(bk);                                                           \
                _Pragma("GCC unroll 16") for (int i = 0; i < CG_MR; i++) acc[i][0] += (aik) * b0_;       \
            }                                                                                            \
        else                                                                                             \
            for (int k = 0; k < (kc); k++) {                                                             \
                const float *restrict bk_ = (bk);                                                        \
                cg_vf bv_[CG_NRV];                                                                       \
                _Pragma("GCC unroll 4") for (int j = 0; j < CG_NRV; j++) bv_[j] = cg_load(bk_ + j * CG_VL); \
                _Pragma("GCC unroll 16") for (int i = 0; i < CG_MR; i++) {                               \
                    const float a_ = (aik);                                                              \
                    _Pragma("GCC unroll 4") for (int j = 0; j < CG_NRV; j++) acc[i][j] += a_ * bv_[j];   \
                }                                                                                        \
            }                                                                                            \
    } while (0)

/* A micro-tile from packed slivers: A's column k is MR floats at a + k*MR, B's row NR at b + k*NR. */
static inline void cg_micro(int kc, const float *restrict a, const float *restrict b,
                     float *restrict c, int ldc, int mr, int nr, int accumulate)
{
    cg_vf acc[CG_MR][CG_NRV] = { { {0} } };
    CG_KLOOP(kc, a[k * CG_MR + i], b + k * CG_NR);
    cg_writeback(acc, c, ldc, mr, nr, accumulate);
}

/* As cg_micro, but row i of A is read straight from memory (no packing): `nkh` runs of kc
 * values, run r at a[i] + r * rs (the kernel rows of a conv window), against B's rows
 * r * kc + k, ldb floats apart. The sum stays in registers across the runs. */
static inline __attribute__((always_inline)) void
cg_micro_ptr(int kc, int nkh, long rs, const float *const a[CG_MR], const float *restrict b, long ldb,
             float *restrict c, int ldc, int mr, int nr, int accumulate)
{
    cg_vf acc[CG_MR][CG_NRV] = { { {0} } };
    for (int r = 0; r < nkh; r++) {
        const float *ar[CG_MR];
#pragma GCC unroll 16
        for (int i = 0; i < CG_MR; i++)
            ar[i] = a[i] + r * rs;
        const float *restrict br = b + (long)r * kc * ldb;
        CG_KLOOP(kc, ar[i][k], br + k * ldb);
    }
    cg_writeback(acc, c, ldc, mr, nr, accumulate);
}

/* C (+)= A B for rows [m0, m1) of C, on one thread with its own packing buffers. */
static inline void cg_gemm_block(int m0, int m1, int j0, int j1, int k0, int k1, cg_pack_a pa, const void *actx,
                                 cg_pack_b pb, const void *bctx, float *C, int ldc, int accumulate,
                                 float *ap, float *bp)
{
    for (int jc = j0; jc < j1; jc += CG_NC) {
        int nc = j1 - jc < CG_NC ? j1 - jc : CG_NC;
        for (int pc = k0; pc < k1; pc += CG_KC) {
            int kc = k1 - pc < CG_KC ? k1 - pc : CG_KC;
            int acc = accumulate || pc > k0;
            pb(bctx, pc, kc, jc, nc, bp);
            for (int ic = m0; ic < m1; ic += CG_MC) {
                int mc = m1 - ic < CG_MC ? m1 - ic : CG_MC;
                pa(actx, ic, mc, pc, kc, ap);
                for (int jr = 0; jr < nc; jr += CG_NR)
                    for (int ir = 0; ir < mc; ir += CG_MR)
                        cg_micro(kc, ap + ir * kc, bp + jr * kc, C + (long)(ic + ir) * ldc + jc + jr, ldc,
                                 mc - ir < CG_MR ? mc - ir : CG_MR, nc - jr < CG_NR ? nc - jr : CG_NR, acc);
            }
        }
    }
}

/* C (+)= A B, this thread's share: a contiguous block of rows or of columns, every element
 * summed over K in the same order, so results do not depend on the thread count. */
CG_API void
cg_gemm_part(int M, int N, int K, cg_pack_a pa, const void *actx, cg_pack_b pb, const void *bctx, float *C,
             int ldc, int accumulate, cg_epi epi, const void *ectx, int t, int nt)
{
    /* Each thread packs the B columns it uses. With B at least as wide as A is tall (a batch
       through a big weight), threads split B's columns, so none packs all of B; otherwise they
       split A's rows. Either way every element of C sums over K in the same order. */
    if (N >= M) {
        long j0, j1;
        cg_share(N, CG_NR, t, nt, &j0, &j1);
        if (j0 < j1) {
            cg_gemm_block(0, M, (int)j0, (int)j1, 0, K, pa, actx, pb, bctx, C, ldc, accumulate, cg_apack,
                          cg_bpack);
            if (epi)
                epi(ectx, C, ldc, M, (int)j0, (int)(j1 - j0));
        }
    } else {
        long m0, m1;
        cg_share(M, CG_MR, t, nt, &m0, &m1);
        if (m0 < m1) {
            cg_gemm_block((int)m0, (int)m1, 0, N, 0, K, pa, actx, pb, bctx, C, ldc, accumulate, cg_apack,
                          cg_bpack);
            if (epi)
                epi(ectx, C + m0 * ldc, ldc, (int)(m1 - m0), 0, N);
        }
    }
}

/* The whole product in one call (for callers whose operands vary at run time; the matmul
 * kernel opens its own region around cg_gemm_part). */
CG_API void cg_gemm(int M, int N, int K, cg_pack_a pa, const void *actx, cg_pack_b pb,
                           const void *bctx, float *C, int ldc, int accumulate, int threads)
{
    (void)threads;
#ifdef _OPENMP
#pragma omp parallel if (threads) num_threads(cg_threads())
#endif
    cg_gemm_part(M, N, K, pa, actx, pb, bctx, C, ldc, accumulate, 0, 0, cg_thread_num(), cg_num_threads());
}

/* ---- packers ---------------------------------------------------------------------------- */

CG_API void cg_pack_a_dense(const void *ctx, int i0, int mc, int p0, int kc, float *out)
{
    const cg_dense *d = ctx;
    for (int s = 0; s < mc; s += CG_MR)
        for (int k = 0; k < kc; k++)
            for (int i = 0; i < CG_MR; i++)
                *out++ = s + i < mc ? d->p[(long)(i0 + s + i) * d->rs + (long)(p0 + k) * d->cs] : 0.f;
}

CG_API void cg_pack_b_dense(const void *ctx, int p0, int kc, int j0, int nc, float *out)
{
    const cg_dense *d = ctx;
    for (int s = 0; s < nc; s += CG_NR, out += (long)kc * CG_NR) {
        int cols = nc - s < CG_NR ? nc - s : CG_NR;
        if (d->cs == 1) {                        /* rows of B are contiguous: copy NR at a time */
            for (int k = 0; k < kc; k++) {
                const float *row = d->p + (long)(p0 + k) * d->rs + j0 + s;
                float *o = out + (long)k * CG_NR;
                memcpy(o, row, (size_t)cols * sizeof(float));
                if (cols < CG_NR)
                    memset(o + cols, 0, (size_t)(CG_NR - cols) * sizeof(float));
            }
        } else {                                 /* B^T stored: walk each column along k */
            for (int j = 0; j < CG_NR; j++) {
                if (j >= cols) {
                    for (int k = 0; k < kc; k++) out[(long)k * CG_NR + j] = 0.f;
                    continue;
                }
                const float *col = d->p + (long)(j0 + s + j) * d->cs + (long)p0 * d->rs;
                for (int k = 0; k < kc; k++) out[(long)k * CG_NR + j] = col[(long)k * d->rs];
            }
        }
    }
}

/* The few-row product with B's rows contiguous, thread t's share: B streamed once, from
 * memory, threads taking contiguous slices of B's rows (K) so each reads one sequential block,
 * eight rows at a time against all M rows of A, into its own partial C (thread 0 into C, the
 * others into their packing buffers); the partials are then added in thread order, so the
 * result is the same for a given thread count. Every thread must call it (it has a barrier).
 * The matmul kernel opens the region itself, so the sizes are constants here. */
CG_API void
cg_gemm_small_m_part(int M, int N, int K, const cg_dense *A, const cg_dense *B, float *C, int ldc, cg_epi epi,
                     const void *ectx, int t, int nt)
{
    long k0, k1;
    cg_share(K, 1, t, nt, &k0, &k1);
    float *const *team = cg_team_bpacks(t);
    float *dst = t == 0 ? C : cg_bpack;
    const int ld = t == 0 ? ldc : N;
    for (int i = 0; i < M; i++)
        memset(dst + (long)i * ld, 0, (size_t)N * sizeof(float));
    /* Eight rows of B at a time: eight streams in flight per thread keep more misses
       outstanding, and C is read and written once per eight rows. Against a 4608 x 1024 B
       with 8-16 MB of other traffic between calls (so from memory, as in a model), eight
       rows took 122-137 us where four took 141-168 (the same where B stays in L3). */
    const int k8 = k0 + (k1 - k0) / 8 * 8;
    const long rs = B->rs, cs = A->cs;
    for (int k = k0; k < k8; k += 8) {
        const float *b0 = B->p + (long)k * rs;
        for (int i = 0; i < M; i++) {
            const float *a = A->p + (long)i * A->rs + (long)k * cs;
            const float a0 = a[0], a1 = a[cs], a2 = a[2 * cs], a3 = a[3 * cs], a4 = a[4 * cs], a5 = a[5 * cs],
                        a6 = a[6 * cs], a7 = a[7 * cs];
            float *restrict c = dst + (long)i * ld;
            for (int j = 0; j < N; j++)
                c[j] += (a0 * b0[j] + a1 * b0[rs + j] + a2 * b0[2 * rs + j] + a3 * b0[3 * rs + j]) +
                        (a4 * b0[4 * rs + j] + a5 * b0[5 * rs + j] + a6 * b0[6 * rs + j] + a7 * b0[7 * rs + j]);
        }
    }
    for (int k = k8; k < k1; k++) {
        const float *b0 = B->p + (long)k * rs;
        for (int i = 0; i < M; i++) {
            const float a0 = A->p[(long)i * A->rs + (long)k * cs];
            float *restrict c = dst + (long)i * ld;
            for (int j = 0; j < N; j++) c[j] += a0 * b0[j];
        }
    }
#ifdef _OPENMP
#pragma omp barrier
#endif
    long j0, j1;
    cg_share(N, 1, t, nt, &j0, &j1);
    for (int u = 1; u < nt; u++)
        cg_add_block(C, ldc, team[u], N, 0, M, j0, j1);
    if (epi && j0 < j1)
        epi(ectx, C, ldc, M, j0, j1 - j0);
}

/* C = A B for a few rows of A (M < MR: batch-1 inference), no packing: with B's rows
 * contiguous, cg_gemm_small_m_part in a region of its own (generated matmuls open theirs);
 * a narrow B in registers; with B's columns contiguous (transpose_b), dot products. */
CG_API void cg_gemm_small_m(int M, int N, int K, const cg_dense *A, const cg_dense *B,
                                   float *C, int ldc, int threads, cg_epi epi, const void *ectx)
{
    if (B->cs != 1) {
#ifdef _OPENMP
#pragma omp parallel for schedule(static) if (threads && N >= 256) num_threads(cg_threads())
#endif
        for (int j = 0; j < N; j++) {
            const float *b = B->p + (long)j * B->cs;
            for (int i = 0; i < M; i++) {
                float sum = 0.f;
                for (int k = 0; k < K; k++) sum += A->p[(long)i * A->rs + (long)k * A->cs] * b[(long)k * B->rs];
                C[(long)i * ldc + j] = sum;
            }
        }
        if (epi)
            epi(ectx, C, ldc, M, 0, N);
        return;
    }
    if (N <= CG_VL) {
        /* A narrow product (a few classes): one vector per row of C, across its columns, summed
           in registers over K (four accumulators in flight). Full-vector loads of B's rows are
           used only where they stay inside B; the last rows are added one value at a time. */
        const long rs = B->rs, cs = A->cs;
        const long safe = K - 1 - (CG_VL - N + rs - 1) / rs;      /* last row with a safe load */
        for (int i = 0; i < M; i++) {
            const float *a = A->p + (long)i * A->rs;
            cg_vf acc0 = {0}, acc1 = {0}, acc2 = {0}, acc3 = {0};
            long k = 0;
            for (; k + 3 <= safe; k += 4) {
                acc0 += a[k * cs] * cg_load(B->p + k * rs);
                acc1 += a[(k + 1) * cs] * cg_load(B->p + (k + 1) * rs);
                acc2 += a[(k + 2) * cs] * cg_load(B->p + (k + 2) * rs);
                acc3 += a[(k + 3) * cs] * cg_load(B->p + (k + 3) * rs);
            }
            for (; k <= safe; k++)
                acc0 += a[k * cs] * cg_load(B->p + k * rs);
            float row[CG_VL];
            cg_store(row, (acc0 + acc1) + (acc2 + acc3));
            for (; k < K; k++)
                for (int j = 0; j < N; j++) row[j] += a[k * cs] * B->p[k * rs + j];
            for (int j = 0; j < N; j++) C[(long)i * ldc + j] = row[j];
        }
        if (epi)
            epi(ectx, C, ldc, M, 0, N);
        return;
    }
    const int split = threads && cg_small_m_split(M, N, K);
    (void)split;
#ifdef _OPENMP
#pragma omp parallel num_threads(cg_threads()) if (split)
#endif
    cg_gemm_small_m_part(M, N, K, A, B, C, ldc, epi, ectx, cg_thread_num(), cg_num_threads());
}

CG_API void cg_pack_b_filt_rot(const void *ctx, int p0, int kc, int j0, int nc, float *out)
{
    const cg_filt_rot *g = ctx;
    for (int s = 0; s < nc; s += CG_NR)
        for (int k = p0; k < p0 + kc; k++) {
            int tap = k / g->OC, oc = k - tap * g->OC, a = tap / g->KW, b = tap % g->KW;
            const float *base = g->f + ((long)(g->KH - 1 - a) * g->KW + (g->KW - 1 - b)) * g->C * g->OC + oc;
            for (int j = 0; j < CG_NR; j++)
                *out++ = s + j < nc ? base[(long)(j0 + s + j) * g->OC] : 0.f;
        }
}

/* Where output pixel p's window starts in the padded input (Hp x Wp per image). */
static inline const float *cg_window(const cg_conv *g, const float *xpad, int Hp, int Wp, int p)
{
    int n = p / (g->OH * g->OW), r = p % (g->OH * g->OW);
    return xpad + (long)n * Hp * Wp * g->C + ((long)(r / g->OW) * g->SH * Wp + (long)(r % g->OW) * g->SW) * g->C;
}

/* Copy this thread's share of g->x's rows into xpad, with the zero border that makes every
 * window of the conv lie inside (Hp x Wp per image). Threads split the padded rows of all
 * images, so a batch of one is shared too. */
static inline void cg_pad_input(const cg_conv *g, int batch, float *xpad, int Hp, int Wp, int t, int nt)
{
    const long img = (long)Hp * Wp * g->C;
    long r0, r1;
    cg_share((long)batch * Hp, 1, t, nt, &r0, &r1);
    for (long row = r0; row < r1; row++) {
        const int n = (int)(row / Hp), y = (int)(row % Hp);
        /* one padded row: left border, the image row (contiguous in NHWC), right border */
        float *dst = xpad + n * img + (long)y * Wp * g->C;
        const int iy = y - g->PT;
        const int lo = g->PL < Wp ? g->PL : Wp;                       /* columns before the image */
        const int hi = g->PL + g->W < Wp ? g->PL + g->W : Wp;          /* end of the image columns */
        if (iy < 0 || iy >= g->H || hi <= lo) {
            memset(dst, 0, (size_t)Wp * g->C * sizeof(float));
            continue;
        }
        memset(dst, 0, (size_t)lo * g->C * sizeof(float));
        memcpy(dst + (long)lo * g->C, g->x + (((long)n * g->H + iy) * g->W + (lo - g->PL)) * g->C,
               (size_t)(hi - lo) * g->C * sizeof(float));
        memset(dst + (long)hi * g->C, 0, (size_t)(Wp - hi) * g->C * sizeof(float));
    }
}

/* conv2d forward without packing A. The input is first copied into `xpad` with its zero
 * border, so every window lies inside; in NHWC the KW*C values of one kernel row of a window
 * are then contiguous, and a micro-tile reads its MR output pixels' rows through pointers.
 * K is walked by kernel rows (kh), short ones several to a call; B (the filter, as rows
 * (kh, kw, c)) comes through a packer, or is read as it is (bdirect). Threads split the
 * output pixels. */
CG_API void
cg_conv_direct_part(const cg_conv *g, int batch, cg_pack_b pb, const void *bctx, const float *bdirect, int OC,
                    float *out, float *xpad, cg_epi epi, const void *ectx, int t, int nt)
{
    const int Hp = (g->OH - 1) * g->SH + g->KH, Wp = (g->OW - 1) * g->SW + g->KW;
    /* K is walked by kernel rows (KW*C values each); when the window spans the whole padded
       width (textcnn's 50-wide word vectors) its rows are adjacent, so one run */
    const int whole_rows = (long)Wp * g->C == (long)g->KW * g->C;
    const int KH = whole_rows ? 1 : g->KH, rowlen = whole_rows ? g->KH * g->KW * g->C : g->KW * g->C;
    const int M = batch * g->OH * g->OW;
    const int K = KH * rowlen, panels = (OC + CG_NR - 1) / CG_NR;
    /* When the whole filter fits one packing buffer (it does for typical convs), it is
       packed once per call and each (kh, kk) slice addressed inside it: with at least a
       panel per thread, the threads pack it together, each its share of the panels, into
       thread 0's buffer; with fewer (textcnn's 10 channels) each packs its own copy, which
       is as fast and keeps the panel in the core that reads it. Either happens before the
       barrier the zero-border copy needs anyway. Otherwise each thread packs slice by slice.
       bdirect: the filter as rows of OC floats, which the caller says the micro-kernel may
       read as they are (OC a multiple of the panel width, CG_NR, and rows short
       enough for the caches): then nothing is packed at all. */
    const int direct = bdirect != 0;
    const int whole = !direct && OC <= CG_NC && (long)K * panels * CG_NR <= CG_KC * (CG_NC + CG_NR);
    const int shared = whole && panels >= nt;
    float *bp = shared ? cg_team_buffer(cg_bpack) : cg_bpack;
    cg_pad_input(g, batch, xpad, Hp, Wp, t, nt);
    if (shared) {
        long p0, p1;
        cg_share(panels, 1, t, nt, &p0, &p1);
        if (p0 < p1)
            pb(bctx, 0, K, (int)p0 * CG_NR, (p1 * CG_NR < OC ? (int)p1 * CG_NR : OC) - (int)p0 * CG_NR,
               bp + p0 * CG_NR * K);
    } else if (whole) {
        pb(bctx, 0, K, 0, OC, bp);
    }
#ifdef _OPENMP
#pragma omp barrier
#endif
    long tm0, tm1;
    cg_share(M, CG_MR, t, nt, &tm0, &tm1);
    const int m0 = (int)tm0, m1 = (int)tm1;
    const float *base[CG_MC + CG_MR];
    /* Kernel rows go several to a micro-kernel call, so the tile is not written back (and
       read again) after each one. A filter read in place or packed whole has no slice size
       to respect: every row of the window goes in one call, the sum staying in registers
       (flowers b1 conv2, 5 rows of 160: 594 -> 574 us). A filter packed slice by slice takes
       up to CG_KC values a call (an RGB input's 5 x 3). Rows longer than CG_KC go in pieces. */
    const int span = rowlen > CG_KC ? 1 : direct || whole ? KH : CG_KC / rowlen < KH ? CG_KC / rowlen : KH;
    for (int jc = 0; jc < OC && m0 < m1; jc += CG_NC) {
        int nc = OC - jc < CG_NC ? OC - jc : CG_NC;
        for (int ic = m0; ic < m1; ic += CG_MC) {
            int mc = m1 - ic < CG_MC ? m1 - ic : CG_MC;
            for (int i = 0; i < mc + CG_MR; i++)       /* rows past mc repeat the last pixel */
                base[i] = cg_window(g, xpad, Hp, Wp, ic + (i < mc ? i : mc - 1));
            for (int kh = 0; kh < KH; kh += span)
                for (int kk = 0; kk < rowlen; kk += CG_KC) {
                    int kc = rowlen - kk < CG_KC ? rowlen - kk : CG_KC, k0 = kh * rowlen + kk;
                    int nkh = KH - kh < span ? KH - kh : span;
                    int acc = kh > 0 || kk > 0;
                    if (!whole && !direct)
                        pb(bctx, k0, nkh * kc, jc, nc, bp);
                    const long off = (long)kh * Wp * g->C + kk;
                    for (int jr = 0; jr < nc; jr += CG_NR) {
                        const float *bpanel = direct ? bdirect + (long)k0 * OC + jc + jr :
                            whole ? bp + (long)jr * K + (long)k0 * CG_NR : bp + (long)jr * nkh * kc;
                        for (int ir = 0; ir < mc; ir += CG_MR) {
                            const float *rows[CG_MR];
                            for (int i = 0; i < CG_MR; i++) rows[i] = base[ir + i] + off;
                            /* nkh is the constant 1 when rows go one at a time */
                            cg_micro_ptr(kc, span == 1 ? 1 : nkh, (long)Wp * g->C, rows, bpanel,
                                         direct ? OC : CG_NR, out + (long)(ic + ir) * OC + jc + jr, OC,
                                         mc - ir < CG_MR ? mc - ir : CG_MR, nc - jr < CG_NR ? nc - jr : CG_NR, acc);
                        }
                    }
                }
            if (epi)
                epi(ectx, out + (long)ic * OC, OC, mc, jc, nc);
        }
    }
}

/* The whole conv in one call (the kernel tests use it; generated kernels open their own
 * region around cg_conv_direct_part, with the geometry constant inside it). */
CG_API void cg_conv_direct(const cg_conv *g, int batch, cg_pack_b pb, const void *bctx,
                                  const float *bdirect, int OC, float *out, float *xpad, int threads)
{
    (void)threads;
#ifdef _OPENMP
#pragma omp parallel num_threads(cg_threads()) if (threads)
#endif
    cg_conv_direct_part(g, batch, pb, bctx, bdirect, OC, out, xpad, 0, 0, cg_thread_num(), cg_num_threads());
}

/* As cg_micro, but column k of A is MR consecutive floats at cols[k] + off (no packing). */
static inline void cg_micro_cols(int kc, const float *const *cols, long off, const float *restrict b,
                                 float *restrict c, int ldc, int mr, int nr, int accumulate)
{
    cg_vf acc[CG_MR][CG_NRV] = { { {0} } };
    CG_KLOOP(kc, cols[k][off + i], b + k * CG_NR);
    cg_writeback(acc, c, ldc, mr, nr, accumulate);
}

/* As cg_micro_cols, but row i of the tile is at cols[k] + off[i]: a tile that spans two
 * kernel rows of the window. */
static inline void cg_micro_gather(int kc, const float *const *cols, const long off[CG_MR],
                                   const float *restrict b, float *restrict c, int ldc, int mr, int nr,
                                   int accumulate)
{
    cg_vf acc[CG_MR][CG_NRV] = { { {0} } };
    long o[CG_MR];
#pragma GCC unroll 16
    for (int i = 0; i < CG_MR; i++)
        o[i] = off[i];
    CG_KLOOP(kc, cols[k][o[i]], b + k * CG_NR);
    cg_writeback(acc, c, ldc, mr, nr, accumulate);
}

/* conv2d filter gradient without packing A: df[(kh, kw, c), oc] = sum over pixels p of
 * xpad_window(p)[kh][(kw, c)] * dy[p, oc]. For one pixel and kernel row the (kw, c) values are
 * contiguous in xpad, so the micro-kernel reads MR rows of A from one pointer per pixel. The
 * pixels are split among threads, each summing into its own partial (thread 0 into df); the
 * partials are added in thread order: deterministic for a given thread count. `xpad` holds the
 * padded input plus MR floats of slack; `partials` (CG_MAX_THREADS - 1) filter-sized blocks. */
CG_API void
cg_conv_filter_grad_part(const cg_conv *g, int batch, const float *dy, int OC, float *df, float *xpad,
                         float *partials, int t, int nt)
{
    const int Hp = (g->OH - 1) * g->SH + g->KH, Wp = (g->OW - 1) * g->SW + g->KW;
    const long img = (long)Hp * Wp * g->C;
    const int rowlen = g->KW * g->C, rows = g->KH * rowlen, P = batch * g->OH * g->OW;
    cg_pad_input(g, batch, xpad, Hp, Wp, t, nt);
    if (t == nt - 1)                   /* slack: read, then discarded, by the last row tiles */
        memset(xpad + batch * img, 0, CG_MR * sizeof(float));
#ifdef _OPENMP
#pragma omp barrier
#endif
    long tk0, tk1;
    cg_share(P, CG_KC, t, nt, &tk0, &tk1);
    const int k0 = (int)tk0, k1 = (int)tk1;
    float *dst = t == 0 ? df : partials + (long)(t - 1) * rows * OC;
    if (k0 >= k1)
        memset(dst, 0, (size_t)rows * OC * sizeof(float));
    float *bp = cg_bpack;
    const float *cols[CG_KC];
    for (int pc = k0; pc < k1; pc += CG_KC) {
        int kc = k1 - pc < CG_KC ? k1 - pc : CG_KC;
        for (int k = 0; k < kc; k++)
            cols[k] = cg_window(g, xpad, Hp, Wp, pc + k);
        for (int jc = 0; jc < OC; jc += CG_NC) {
            int nc = OC - jc < CG_NC ? OC - jc : CG_NC;
            cg_dense b = {.p = dy, .rs = OC, .cs = 1};
            cg_pack_b_dense(&b, pc, kc, jc, nc, bp);
            for (int jr = 0; jr < nc; jr += CG_NR)   /* one B panel stays in L1 while A streams */
                /* Tiles of MR filter rows (kh, kw, c) run across kernel rows, so a short
                   row (kw * c = 15 for an RGB input) does not leave most of a tile empty. */
                for (int r0 = 0; r0 < rows; r0 += CG_MR) {
                    const int kh = r0 / rowlen, mr = rows - r0 < CG_MR ? rows - r0 : CG_MR;
                    float *c = dst + (long)r0 * OC + jc + jr;
                    const int nr = nc - jr < CG_NR ? nc - jr : CG_NR;
                    if (r0 % rowlen + mr <= rowlen) {      /* within one kernel row: contiguous */
                        cg_micro_cols(kc, cols, (long)kh * Wp * g->C + r0 % rowlen, bp + (long)jr * kc,
                                      c, OC, mr, nr, pc > k0);
                        continue;
                    }
                    long off[CG_MR];
                    for (int i = 0; i < CG_MR; i++) {
                        const int r = r0 + i < rows ? r0 + i : rows - 1;
                        off[i] = (long)(r / rowlen) * Wp * g->C + r % rowlen;
                    }
                    cg_micro_gather(kc, cols, off, bp + (long)jr * kc, c, OC, mr, nr, pc > k0);
                }
        }
    }
#ifdef _OPENMP
#pragma omp barrier
#endif
    long r0, r1;
    cg_share(rows, 1, t, nt, &r0, &r1);
    for (int u = 1; u < nt; u++)
        cg_add_block(df, OC, partials + (long)(u - 1) * rows * OC, OC, r0, r1, 0, OC);
}

CG_API void cg_conv_filter_grad(const cg_conv *g, int batch, const float *dy, int OC, float *df,
                                       float *xpad, float *partials, int threads)
{
    (void)threads;
#ifdef _OPENMP
#pragma omp parallel num_threads(cg_threads()) if (threads)
#endif
    cg_conv_filter_grad_part(g, batch, dy, OC, df, xpad, partials, cg_thread_num(), cg_num_threads());
}

CG_API void cg_pack_a_dygather(const void *ctx, int i0, int mc, int p0, int kc, float *out)
{
    const cg_convt *g = ctx;
    const int hw = g->H * g->W, rowlen = g->OC;
    for (int s = 0; s < mc; s += CG_MR) {
        int nn[CG_MR], ih[CG_MR], iw[CG_MR], valid[CG_MR];
        for (int i = 0; i < CG_MR; i++) {
            int m = i0 + s + i;
            valid[i] = s + i < mc;
            nn[i] = m / hw; int r = m - nn[i] * hw;
            ih[i] = r / g->W, iw[i] = r % g->W;
        }
        for (int k = p0; k < p0 + kc;) {
            int tap = k / rowlen, off = k - tap * rowlen, kh = tap / g->KW, kw = tap % g->KW;
            int run = rowlen - off < p0 + kc - k ? rowlen - off : p0 + kc - k;
            if (run > CG_ZLEN) run = CG_ZLEN;
            const float *row[CG_MR];
            for (int i = 0; i < CG_MR; i++) {
                int th = ih[i] + g->PT - kh, tw = iw[i] + g->PL - kw;
                int oh = g->SH == 1 ? th : th / g->SH, ow = g->SW == 1 ? tw : tw / g->SW;
                int hit = valid[i] && th >= 0 && tw >= 0 && (g->SH == 1 || th % g->SH == 0) &&
                          (g->SW == 1 || tw % g->SW == 0) && oh < g->OH && ow < g->OW;
                row[i] = hit ? g->dy + (((long)nn[i] * g->OH + oh) * g->OW + ow) * g->OC + off : cg_zero;
            }
            cg_gather_rows(row, run, out + (long)(k - p0) * CG_MR);
            k += run;
        }
        out += (long)kc * CG_MR;
    }
}

CG_API void cg_pack_b_filt_t(const void *ctx, int p0, int kc, int j0, int nc, float *out)
{
    const cg_filt *g = ctx;
    for (int s = 0; s < nc; s += CG_NR)
        for (int k = p0; k < p0 + kc; k++) {
            int tap = k / g->OC, oc = k - tap * g->OC;
            const float *base = g->f + (long)tap * g->C * g->OC + oc;
            for (int j = 0; j < CG_NR; j++)
                *out++ = s + j < nc ? base[(long)(j0 + s + j) * g->OC] : 0.f;
        }
}

/* ---- dilated convolution (cg_conv_dil: gemm_api.h) ------------------------------------ */

/* A = the windows: row m = output pixel (n, oy, ox), column k = (kh, kw, c). */
CG_API void cg_pack_a_dil_windows(const void *ctx, int i0, int mc, int p0, int kc, float *out)
{
    const cg_conv_dil *g = ctx;
    const int ohw = g->OH * g->OW;
    for (int s = 0; s < mc; s += CG_MR) {
        int nn[CG_MR], y0[CG_MR], x0[CG_MR], valid[CG_MR];
        for (int i = 0; i < CG_MR; i++) {
            const int m = i0 + s + i, r = m % ohw;
            valid[i] = s + i < mc;
            nn[i] = m / ohw, y0[i] = r / g->OW * g->SH - g->PT, x0[i] = r % g->OW * g->SW - g->PL;
        }
        for (int k = p0; k < p0 + kc;) {
            const int tap = k / g->C, c = k - tap * g->C, kh = tap / g->KW, kw = tap % g->KW;
            int run = g->C - c < p0 + kc - k ? g->C - c : p0 + kc - k;
            if (run > CG_ZLEN) run = CG_ZLEN;
            const float *row[CG_MR];
            for (int i = 0; i < CG_MR; i++) {
                const int y = y0[i] + kh * g->DH, xx = x0[i] + kw * g->DW;
                row[i] = valid[i] && y >= 0 && y < g->H && xx >= 0 && xx < g->W
                    ? g->x + (((long)nn[i] * g->H + y) * g->W + xx) * g->C + c : cg_zero;
            }
            cg_gather_rows(row, run, out + (long)(k - p0) * CG_MR);
            k += run;
        }
        out += (long)kc * CG_MR;
    }
}

/* A = the windows transposed, for the filter gradient df = A dy: row m = (kh, kw, c),
 * column k = output pixel (n, oy, ox). */
CG_API void cg_pack_a_dil_windows_t(const void *ctx, int i0, int mc, int p0, int kc, float *out)
{
    const cg_conv_dil *g = ctx;
    const int ohw = g->OH * g->OW;
    for (int s = 0; s < mc; s += CG_MR) {
        int dy[CG_MR], dx[CG_MR], ch[CG_MR], valid[CG_MR];
        for (int i = 0; i < CG_MR; i++) {
            const int m = i0 + s + i, tap = m / g->C;
            valid[i] = s + i < mc;
            dy[i] = tap / g->KW * g->DH, dx[i] = tap % g->KW * g->DW, ch[i] = m - tap * g->C;
        }
        for (int k = p0; k < p0 + kc; k++) {
            const int n = k / ohw, r = k % ohw;
            const int y0 = r / g->OW * g->SH - g->PT, x0 = r % g->OW * g->SW - g->PL;
            const float *img = g->x + (long)n * g->H * g->W * g->C;
            for (int i = 0; i < CG_MR; i++) {
                const int y = y0 + dy[i], xx = x0 + dx[i];
                *out++ = valid[i] && y >= 0 && y < g->H && xx >= 0 && xx < g->W
                    ? img[((long)y * g->W + xx) * g->C + ch[i]] : 0.f;
            }
        }
    }
}

/* A = gather(dy) for the input gradient dx = A f^T: row m = input pixel (n, y, x), column
 * k = (kh, kw, oc) holds dy at the output pixel whose tap (kh, kw) lands on (y, x), or 0.
 * Here g->x is dy [batch, OH, OW, OC]. */
CG_API void cg_pack_a_dil_dygather(const void *ctx, int i0, int mc, int p0, int kc, float *out)
{
    const cg_conv_dil *g = ctx;
    const int hw = g->H * g->W;
    for (int s = 0; s < mc; s += CG_MR) {
        int nn[CG_MR], ty[CG_MR], tx[CG_MR], valid[CG_MR];
        for (int i = 0; i < CG_MR; i++) {
            const int m = i0 + s + i, r = m % hw;
            valid[i] = s + i < mc;
            nn[i] = m / hw, ty[i] = r / g->W + g->PT, tx[i] = r % g->W + g->PL;
        }
        for (int k = p0; k < p0 + kc;) {
            const int tap = k / g->OC, o = k - tap * g->OC, kh = tap / g->KW, kw = tap % g->KW;
            int run = g->OC - o < p0 + kc - k ? g->OC - o : p0 + kc - k;
            if (run > CG_ZLEN) run = CG_ZLEN;
            const float *row[CG_MR];
            for (int i = 0; i < CG_MR; i++) {
                const int th = ty[i] - kh * g->DH, tw = tx[i] - kw * g->DW;
                const int oy = th / g->SH, ox = tw / g->SW;
                const int hit = valid[i] && th >= 0 && tw >= 0 && th % g->SH == 0 && tw % g->SW == 0 &&
                                oy < g->OH && ox < g->OW;
                row[i] = hit ? g->x + (((long)nn[i] * g->OH + oy) * g->OW + ox) * g->OC + o : cg_zero;
            }
            cg_gather_rows(row, run, out + (long)(k - p0) * CG_MR);
            k += run;
        }
        out += (long)kc * CG_MR;
    }
}
