/*
 * fl_blas.c -- the one place where row-major GEMM calls meet the column-major
 * Fortran BLAS interface, plus a plain C GEMM used when no BLAS is given.
 *
 * A row-major matrix is the column-major matrix of its transpose, so
 *   C = op(A) op(B)  (row-major)   <=>   C^T = op(B)^T op(A)^T  (column-major)
 * and the Fortran call swaps the operands and M with N; the transpose flags
 * keep their meaning.
 */
#ifndef FL_REAL
#define FL_TEMPLATE_FILE "fl_blas.c"
#include "fl_template.h"
#else
#include <stdlib.h>
#include <string.h>
#include "fl_kernel.h"


/* Plain triple loop; C (M x N) row-major. Debugging fallback only. */
static void FL_NAME(plain_gemm)(int trans_a, int trans_b, int M, int N, int K,
                                FL_REAL alpha, const FL_REAL *A, int lda,
                                const FL_REAL *B, int ldb, FL_REAL beta,
                                FL_REAL *C, int ldc)
{
    for (int m = 0; m < M; m++) {
        FL_REAL *crow = C + (size_t)m * ldc;
        for (int n = 0; n < N; n++) {
            FL_REAL acc = 0;
            for (int k = 0; k < K; k++) {
                FL_REAL av = trans_a ? A[(size_t)k * lda + m] : A[(size_t)m * lda + k];
                FL_REAL bv = trans_b ? B[(size_t)n * ldb + k] : B[(size_t)k * ldb + n];
                acc += av * bv;
            }
            crow[n] = alpha * acc + (beta == 0 ? (FL_REAL)0 : beta * crow[n]);
        }
    }
}

/* fl_small_gemm at level `isa`: C = A @ op(B) + beta C, alpha 1, beta 0 or 1 */
static void FL_NAME(fl_gemm_small)(int isa, int trans_b, int M, int N, int K, FL_REAL beta,
                            const FL_REAL *A, int lda, const FL_REAL *B, int ldb,
                            FL_REAL *C, int ldc)
{
    if (M <= 0 || N <= 0)
        return;
#if FL_X86_DISPATCH
    if (isa == FL_ISA_AVX512)
        FL_NAME_ISA(fl_small_gemm, _avx512)(trans_b, M, N, K, beta, A, lda, B, ldb, C, ldc);
    else if (isa == FL_ISA_AVX2)
        FL_NAME_ISA(fl_small_gemm, _avx2)(trans_b, M, N, K, beta, A, lda, B, ldb, C, ldc);
    else
#endif
        FL_NAME_ISA(fl_small_gemm, _generic)(trans_b, M, N, K, beta, A, lda, B, ldb, C, ldc);
}

size_t FL_NAME(fl_panel_size)(int isa, int K, int N)
{
    const int pw = FL_PW_OF(isa);
    return (size_t)((N + pw - 1) / pw) * pw * (size_t)K;
}

/* Panels are packed on every call (weights may change between calls), so
 * the copies are written to vectorise: whole panel rows as fixed-length
 * loops, and the transposing copy (by_rows) FL_TB x FL_TB values at a time
 * (fl_transpose_tile, fl_kernel.h). Element by element, both took ~5 us for
 * a 64 x 256 block, a tenth of a 100-step batch-1 LSTM forward at H = 64. */

/* One panel (pw values wide) whose row k is columns c0 .. c0 + nw of row
 * rows[k] of src (row k when rows is NULL), zeros past nw. Inlined with pw
 * constant. */
static inline void FL_NAME(panel_rows_copy)(int pw, const FL_REAL *src, int ld, const int *rows,
                                            int K, int c0, int nw, FL_REAL *panel)
{
    for (int k = 0; k < K; k++) {
        FL_REAL *prow = panel + (size_t)k * pw;
        const FL_REAL *s = src + (size_t)(rows ? rows[k] : k) * ld + c0;
        if (nw == pw) {  /* (a constant length: vector moves) */
            memcpy(prow, s, sizeof(FL_REAL) * (size_t)pw);
            continue;
        }
        memcpy(prow, s, sizeof(FL_REAL) * (size_t)nw);
        for (int l = nw; l < pw; l++)
            prow[l] = 0;
    }
}

