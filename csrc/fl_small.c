/*
 * fl_small.c -- products with few rows, without the BLAS.
 *
 * The per-step recurrent product has only B (active) rows but is repeated T
 * times with the same weights. A BLAS call re-packs the weights every time
 * and costs more than the arithmetic at small B; here the weights are used
 * in place (already in "k-major" layout: w_hh^T packed once per call for the
 * forward, w_hh itself for the backward) and blocks of C stay in registers.
 * Compiled once per element type and instruction set (see fl_template.h).
 */
#ifndef FL_REAL
#define FL_TEMPLATE_FILE "fl_small.c"
#define FL_TEMPLATE_ISA
#include "fl_template.h"
#else
#include "fl_kernel.h"

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

/* Sum of the lanes of v, as a tree (short dependency chains). */
static inline FL_REAL FL_INAME(hsum)(FL_INAME(fl_vec) v)
{
    FL_REAL t[FL_VL];
    memcpy(t, &v, sizeof t);
    for (int w = FL_VL / 2; w >= 1; w /= 2)
        for (int l = 0; l < w; l++)
            t[l] += t[l + w];
    return t[0];
}

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

#undef FL_VL
#undef FL_MR
#undef FL_NR
#endif
