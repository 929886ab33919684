/*
 * fl_small.c -- products with few rows, without the BLAS.
 *
 * The per-step recurrent product has only B (active) rows but is repeated T
 * times with the same weights. A BLAS call re-packs the weights every time
 * and costs more than the arithmetic at small B; here the weights are packed
 * once per call into panels (fl_pack_panels: w_hh^T for the forward, w_hh
 * for the backward) and blocks of C stay in registers (fl_panel_gemm).
 * fl_small_gemm serves products of a few rows on unpacked weights (single
 * steps, where packing would cost more than it saves).
 * Compiled once per element type and instruction set (see fl_template.h).
 */
#ifndef FL_REAL
#define FL_TEMPLATE_FILE "fl_small.c"
#define FL_TEMPLATE_ISA
#include "fl_template.h"
#else
#include "fl_kernel.h"

#ifndef FL_ALWAYS_INLINE
#if defined(__GNUC__)
#define FL_ALWAYS_INLINE static inline __attribute__((always_inline))
#else
#define FL_ALWAYS_INLINE static inline
#endif
#endif

/* one register of FL_REAL for this instruction set (GCC/Clang vector
 * extensions; loads and stores go through memcpy, so no alignment needed) */
typedef FL_REAL FL_INAME(fl_vec) __attribute__((vector_size(FL_VEC_BYTES)));
#define FL_VL (FL_VEC_BYTES / (int)sizeof(FL_REAL))

/* A register loaded from p: as a value, not by memcpy into an element of an
 * array of registers (GCC merged a loop of such memcpys into one copy to the
 * stack, and then kept every accumulator there: the AVX2 panel product ran
 * 6x slower than the AVX-512 one). */
FL_ALWAYS_INLINE FL_INAME(fl_vec) FL_INAME(vload)(const FL_REAL *p)
{
    FL_INAME(fl_vec) v;
    memcpy(&v, p, sizeof v);
    return v;
}

/* acc[r][j] = 0 for the rows r < n of an R x C array of registers, one
 * register at a time: a memset of the whole array (rows past n too)
 * compiled to a rep stos of it on the stack, before every block. */
#define FL_ZERO_ACC(acc, R, C, n)                \
    for (int r_ = 0; r_ < (R); r_++)             \
        if (r_ < (n))                            \
            for (int j_ = 0; j_ < (C); j_++)     \
                (acc)[r_][j_] = (FL_INAME(fl_vec)){0}
#define FL_MR 4 /* rows per block */
#define FL_NR 2 /* registers of columns per block: 4 x 2 accumulators */

/* C[m0..m0+mr, n0..n0+NR*VL] (=|+=) A[m0.., :] @ B[:, n0..]; mr in 1..FL_MR */
static inline void FL_INAME(block)(int mr, int K, const FL_REAL *restrict A, int lda,
                                   const FL_REAL *restrict B, int ldb, int accumulate,
                                   FL_REAL *restrict C, int ldc)
{
    FL_INAME(fl_vec) acc[FL_MR][FL_NR], b[FL_NR], t;
    FL_ZERO_ACC(acc, FL_MR, FL_NR, mr);
    for (int k = 0; k < K; k++) {
        for (int j = 0; j < FL_NR; j++)
            b[j] = FL_INAME(vload)(B + (size_t)k * ldb + j * FL_VL);
        for (int r = 0; r < FL_MR; r++) {
            if (r < mr) {
                FL_REAL ark = A[(size_t)r * lda + k];
                for (int j = 0; j < FL_NR; j++)
                    acc[r][j] += ark * b[j];
            }
        }
    }
    for (int r = 0; r < mr && r < FL_MR; r++)
        for (int j = 0; j < FL_NR; j++) {
            FL_REAL *c = C + (size_t)r * ldc + j * FL_VL;
            if (accumulate) {
                memcpy(&t, c, sizeof t);
                acc[r][j] += t;
            }
            memcpy(c, &acc[r][j], sizeof t);
        }
}

/* Sum of the lanes of v, as a tree (short dependency chains): the upper
 * half added to the lower half until one lane is left. Where the compiler
 * has __builtin_shufflevector (Clang, GCC 12+) the halves are swapped in
 * registers; otherwise through memory, which costs store-forwarding stalls
 * (they dominated a single B=1 step). Same additions in the same order. */