static void FL_NAME(panel_from_rows)(int pw, const FL_REAL *src, int ld, const int *rows, int K,
                                     int c0, int nw, FL_REAL *panel)
{
    if (pw == FL_PW_MAX)
        FL_NAME(panel_rows_copy)(FL_PW_MAX, src, ld, rows, K, c0, nw, panel);
    else
        FL_NAME(panel_rows_copy)(FL_PW_MAX / 2, src, ld, rows, K, c0, nw, panel);
}

void FL_NAME(fl_pack_panels)(int isa, const FL_REAL *src, int ld, int K, int N, int by_rows,
                             int H, int u0, int nu, FL_REAL *P)
{
    const int pw = FL_PW_OF(isa);
    for (int n0 = 0; n0 < N; n0 += pw) {
        FL_REAL *panel = P + (size_t)(n0 / pw) * K * pw;
        const int nw = N - n0 < pw ? N - n0 : pw;
        if (by_rows) {  /* rows of src become columns */
            const FL_REAL *rows[FL_PW_MAX];
            for (int l = 0; l < nw; l++) {
                const int n = n0 + l;
                rows[l] = src + (size_t)((n / nu) * H + u0 + n % nu) * ld;
            }
            int l0 = 0;
#if FL_HAVE_TILE
            for (; l0 + FL_TB <= nw; l0 += FL_TB) {  /* FL_TB columns, k in tiles */
                int k = 0;
                for (; k + FL_TB <= K; k += FL_TB)
                    FL_NAME(fl_transpose_tile)(rows + l0, k, panel + (size_t)k * pw + l0, pw);
                for (; k < K; k++)
                    for (int l = l0; l < l0 + FL_TB; l++)
                        panel[(size_t)k * pw + l] = rows[l][k];
            }
#endif
            for (int l = l0; l < pw; l++)  /* the rest, and zeros past N */
                for (int k = 0; k < K; k++)
                    panel[(size_t)k * pw + l] = l < nw ? rows[l][k] : (FL_REAL)0;
        } else {  /* row k of the panel is a contiguous piece of row k of src */
            FL_NAME(panel_from_rows)(pw, src, ld, NULL, K, u0 + n0, nw, panel);
        }
    }
}

void FL_NAME(fl_pack_panels_gather)(int isa, const FL_REAL *src, int ld, const int *rows, int K,
                                    int c0, int N, FL_REAL *P)
{
    const int pw = FL_PW_OF(isa);
    for (int n0 = 0; n0 < N; n0 += pw)
        FL_NAME(panel_from_rows)(pw, src, ld, rows, K, c0 + n0, N - n0 < pw ? N - n0 : pw,
                                 P + (size_t)(n0 / pw) * K * pw);
}

void FL_NAME(fl_gemm_panel)(int isa, int trans_a, int M, int N, int K, int accumulate,
                            const FL_REAL *A,
                            int lda, const FL_REAL *P, FL_REAL *C, int ldc, FL_REAL *work)
{
    if (M <= 0 || N <= 0)
        return;
#if FL_X86_DISPATCH
    if (isa == FL_ISA_AVX512)
        FL_NAME_ISA(fl_panel_gemm, _avx512)(trans_a, M, N, K, accumulate, A, lda, P, C, ldc, work);
    else if (isa == FL_ISA_AVX2)
        FL_NAME_ISA(fl_panel_gemm, _avx2)(trans_a, M, N, K, accumulate, A, lda, P, C, ldc, work);
    else
#endif
        FL_NAME_ISA(fl_panel_gemm, _generic)(trans_a, M, N, K, accumulate, A, lda, P, C, ldc, work);
}

