/*
 * fl_small.c -- the product of a few rows by a matrix, without the BLAS.
 * Compiled once per element type and instruction set (see fl_template.h).
 */
#ifndef FL_REAL
#define FL_TEMPLATE_FILE "fl_small.c"
#define FL_TEMPLATE_ISA
#include "fl_template.h"
#else
#include "fl_kernel.h"

/* one 64-byte vector of FL_REAL (16 floats or 8 doubles); GCC and Clang split
 * it into narrower registers where the instruction set has no 64-byte ones */
typedef FL_REAL FL_INAME(fl_vec) __attribute__((vector_size(64)));
#define FL_VL (64 / (int)sizeof(FL_REAL))

/* Few rows of A (M <= FL_SMALL_M), A not transposed: a BLAS call costs more
 * than the arithmetic here (the per-step product at batch 1 to 4), so the
 * product is computed directly, vectorised over the contiguous axis.
 *   trans_b: C[m][n] = sum_k A[m][k] B[n][k]   (dot products, SIMD reduction;
 *            single steps, where packing B^T would cost more than it saves)
 *   else:    C[m][:] = sum_k A[m][k] B[k][:]   (rows of B accumulated into
 *            blocks of C held in registers) */
void FL_INAME(fl_small_gemm)(int trans_b, int M, int N, int K, FL_REAL alpha,
                             const FL_REAL *restrict A, int lda,
                             const FL_REAL *restrict B, int ldb, FL_REAL beta,
                             FL_REAL *restrict C, int ldc)
{
    for (int m = 0; m < M; m++) {
        const FL_REAL *a = A + (size_t)m * lda;
        FL_REAL *c = C + (size_t)m * ldc;
        if (trans_b) {
            for (int n = 0; n < N; n++) {
                const FL_REAL *b = B + (size_t)n * ldb;
                FL_REAL acc = 0;
#pragma omp simd reduction(+:acc)
                for (int k = 0; k < K; k++)
                    acc += a[k] * b[k];
                c[n] = alpha * acc + (beta == 0 ? (FL_REAL)0 : beta * c[n]);
            }
            continue;
        }
        int n0 = 0;
        for (; n0 + 4 * FL_VL <= N; n0 += 4 * FL_VL) {
            FL_INAME(fl_vec) c0 = {0}, c1 = {0}, c2 = {0}, c3 = {0}, b0, b1, b2, b3;
            for (int k = 0; k < K; k++) {
                const FL_REAL *b = B + (size_t)k * ldb + n0;
                FL_REAL ak = a[k];
                memcpy(&b0, b, sizeof b0);
                memcpy(&b1, b + FL_VL, sizeof b1);
                memcpy(&b2, b + 2 * FL_VL, sizeof b2);
                memcpy(&b3, b + 3 * FL_VL, sizeof b3);
                c0 += ak * b0;
                c1 += ak * b1;
                c2 += ak * b2;
                c3 += ak * b3;
            }
            FL_REAL out[4 * FL_VL];
            memcpy(out, &c0, sizeof c0);
            memcpy(out + FL_VL, &c1, sizeof c1);
            memcpy(out + 2 * FL_VL, &c2, sizeof c2);
            memcpy(out + 3 * FL_VL, &c3, sizeof c3);
            FL_REAL *cn = c + n0;
#pragma omp simd
            for (int l = 0; l < 4 * FL_VL; l++)
                cn[l] = alpha * out[l] + (beta == 0 ? (FL_REAL)0 : beta * cn[l]);
        }
        if (n0 < N) {  /* the remaining columns: rows of B streamed into C */
            FL_REAL *cn = c + n0;
            int nb = N - n0;
            for (int l = 0; l < nb; l++)
                cn[l] = beta == 0 ? (FL_REAL)0 : beta * cn[l];
            for (int k = 0; k < K; k++) {
                const FL_REAL *b = B + (size_t)k * ldb + n0;
                FL_REAL ak = alpha * a[k];
#pragma omp simd
                for (int l = 0; l < nb; l++)
                    cn[l] += ak * b[l];
            }
        }
    }
}

#undef FL_VL
#endif