#if FL_IS_FLOAT
#define FL_LANES (FL_VEC_BYTES / 4)
#else
#define FL_LANES (FL_VEC_BYTES / 8)
#endif
#if defined(__clang__) || (defined(__GNUC__) && __GNUC__ >= 12)
#define FL_SWAP_HALVES(v, ...) (v) += __builtin_shufflevector((v), (v), __VA_ARGS__)
static inline FL_REAL FL_INAME(hsum)(FL_INAME(fl_vec) v)
{
#if FL_LANES == 16
    FL_SWAP_HALVES(v, 8, 9, 10, 11, 12, 13, 14, 15, 0, 1, 2, 3, 4, 5, 6, 7);
    FL_SWAP_HALVES(v, 4, 5, 6, 7, 0, 1, 2, 3, 8, 9, 10, 11, 12, 13, 14, 15);
    FL_SWAP_HALVES(v, 2, 3, 0, 1, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15);
    FL_SWAP_HALVES(v, 1, 0, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15);
#elif FL_LANES == 8
    FL_SWAP_HALVES(v, 4, 5, 6, 7, 0, 1, 2, 3);
    FL_SWAP_HALVES(v, 2, 3, 0, 1, 4, 5, 6, 7);
    FL_SWAP_HALVES(v, 1, 0, 2, 3, 4, 5, 6, 7);
#elif FL_LANES == 4
    FL_SWAP_HALVES(v, 2, 3, 0, 1);
    FL_SWAP_HALVES(v, 1, 0, 2, 3);
#elif FL_LANES == 2
    FL_SWAP_HALVES(v, 1, 0);
#else
#error "unexpected vector width"
#endif
    return v[0];
}
#undef FL_SWAP_HALVES
#else
static inline FL_REAL FL_INAME(hsum)(FL_INAME(fl_vec) v)
{
    FL_REAL t[FL_VL];
    memcpy(t, &v, sizeof t);
    for (int w = FL_VL / 2; w >= 1; w /= 2)
        for (int l = 0; l < w; l++)
            t[l] += t[l + w];
    return t[0];
}
#endif
#undef FL_LANES

/* c[0..3] (=|+=) dot(a, b_r) for the four rows b_r = B + r * ldb, length K */
static inline void FL_INAME(dot4)(int K, const FL_REAL *restrict a,
                                  const FL_REAL *restrict B, int ldb, int accumulate,
                                  FL_REAL *restrict c)
{
    FL_INAME(fl_vec) s[4] = {{0}}, va, vb;
    int k = 0;
    for (; k + FL_VL <= K; k += FL_VL) {
        memcpy(&va, a + k, sizeof va);
        for (int r = 0; r < 4; r++) {
            memcpy(&vb, B + (size_t)r * ldb + k, sizeof vb);
            s[r] += va * vb;
        }
    }
    for (int r = 0; r < 4; r++) {
        FL_REAL acc = FL_INAME(hsum)(s[r]);
        const FL_REAL *b = B + (size_t)r * ldb;
        for (int kk = k; kk < K; kk++)
            acc += a[kk] * b[kk];
        c[r] = accumulate ? c[r] + acc : acc;
    }
}

/*
 * Row-major C (M x N) = A (M x K) @ op(B) + beta C, beta 0 or 1, alpha 1.
 *   trans_b == 0: B is K x N (row stride ldb): register-blocked as above.
 *   trans_b != 0: B is N x K: dot products with a SIMD reduction (a single
 *                 step, where packing B^T would cost more than it saves).
 */
void FL_INAME(fl_small_gemm)(int trans_b, int M, int N, int K, FL_REAL beta,
                             const FL_REAL *restrict A, int lda,
                             const FL_REAL *restrict B, int ldb,
                             FL_REAL *restrict C, int ldc)
{
    const int accumulate = beta != 0;
    if (trans_b) {
        for (int m = 0; m < M; m++) {
            const FL_REAL *a = A + (size_t)m * lda;
            FL_REAL *c = C + (size_t)m * ldc;
            int n = 0;
            for (; n + 4 <= N; n += 4)  /* four independent dot products at a time */
                FL_INAME(dot4)(K, a, B + (size_t)n * ldb, ldb, accumulate, c + n);
            for (; n < N; n++) {
                const FL_REAL *b = B + (size_t)n * ldb;
                FL_REAL acc = 0;
#pragma omp simd reduction(+:acc)
                for (int k = 0; k < K; k++)
                    acc += a[k] * b[k];
                c[n] = accumulate ? c[n] + acc : acc;
            }
        }
        return;
    }
    const int NB = FL_NR * FL_VL;
    int n0 = 0;
    for (; n0 + NB <= N; n0 += NB) {  /* a column strip of B stays in L1 across row blocks */
        int m0 = 0;
        for (; m0 + FL_MR <= M; m0 += FL_MR)
            FL_INAME(block)(FL_MR, K, A + (size_t)m0 * lda, lda, B + n0, ldb, accumulate,
                            C + (size_t)m0 * ldc + n0, ldc);
        if (m0 < M)
            FL_INAME(block)(M - m0, K, A + (size_t)m0 * lda, lda, B + n0, ldb, accumulate,
                            C + (size_t)m0 * ldc + n0, ldc);
    }
    if (n0 < N) {  /* the last columns: rows of B streamed into C */
        int nb = N - n0;
        for (int m = 0; m < M; m++) {
            const FL_REAL *a = A + (size_t)m * lda;
            FL_REAL *c = C + (size_t)m * ldc + n0;
            if (!accumulate)
                memset(c, 0, sizeof(FL_REAL) * (size_t)nb);
            for (int k = 0; k < K; k++) {
                const FL_REAL *b = B + (size_t)k * ldb + n0;
                FL_REAL ak = a[k];
#pragma omp simd
                for (int l = 0; l < nb; l++)
                    c[l] += ak * b[l];
            }
        }
    }
}

