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
#define FL_MR 4 /* rows per block */
#define FL_NR 2 /* registers of columns per block: 4 x 2 accumulators */

/* C[m0..m0+mr, n0..n0+NR*VL] (=|+=) A[m0.., :] @ B[:, n0..]; mr in 1..FL_MR */
static inline void FL_INAME(block)(int mr, int K, const FL_REAL *restrict A, int lda,
                                   const FL_REAL *restrict B, int ldb, int accumulate,
                                   FL_REAL *restrict C, int ldc)
{
    FL_INAME(fl_vec) acc[FL_MR][FL_NR], b[FL_NR], t;
    memset(acc, 0, sizeof acc);
    for (int k = 0; k < K; k++) {
        for (int j = 0; j < FL_NR; j++)
            memcpy(&b[j], B + (size_t)k * ldb + j * FL_VL, sizeof b[j]);
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
 * A K x N matrix stored as panels of FL_PW columns (FL_PW * sizeof = 128
 * bytes): panel p holds columns p*FL_PW.. as K contiguous rows of FL_PW
 * values (zero past column N). Streaming a panel touches consecutive memory,
 * whatever N is, so large power-of-two row strides cannot make the rows of B
 * fight over the same cache sets. fl_pack_panels (seq.c) builds them. */
#define FL_PNR (FL_PW / FL_VL)          /* registers per panel row */
#if FL_VEC_BYTES == 64
#define FL_PMR 8                        /* rows of A per block: 16 accumulators (32 zmm) */
#else
#define FL_PMR (8 / FL_PNR)             /* rows of A per block: 8 accumulators */
#endif

FL_ALWAYS_INLINE void FL_INAME(panel_block)(int ta, int mr, int K, const FL_REAL *restrict A, int lda,
                                         const FL_REAL *restrict P, int accumulate, int nw,
                                         FL_REAL *restrict C, int ldc)
{
    FL_INAME(fl_vec) acc[FL_PMR][FL_PNR], b[FL_PNR];
    memset(acc, 0, sizeof acc);
    for (int k = 0; k < K; k++) {
        for (int j = 0; j < FL_PNR; j++)
            memcpy(&b[j], P + (size_t)k * FL_PW + j * FL_VL, sizeof b[j]);
        for (int r = 0; r < FL_PMR; r++) {
            if (r < mr) {
                FL_REAL ark = ta ? A[(size_t)k * lda + r] : A[(size_t)r * lda + k];
                for (int j = 0; j < FL_PNR; j++)
                    acc[r][j] += ark * b[j];
            }
        }
    }
    for (int r = 0; r < mr && r < FL_PMR; r++) {
        FL_REAL *c = C + (size_t)r * ldc;
        if (nw == FL_PW) {  /* a whole panel: vector loads and stores */
            for (int j = 0; j < FL_PNR; j++) {
                if (accumulate) {
                    FL_INAME(fl_vec) t;
                    memcpy(&t, c + j * FL_VL, sizeof t);
                    acc[r][j] += t;
                }
                memcpy(c + j * FL_VL, &acc[r][j], sizeof acc[r][j]);
            }
            continue;
        }
        FL_REAL out[FL_PW];
        memcpy(out, acc[r], sizeof out);
        if (accumulate)
            for (int l = 0; l < nw; l++)
                c[l] += out[l];
        else
            memcpy(c, out, sizeof(FL_REAL) * (size_t)nw);
    }
}

/* Panels one row of A meets at once: enough accumulators (FL_PROW *
 * FL_PNR) to hide the latency of the multiply-adds. (8 panels, tried on
 * AVX-512, were slower at K = 64: eight streams 8 KiB apart compete for the
 * same sets of L1.) */
#define FL_PROW 4

/* One row of A against np <= FL_PROW panels at once: with a single row, one
 * panel alone would give only FL_PNR accumulators. c receives columns n0..
 * of the row. Inlined with np constant for the common case of FL_PROW. */
FL_ALWAYS_INLINE void FL_INAME(panel_row)(int np, int N, int n0, int K, const FL_REAL *restrict a,
                                       const FL_REAL *restrict P, int accumulate,
                                       FL_REAL *restrict c)
{
    FL_INAME(fl_vec) acc[FL_PROW][FL_PNR], b;
    memset(acc, 0, sizeof acc);
    const size_t ps = (size_t)K * FL_PW;  /* values per panel */
    for (int k = 0; k < K; k++) {
        FL_REAL ak = a[k];
        for (int q = 0; q < FL_PROW; q++) {
            if (q < np) {
                for (int j = 0; j < FL_PNR; j++) {
                    memcpy(&b, P + q * ps + (size_t)k * FL_PW + j * FL_VL, sizeof b);
                    acc[q][j] += ak * b;
                }
            }
        }
    }
    for (int q = 0; q < np && q < FL_PROW; q++) {
        FL_REAL out[FL_PW];
        memcpy(out, acc[q], sizeof out);
        int start = n0 + q * FL_PW, nw = N - start < FL_PW ? N - start : FL_PW;
        FL_REAL *cq = c + q * FL_PW;
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

#define FL_KC 192
#define FL_MC 256
#define FL_KLONG 2048
/* C (M x N) (= or +=) A^T @ B for A (K x M, row stride lda), B in panels,
 * with op(A) copied block by block (FL_MC x FL_KC) into FL_PMR-row strips
 * stored k-major, so that the kernel reads it contiguously: read in place,
 * a strip of op(A) touches one cache line per k, lda apart, and with the
 * power-of-two strides of gate arrays those lines all compete for the same
 * L1 sets. K chunks are outermost (the block is copied once and met by
 * every panel). Returns 0 without doing anything when the scratch block
 * cannot be had (the caller then reads A in place). */
static int FL_INAME(panel_gemm_ta_packed)(int M, int N, int K, int accumulate,
                                          const FL_REAL *restrict A, int lda,
                                          const FL_REAL *restrict P, FL_REAL *restrict C,
                                          int ldc)
{
    FL_REAL *Ap = malloc(sizeof(FL_REAL) * FL_MC * FL_KC);
    if (!Ap)
        return 0;
    for (int mc = 0; mc < M; mc += FL_MC) {
        const int me = M - mc < FL_MC ? M : mc + FL_MC;
        for (int k0 = 0; k0 < K || k0 == 0; k0 += FL_KC) {
            const int kc = K - k0 < FL_KC ? K - k0 : FL_KC;
            const int acc = accumulate || k0 > 0;
            /* strip b: rows mc + b*FL_PMR.. of op(A), at Ap + b*FL_PMR*kc */
            for (int m0 = mc; m0 < me; m0 += FL_PMR) {
                const int mr = me - m0 < FL_PMR ? me - m0 : FL_PMR;
                FL_REAL *dst = Ap + (size_t)(m0 - mc) * kc;
                for (int k = 0; k < kc; k++)
                    memcpy(dst + (size_t)k * FL_PMR, A + (size_t)(k0 + k) * lda + m0,
                           sizeof(FL_REAL) * (size_t)mr);
            }
            for (int n0 = 0; n0 < N; n0 += FL_PW) {
                const FL_REAL *pk = P + (size_t)(n0 / FL_PW) * K * FL_PW + (size_t)k0 * FL_PW;
                const int nw = N - n0 < FL_PW ? N - n0 : FL_PW;
                int m0 = mc;
                for (; m0 + FL_PMR <= me; m0 += FL_PMR)
                    FL_INAME(panel_block)(1, FL_PMR, kc, Ap + (size_t)(m0 - mc) * kc, FL_PMR,
                                          pk, acc, nw, C + (size_t)m0 * ldc + n0, ldc);
                if (m0 < me)
                    FL_INAME(panel_block)(1, me - m0, kc, Ap + (size_t)(m0 - mc) * kc, FL_PMR,
                                          pk, acc, nw, C + (size_t)m0 * ldc + n0, ldc);
            }
        }
    }
    free(Ap);
    return 1;
}

/* C (M x N) (= or +=) op(A) (M x K) @ B, B given as panels; op(A) is A
 * (M x K, row stride lda) or, with ta, the transpose of A (K x M). Rows of
 * op(A) are taken FL_MC at a time (that block stays in L2 while every panel
 * passes over it) and K in chunks of FL_KC rows (the chunk of a panel,
 * FL_KC * 128 bytes, stays in L1 across the blocks of FL_PMR rows). Inlined
 * twice, with ta constant. */
FL_ALWAYS_INLINE void FL_INAME(panel_gemm)(int ta, int M, int N, int K, int accumulate,
                                        const FL_REAL *restrict A, int lda,
                                        const FL_REAL *restrict P, FL_REAL *restrict C,
                                        int ldc)
{
    if (M < 4 && !ta) {  /* a row or few (batch 1 streaming): several panels at a time */
        FL_INAME(panel_rows)(M, N, K, accumulate, A, lda, P, C, ldc);
        return;
    }
    if (ta && FL_INAME(panel_gemm_ta_packed)(M, N, K, accumulate, A, lda, P, C, ldc))
        return;
    /* a long K (weight gradients: K = N rows of the sequence): chunks of K
     * outermost, so the block of op(A) in use (FL_MC x FL_KC) stays in L2
     * while every panel passes over it, instead of op(A) streaming from
     * memory once per panel */
    const int kfirst = K > FL_KLONG;
    for (int mc = 0; mc < M; mc += FL_MC) {
        int me = M - mc < FL_MC ? M : mc + FL_MC;
        for (int outer = 0; outer < (kfirst ? K : N) || outer == 0;
             outer += kfirst ? FL_KC : FL_PW)
        for (int inner = 0; inner < (kfirst ? N : K) || inner == 0;
             inner += kfirst ? FL_PW : FL_KC) {
            const int n0 = kfirst ? inner : outer, k0 = kfirst ? outer : inner;
            const FL_REAL *panel = P + (size_t)(n0 / FL_PW) * K * FL_PW;
            int nw = N - n0 < FL_PW ? N - n0 : FL_PW;
            {
                int kc = K - k0 < FL_KC ? K - k0 : FL_KC;
                int acc = accumulate || k0 > 0;
                const FL_REAL *pk = panel + (size_t)k0 * FL_PW;
                int m0 = mc;
#define FL_A_AT(m) (ta ? A + (size_t)k0 * lda + (m) : A + (size_t)(m) * lda + k0)
                for (; m0 + FL_PMR <= me; m0 += FL_PMR)
                    FL_INAME(panel_block)(ta, FL_PMR, kc, FL_A_AT(m0), lda, pk, acc, nw,
                                          C + (size_t)m0 * ldc + n0, ldc);
                for (; FL_PMR > 4 && m0 + 4 <= me; m0 += 4)  /* (a copy specialised for 4) */
                    FL_INAME(panel_block)(ta, 4, kc, FL_A_AT(m0), lda, pk, acc, nw,
                                          C + (size_t)m0 * ldc + n0, ldc);
                if (m0 < me)
                    FL_INAME(panel_block)(ta, me - m0, kc, FL_A_AT(m0), lda, pk, acc, nw,
                                          C + (size_t)m0 * ldc + n0, ldc);
#undef FL_A_AT
            }
        }
    }
}

void FL_INAME(fl_panel_gemm)(int trans_a, int M, int N, int K, int accumulate,
                             const FL_REAL *restrict A, int lda, const FL_REAL *restrict P,
                             FL_REAL *restrict C, int ldc)
{
    if (trans_a)
        FL_INAME(panel_gemm)(1, M, N, K, accumulate, A, lda, P, C, ldc);
    else
        FL_INAME(panel_gemm)(0, M, N, K, accumulate, A, lda, P, C, ldc);
}
#undef FL_MC
#undef FL_KC
#undef FL_KLONG

#undef FL_PNR
#undef FL_PMR
#undef FL_PROW
#undef FL_VL
#undef FL_MR
#undef FL_NR
#endif