void FL_NAME(fl_col_sums)(int isa, FL_REAL *out, const FL_REAL *m, size_t rows, int cols,
                          int ld, int accumulate)
{
#if FL_X86_DISPATCH
    if (isa == FL_ISA_AVX512)
        FL_NAME_ISA(fl_col_sums, _avx512)(out, m, rows, cols, ld, accumulate);
    else if (isa == FL_ISA_AVX2)
        FL_NAME_ISA(fl_col_sums, _avx2)(out, m, rows, cols, ld, accumulate);
    else
#endif
        FL_NAME_ISA(fl_col_sums, _generic)(out, m, rows, cols, ld, accumulate);
}

int FL_NAME(fl_gemm_whole)(const fl_blas *blas, int isa, int trans_a, int trans_b,
                           int M, int N, int K, const FL_REAL *A, int lda,
                           const FL_REAL *B, int ldb, FL_REAL *C, int ldc)
{
    if (M <= 0 || N <= 0)
        return FL_OK;
    if (((double)M * N * K > FL_OWN_GEMM_MAX && !fl_own_products(blas, isa)) || K <= 0 ||
        (M <= FL_SMALL_M && !trans_a)) {
        /* large (the BLAS), or a few rows (fl_gemm's own path, no packing) */
        FL_NAME(fl_gemm)(blas, isa, trans_a, trans_b, M, N, K, 1, A, lda, B, ldb, 0, C, ldc);
        return FL_OK;
    }
    /* op(B) (K x N) in panels; op(A) read in place (the panel kernel takes
     * A transposed as well) */
    FL_REAL *P = malloc(sizeof(FL_REAL) * (FL_NAME(fl_panel_size)(isa, K, N) + 1));
    if (!P)
        return FL_ERR_NOMEM;
    if (trans_b)  /* column n of op(B) is row n of B */
        FL_NAME(fl_pack_panels)(isa, B, ldb, K, N, 1, 0, 0, N, P);
    else
        FL_NAME(fl_pack_panels)(isa, B, ldb, K, N, 0, 0, 0, N, P);
    FL_NAME(fl_gemm_panel)(isa, trans_a, M, N, K, 0, A, lda, P, C, ldc, NULL);
    free(P);
    return FL_OK;
}

void FL_NAME(fl_gemm)(const fl_blas *blas, int isa, int trans_a, int trans_b,
                      int M, int N, int K, FL_REAL alpha,
                      const FL_REAL *A, int lda, const FL_REAL *B, int ldb,
                      FL_REAL beta, FL_REAL *C, int ldc)
{
    if (M <= 0 || N <= 0)
        return;
    if (K <= 0) {  /* C = beta * C; BLAS would do the same, but lda may be 0 */
        for (int m = 0; m < M; m++)
            for (int n = 0; n < N; n++)
                C[(size_t)m * ldc + n] = beta == 0 ? (FL_REAL)0 : beta * C[(size_t)m * ldc + n];
        return;
    }
    if (M <= FL_SMALL_M && !trans_a && alpha == 1 && (beta == 0 || beta == 1)) {
        FL_NAME(fl_gemm_small)(isa, trans_b, M, N, K, beta, A, lda, B, ldb, C, ldc);
        return;
    }
#if FL_IS_FLOAT
    fl_sgemm_fn fn = blas ? blas->sgemm : NULL;
#else
    fl_dgemm_fn fn = blas ? blas->dgemm : NULL;
#endif
    if (!fn) {
        FL_NAME(plain_gemm)(trans_a, trans_b, M, N, K, alpha, A, lda, B, ldb, beta, C, ldc);
        return;
    }
    char ta = trans_a ? 'T' : 'N', tb = trans_b ? 'T' : 'N';
    int m = N, n = M, k = K, la = ldb, lb = lda, lc = ldc;
    /* BLAS takes non-const pointers but does not write A or B */
    fn(&tb, &ta, &m, &n, &k, &alpha, (FL_REAL *)B, &la, (FL_REAL *)A, &lb, &beta, C, &lc);
}

#endif