/* ---- products with B in panels ----
 * A K x N matrix stored as panels of FL_PW columns (FL_PW * sizeof =
 * fl_panel_bytes(isa) bytes: 128 with AVX-512, 64 otherwise): panel p
 * holds columns p*FL_PW.. as K contiguous rows of FL_PW values (zero past
 * column N). Streaming a panel touches consecutive memory, whatever N is,
 * so large power-of-two row strides cannot make the rows of B fight over
 * the same cache sets. fl_pack_panels (fl_blas.c) builds them, for the
 * level the product runs at. */
#define FL_PANEL_BYTES_ISA FL_PANEL_BYTES_OF_VEC(FL_VEC_BYTES)
#define FL_PW (FL_PANEL_BYTES_ISA / (int)sizeof(FL_REAL))
#define FL_PNR (FL_PANEL_BYTES_ISA / FL_VEC_BYTES)  /* registers per panel row */
/* A block meets FL_PNJ registers of a panel row at a time (a pass): the
 * whole row with AVX-512 and AVX2, half of it with SSE2. With 16
 * registers, 6 rows x 2 (12 accumulators, 2 of B and a broadcast of A)
 * hide the multiply-adds' latency and need 8 loads per 12 of them; 4
 * registers of B would leave room for only 2 rows x 4, with 6 loads per 8. */
#define FL_PNJ 2
#define FL_PJW (FL_PNJ * FL_VL)                 /* columns per pass */
#if FL_VEC_BYTES == 64
#define FL_PMR 14                       /* rows of A per block: 28 accumulators (32 zmm) */
#else
#define FL_PMR 6                        /* rows of A per block: 12 accumulators (16 regs) */
#endif

/* n registers of results to consecutive values at c (= or +=). */
FL_ALWAYS_INLINE void FL_INAME(store_vecs)(int n, FL_INAME(fl_vec) *acc, int accumulate,
                                        FL_REAL *restrict c)
{
    for (int j = 0; j < n; j++) {
        if (accumulate) {
            FL_INAME(fl_vec) t;
            memcpy(&t, c + j * FL_VL, sizeof t);
            acc[j] += t;
        }
        memcpy(c + j * FL_VL, &acc[j], sizeof acc[j]);
    }
}

/* Rows [0, ms) of C[.., 0..nw) (= or +=) the product of mr rows of op(A)
 * with kc rows of one pass of a panel (P: its first column; rows FL_PW
 * apart; nw <= FL_PJW) (ms <= mr: rows past ms are padding). op(A) row r
 * is A[r * lda + k], or with ta A[k * lda + r] (a packed strip is the
 * latter with lda = mr). Inlined with ta and mr constant, so that the
 * accumulators stay in registers. */
FL_ALWAYS_INLINE void FL_INAME(panel_block)(int ta, int mr, int ms, int K, const FL_REAL *restrict A,
                                         int lda, const FL_REAL *restrict P, int accumulate,
                                         int nw, FL_REAL *restrict C, int ldc)
{
    FL_INAME(fl_vec) acc[FL_PMR][FL_PNJ], b[FL_PNJ];
    FL_ZERO_ACC(acc, FL_PMR, FL_PNJ, mr);
#if FL_VEC_BYTES < 64
    /* two k per iteration: with 6 rows x 2 registers, the loop's counter,
     * compare and branch were 4 of every 24 instructions (AVX2 on an AMD
     * Zen 3: the product alone 5-8% faster, LSTM forwards 2-4%; the same
     * multiply-adds in the same order, so the same results). Not measured
     * with AVX-512 (28 multiply-adds per k), so left alone there. */
#pragma GCC unroll 2
#endif
    for (int k = 0; k < K; k++) {
        for (int j = 0; j < FL_PNJ; j++)
            b[j] = FL_INAME(vload)(P + (size_t)k * FL_PW + j * FL_VL);
        for (int r = 0; r < FL_PMR; r++) {
            if (r < mr) {
                FL_REAL ark = ta ? A[(size_t)k * lda + r] : A[(size_t)r * lda + k];
                for (int j = 0; j < FL_PNJ; j++)
                    acc[r][j] += ark * b[j];
            }
        }
    }
    for (int r = 0; r < ms && r < FL_PMR; r++) {
        FL_REAL *c = C + (size_t)r * ldc;
        if (nw == FL_PJW) {  /* a whole pass: vector loads and stores */
            FL_INAME(store_vecs)(FL_PNJ, acc[r], accumulate, c);
            continue;
        }
        FL_REAL out[FL_PJW];
        memcpy(out, acc[r], sizeof out);
        if (accumulate)
            for (int l = 0; l < nw; l++)
                c[l] += out[l];
        else
            memcpy(c, out, sizeof(FL_REAL) * (size_t)nw);
    }
}

/* A packed strip of mr rows (ms of them real) against kc rows of a panel:
 * panel_block with the row count a constant. */
static void FL_INAME(strip_block)(int mr, int ms, int kc, const FL_REAL *restrict a,
                                  const FL_REAL *restrict pk, int acc, int nw,
                                  FL_REAL *restrict C, int ldc)
{
    switch (mr) {
#define FL_STRIP_CASE(n) \
    case n: FL_INAME(panel_block)(1, n, ms, kc, a, n, pk, acc, nw, C, ldc); return;
#if FL_PMR >= 14
    FL_STRIP_CASE(14)
    FL_STRIP_CASE(12)
    FL_STRIP_CASE(10)
    FL_STRIP_CASE(8)
#endif
    FL_STRIP_CASE(6)
    FL_STRIP_CASE(4)
    FL_STRIP_CASE(2)
#undef FL_STRIP_CASE
    default:
        FL_INAME(panel_block)(1, mr, ms, kc, a, mr, pk, acc, nw, C, ldc);
    }
}

/* How the M rows of a block of op(A) are cut into strips: as few as
 * strips of at most FL_PMR rows allow, of near equal, even heights (a zero
 * row pads an odd M), base + 2 rows for the first `extra` strips and base
 * rows for the others. 64 rows: 14, 14, 12, 12, 12, not 14 x 4 + 8; 16
 * rows: 8 + 8, not 14 + 2, whose 4 accumulators could not hide the latency
 * of the multiply-adds. */
FL_ALWAYS_INLINE void FL_INAME(strip_plan)(int M, int *base, int *extra)
{
    const int even = FL_PMR >= 2, Me = even ? M + (M & 1) : M;
    const int n = (Me + FL_PMR - 1) / FL_PMR;
    *base = even ? (Me / n) & ~1 : Me / n;
    *extra = even ? (Me - *base * n) / 2 : 0;
}

/* Copy rows m0 .. m0 + ms of op(A), columns k0 .. k0 + kc, into a strip
 * stored k-major ([k][r], mr values per k; rows ms .. mr are zero). op(A)
 * is A (row stride lda) or with ta the transpose of A. */
static void FL_INAME(pack_strip)(int ta, const FL_REAL *restrict A, int lda, int M, int m0,
                                 int ms, int mr, int k0, int kc, FL_REAL *restrict dst)
{
    const int nv = (mr + FL_VL - 1) / FL_VL;  /* registers per k of the strip */
    if (ta && ms == mr && m0 + nv * FL_VL <= M) {
        /* whole registers: the values past mr of one k land in the next k's
         * slots before those are written (dst has FL_VL values of slack),
         * and past row M of op(A) nothing is read */
        if (nv == 1) {  /* (GCC made a loop over v of any length a call to memcpy) */
            for (int k = 0; k < kc; k++) {
                FL_INAME(fl_vec) t = FL_INAME(vload)(A + (size_t)(k0 + k) * lda + m0);
                memcpy(dst + (size_t)k * mr, &t, sizeof t);
            }
            return;
        }
        for (int k = 0; k < kc; k++) {
            const FL_REAL *a = A + (size_t)(k0 + k) * lda + m0;
            FL_REAL *d = dst + (size_t)k * mr;
            for (int v = 0; v < nv; v++) {
                FL_INAME(fl_vec) t;
                memcpy(&t, a + v * FL_VL, sizeof t);
                memcpy(d + v * FL_VL, &t, sizeof t);
            }
        }
        return;
    }
    if (ta) {  /* (one loop with a select: a memcpy of a few values costs more) */
        for (int k = 0; k < kc; k++) {
            FL_REAL *d = dst + (size_t)k * mr;
            const FL_REAL *a = A + (size_t)(k0 + k) * lda + m0;
            for (int r = 0; r < mr; r++)
                d[r] = r < ms ? a[r] : (FL_REAL)0;
        }
        return;
    }
    int r = 0;
#if FL_HAVE_TILE
    for (; r + FL_TB <= ms; r += FL_TB) {  /* FL_TB rows at a time, k in tiles */
        const FL_REAL *rows[FL_TB];
        for (int i = 0; i < FL_TB; i++)
            rows[i] = A + (size_t)(m0 + r + i) * lda + k0;
        int k = 0;
        for (; k + FL_TB <= kc; k += FL_TB)
            FL_NAME(fl_transpose_tile)(rows, k, dst + (size_t)k * mr + r, (size_t)mr);
        for (; k < kc; k++)
            for (int i = 0; i < FL_TB; i++)
                dst[(size_t)k * mr + r + i] = rows[i][k];
    }
#endif
    for (; r < ms; r++) {
        const FL_REAL *a = A + (size_t)(m0 + r) * lda + k0;
        for (int k = 0; k < kc; k++)
            dst[(size_t)k * mr + r] = a[k];
    }
    for (int r = ms; r < mr; r++)
        for (int k = 0; k < kc; k++)
            dst[(size_t)k * mr + r] = 0;
}

/* Panels one row of A meets at once: enough accumulators (FL_PROW *
 * FL_PNR = 8) to hide the latency of the multiply-adds, few enough to stay
 * in registers. (AVX2 on 128-byte panels: 4 panels were 16 accumulators
 * beside the broadcast of A, and three of them lived on the stack; 2 panels
 * ran 4-14% faster than 4 and 2-5% faster than 3 at batch 1 on an AMD Zen
 * 3. 8 panels, tried on AVX-512, were slower at K = 64: eight streams 8 KiB
 * apart compete for the same sets of L1.) */
#define FL_PROW (8 / FL_PNR)

/* One row of A against np <= FL_PROW panels at once: with a single row, one
 * panel alone would give only FL_PNR accumulators. c receives columns n0..
 * of the row. Inlined with np constant for the common case of FL_PROW. */
FL_ALWAYS_INLINE void FL_INAME(panel_row)(int np, int N, int n0, int K, const FL_REAL *restrict a,
                                       const FL_REAL *restrict P, int accumulate,
                                       FL_REAL *restrict c)
{
    FL_INAME(fl_vec) acc[FL_PROW][FL_PNR];
    FL_ZERO_ACC(acc, FL_PROW, FL_PNR, np);
    const size_t ps = (size_t)K * FL_PW;  /* values per panel */
    int k = 0;
#if FL_VEC_BYTES == 64  /* (32 registers) */
    /* even and odd k into separate accumulators, added at the end: the
     * batch-1 time loop waits on this product every step, and two chains
     * of K/2 multiply-adds take half the latency of one of K */
    FL_INAME(fl_vec) acc2[FL_PROW][FL_PNR];
    FL_ZERO_ACC(acc2, FL_PROW, FL_PNR, FL_PROW);  /* (all rows: no maybe-uninitialized) */
    for (; k + 1 < K; k += 2) {
        FL_REAL ak = a[k], ak1 = a[k + 1];
        for (int q = 0; q < FL_PROW; q++) {
            if (q < np) {
                for (int j = 0; j < FL_PNR; j++) {
                    acc[q][j] += ak * FL_INAME(vload)(P + q * ps + (size_t)k * FL_PW + j * FL_VL);
                    acc2[q][j] += ak1 * FL_INAME(vload)(P + q * ps + (size_t)(k + 1) * FL_PW +
                                                        j * FL_VL);
                }
            }
        }
    }
    for (int q = 0; q < FL_PROW; q++)
        if (q < np)
            for (int j = 0; j < FL_PNR; j++)
                acc[q][j] += acc2[q][j];
#endif
    for (; k < K; k++) {
        FL_REAL ak = a[k];
        for (int q = 0; q < FL_PROW; q++) {
            if (q < np) {
                for (int j = 0; j < FL_PNR; j++) {
                    acc[q][j] += ak * FL_INAME(vload)(P + q * ps + (size_t)k * FL_PW + j * FL_VL);
                }
            }
        }
    }
    for (int q = 0; q < np && q < FL_PROW; q++) {
        int start = n0 + q * FL_PW, nw = N - start < FL_PW ? N - start : FL_PW;
        FL_REAL *cq = c + q * FL_PW;
        if (nw == FL_PW) {  /* a whole panel: vector loads and stores (no copy) */
            FL_INAME(store_vecs)(FL_PNR, acc[q], accumulate, cq);
            continue;
        }
        FL_REAL out[FL_PW];
        memcpy(out, acc[q], sizeof out);
        if (accumulate)
            for (int l = 0; l < nw; l++)
                cq[l] += out[l];
        else
            memcpy(cq, out, sizeof(FL_REAL) * (size_t)nw);
    }
}

static void FL_INAME(panel_rows)(int M, int N, int K, int accumulate, const FL_REAL *restrict A,
                                 int lda, const FL_REAL *restrict P, FL_REAL *restrict C,
                                 int ldc)
{
    const int npan = (N + FL_PW - 1) / FL_PW;
    for (int m = 0; m < M; m++) {
        const FL_REAL *a = A + (size_t)m * lda;
        FL_REAL *c = C + (size_t)m * ldc;
        int p = 0;
        for (; p + FL_PROW <= npan; p += FL_PROW)
            FL_INAME(panel_row)(FL_PROW, N, p * FL_PW, K, a, P + (size_t)p * K * FL_PW,
                                accumulate, c + (size_t)p * FL_PW);
        if (p < npan)
            FL_INAME(panel_row)(npan - p, N, p * FL_PW, K, a, P + (size_t)p * K * FL_PW,
                                accumulate, c + (size_t)p * FL_PW);
    }
}

/* out[k] (= or +=) the sum over the rows of m (rows x cols, row stride ld)
 * of m[i * ld + k]: FL_CS_NV registers of columns at a time, summed in
 * registers down every row (row 0 first: the order of a plain loop, so the
 * same sums). Bias gradients: the column sums of the gate gradients. */
#define FL_CS_NV 8
void FL_INAME(fl_col_sums)(FL_REAL *restrict out, const FL_REAL *restrict m, size_t rows,
                           int cols, int ld, int accumulate)
{
    int k0 = 0;
    for (; k0 + FL_CS_NV * FL_VL <= cols; k0 += FL_CS_NV * FL_VL) {
        FL_INAME(fl_vec) acc[FL_CS_NV];
        for (int j = 0; j < FL_CS_NV; j++)
            acc[j] = accumulate ? FL_INAME(vload)(out + k0 + j * FL_VL) : (FL_INAME(fl_vec)){0};
        for (size_t i = 0; i < rows; i++) {
            const FL_REAL *row = m + i * (size_t)ld + k0;
            for (int j = 0; j < FL_CS_NV; j++)
                acc[j] += FL_INAME(vload)(row + j * FL_VL);
        }
        for (int j = 0; j < FL_CS_NV; j++)
            memcpy(out + k0 + j * FL_VL, &acc[j], sizeof acc[j]);
    }
    for (; k0 + FL_VL <= cols; k0 += FL_VL) {  /* single registers */
        FL_INAME(fl_vec) acc = accumulate ? FL_INAME(vload)(out + k0) : (FL_INAME(fl_vec)){0};
        for (size_t i = 0; i < rows; i++)
            acc += FL_INAME(vload)(m + i * (size_t)ld + k0);
        memcpy(out + k0, &acc, sizeof acc);
    }
    for (; k0 < cols; k0++) {  /* the last few columns */
        FL_REAL acc = accumulate ? out[k0] : (FL_REAL)0;
        for (size_t i = 0; i < rows; i++)
            acc += m[i * (size_t)ld + k0];
        out[k0] = acc;
    }
}
#undef FL_CS_NV

#define FL_KC FL_PANEL_KC
#define FL_MC FL_PANEL_MC
#define FL_KLONG FL_PANEL_KLONG
#define FL_PACK_A_MIN_N 512
/* C (M x N) (= or +=) op(A) (M x K) @ B, B given as panels; op(A) is A
 * (M x K, row stride lda) or, with ta, the transpose of A (K x M). Rows of
 * op(A) are taken FL_MC at a time and copied into strips (strip_plan),
 * stored k-major, so that the kernel reads one contiguous stream of A and
 * the strip stays in L1 beside the chunk of the panel it meets (FL_KC rows
 * of K at a time, FL_KC * FL_PANEL_BYTES_ISA bytes). Without ta the whole
 * block of op(A) (FL_MC x K) is copied once and every panel passes over
 * it; with ta, or a long K (weight gradients: K = N rows of the sequence),
 * chunks of K are outermost and one FL_MC x FL_KC block is copied at a
 * time: read in place, a strip of a transposed A would touch one cache line
 * per k, lda apart, all competing for the same L1 sets. Returns 0 without
 * doing anything when the scratch block cannot be had. */
static int FL_INAME(panel_gemm_packed)(int ta, int M, int N, int K, int accumulate,
                                       const FL_REAL *restrict A, int lda,
                                       const FL_REAL *restrict P, FL_REAL *restrict C, int ldc,
                                       FL_REAL *restrict work)
{
    const int kfirst = ta || K > FL_KLONG;
    const int kstep = kfirst ? FL_KC : (K > 0 ? K : 1);
    /* the strips of a block of at most FL_MC rows span at most one row more
     * (fl_panel_work counts what a block needs) */
    FL_REAL *Ap = work ? work : malloc(sizeof(FL_REAL) * fl_panel_work(ta, M, K));
    if (!Ap)
        return 0;
    for (int mc = 0; mc < M; mc += FL_MC) {
        const int me = M - mc < FL_MC ? M : mc + FL_MC;
        int base, extra;
        FL_INAME(strip_plan)(me - mc, &base, &extra);
        for (int kb = 0; kb < K || kb == 0; kb += kstep) {
            const int kn = kfirst ? (K - kb < FL_KC ? K - kb : FL_KC) : K;  /* K copied */
            /* a strip of mr rows from row m0 on: at Ap + (m0 - mc) * kn, k-major */
            for (int i = 0, m0 = mc, mr; m0 < me; i++, m0 += mr) {
                mr = base + (i < extra ? 2 : 0);
                FL_INAME(pack_strip)(ta, A, lda, M, m0, me - m0 < mr ? me - m0 : mr, mr, kb, kn,
                                     Ap + (size_t)(m0 - mc) * kn);
            }
            for (int n0 = 0; n0 < N; n0 += FL_PJW) {  /* one pass of a panel at a time */
                const FL_REAL *pass = P + (size_t)(n0 / FL_PW) * K * FL_PW + n0 % FL_PW;
                const int nw = N - n0 < FL_PJW ? N - n0 : FL_PJW;
                for (int k0 = kb; k0 < kb + kn || k0 == kb; k0 += FL_KC) {
                    const int kc = kb + kn - k0 < FL_KC ? kb + kn - k0 : FL_KC;
                    const int acc = accumulate || k0 > 0;
                    for (int i = 0, m0 = mc, mr; m0 < me; i++, m0 += mr) {
                        mr = base + (i < extra ? 2 : 0);
                        FL_INAME(strip_block)(mr, me - m0 < mr ? me - m0 : mr, kc,
                                              Ap + (size_t)(m0 - mc) * kn + (size_t)(k0 - kb) * mr,
                                              pass + (size_t)k0 * FL_PW, acc, nw,
                                              C + (size_t)m0 * ldc + n0, ldc);
                    }
                }
            }
        }
    }
    if (!work)
        free(Ap);
    return 1;
}

/* The same product with op(A) read in place, blocks of FL_PMR_IP rows: for
 * few panels (copying A would cost more than it saves), or when no scratch
 * can be had. (Fourteen rows read in place are fourteen streams.) */
#if FL_PMR > 8
#define FL_PMR_IP 8
#else
#define FL_PMR_IP FL_PMR
#endif
/* Its chunks of K: FL_KC rows of a 128-byte panel (48 KiB), or 512 rows
 * of a 64-byte one (32 KiB; AVX2 on an AMD Zen 3: the product 64 x 1024 x
 * 512 alone +6%, the LSTM forward 100x64x512x512 on 2 threads +4% against
 * 384, where K = 512 now takes one chunk and C is written once). */
#if FL_PANEL_BYTES_ISA == 128
#define FL_KC_IP FL_KC
#else
#define FL_KC_IP 512
#endif
FL_ALWAYS_INLINE void FL_INAME(panel_gemm_inplace)(int ta, int M, int N, int K, int accumulate,
                                                const FL_REAL *restrict A, int lda,
                                                const FL_REAL *restrict P,
                                                FL_REAL *restrict C, int ldc)
{
    for (int mc = 0; mc < M; mc += FL_MC)  /* (that block of op(A) stays in L2) */
    for (int n0 = 0; n0 < N; n0 += FL_PJW) {  /* one pass of a panel at a time */
        const FL_REAL *pass = P + (size_t)(n0 / FL_PW) * K * FL_PW + n0 % FL_PW;
        const int nw = N - n0 < FL_PJW ? N - n0 : FL_PJW;
        const int me = M - mc < FL_MC ? M : mc + FL_MC;
        for (int k0 = 0; k0 < K || k0 == 0; k0 += FL_KC_IP) {
            const int kc = K - k0 < FL_KC_IP ? K - k0 : FL_KC_IP;
            const int acc = accumulate || k0 > 0;
            const FL_REAL *pk = pass + (size_t)k0 * FL_PW;
#define FL_A_AT(m) (ta ? A + (size_t)k0 * lda + (m) : A + (size_t)(m) * lda + k0)
            int m0 = mc;
#if FL_PMR_IP == 6
            /* 1 or 2 rows left after the blocks of 6 would run as a block
             * of 2 or 4 accumulators, too few to hide the multiply-adds'
             * latency: the last block of 6 and they run as 4 + 3 or 4 + 4
             * (AVX2, in-process: LSTM forward 100x16x128x128 on 2 threads,
             * 8 rows each, +6%; 100x64x512x512, 32 rows each, +4%) */
            const int rem = (me - mc) % FL_PMR_IP;
            const int full_end = (rem == 1 || rem == 2) && me - mc > FL_PMR_IP
                                 ? me - FL_PMR_IP - rem : me;
#else
            const int full_end = me;
#endif
            for (; m0 + FL_PMR_IP <= full_end; m0 += FL_PMR_IP)
                FL_INAME(panel_block)(ta, FL_PMR_IP, FL_PMR_IP, kc, FL_A_AT(m0), lda, pk, acc,
                                      nw, C + (size_t)m0 * ldc + n0, ldc);
            for (; FL_PMR_IP > 4 && m0 + 4 <= me; m0 += 4)  /* (a copy specialised for 4) */
                FL_INAME(panel_block)(ta, 4, 4, kc, FL_A_AT(m0), lda, pk, acc, nw,
                                      C + (size_t)m0 * ldc + n0, ldc);
            if (m0 < me)
                FL_INAME(panel_block)(ta, me - m0, me - m0, kc, FL_A_AT(m0), lda, pk, acc, nw,
                                      C + (size_t)m0 * ldc + n0, ldc);
#undef FL_A_AT
        }
    }
}

void FL_INAME(fl_panel_gemm)(int trans_a, int M, int N, int K, int accumulate,
                             const FL_REAL *restrict A, int lda, const FL_REAL *restrict P,
                             FL_REAL *restrict C, int ldc, FL_REAL *restrict work)
{
    if (M < 4 && !trans_a) {  /* a row or few (batch 1 streaming): several panels at a time */
        FL_INAME(panel_rows)(M, N, K, accumulate, A, lda, P, C, ldc);
        return;
    }
    /* copying op(A) pays when enough panels meet it and its strips are
     * taller than the blocks read in place; a transposed A is always copied
     * (read in place its lines would be lda apart) */
    int base, extra;
    FL_INAME(strip_plan)(M < FL_MC ? M : FL_MC, &base, &extra);
    if ((trans_a || (N >= FL_PACK_A_MIN_N && base + (extra ? 2 : 0) > FL_PMR_IP)) &&
        FL_INAME(panel_gemm_packed)(trans_a, M, N, K, accumulate, A, lda, P, C, ldc, work))
        return;
    if (trans_a)
        FL_INAME(panel_gemm_inplace)(1, M, N, K, accumulate, A, lda, P, C, ldc);
    else
        FL_INAME(panel_gemm_inplace)(0, M, N, K, accumulate, A, lda, P, C, ldc);
}
#undef FL_MC
#undef FL_KC
#undef FL_KC_IP
#undef FL_KLONG
#undef FL_PACK_A_MIN_N
#undef FL_PMR_IP

#undef FL_PNR
#undef FL_PW
#undef FL_PANEL_BYTES_ISA
#undef FL_PNJ
#undef FL_PJW
#undef FL_PMR
#undef FL_PROW
#undef FL_VL
#undef FL_MR
#undef FL_NR
#undef FL_ZERO_ACC
#endif
