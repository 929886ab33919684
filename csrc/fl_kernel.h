/*
 * fl_kernel.h -- internal declarations shared by the kernel sources, for one
 * element type. Included from inside a templated body (see fl_template.h),
 * once per FL_REAL; each instantiation is emitted once per translation unit.
 */
#include <math.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include "fastlstm.h"

#include "fl_kernel_common.h"

#if FL_IS_FLOAT
#  ifndef FL_KERNEL_F32_DONE
#    define FL_KERNEL_F32_DONE
#    define FL_KERNEL_EMIT
#  endif
#else
#  ifndef FL_KERNEL_F64_DONE
#    define FL_KERNEL_F64_DONE
#    define FL_KERNEL_EMIT
#  endif
#endif

#ifdef FL_KERNEL_EMIT
#undef FL_KERNEL_EMIT

/* values per panel row at level isa (fl_panel_bytes), and at most */
#define FL_PW_OF(isa) (fl_panel_bytes(isa) / (int)sizeof(FL_REAL))
#define FL_PW_MAX (FL_PANEL_BYTES_MAX / (int)sizeof(FL_REAL))

/* A transposing copy FL_TB x FL_TB values at a time (one SSE register of
 * each row), where the build has SSE2 (every x86-64 build; FL_HAVE_TILE):
 * rows r[0..FL_TB) of a source at k (FL_TB values each) -> FL_TB rows of
 * FL_TB values at d, ds apart (the packing of panels and of strips of A). */
#if defined(__SSE2__) || defined(_M_X64)
#include <emmintrin.h>
#define FL_HAVE_TILE 1
#define FL_TB (16 / (int)sizeof(FL_REAL))
#if FL_IS_FLOAT
static inline void FL_NAME(fl_transpose_tile)(const FL_REAL *const *r, int k, FL_REAL *d,
                                              size_t ds)
{
    __m128 a0 = _mm_loadu_ps(r[0] + k), a1 = _mm_loadu_ps(r[1] + k);
    __m128 a2 = _mm_loadu_ps(r[2] + k), a3 = _mm_loadu_ps(r[3] + k);
    _MM_TRANSPOSE4_PS(a0, a1, a2, a3);
    _mm_storeu_ps(d, a0);
    _mm_storeu_ps(d + ds, a1);
    _mm_storeu_ps(d + 2 * ds, a2);
    _mm_storeu_ps(d + 3 * ds, a3);
}
#else
static inline void FL_NAME(fl_transpose_tile)(const FL_REAL *const *r, int k, FL_REAL *d,
                                              size_t ds)
{
    __m128d a0 = _mm_loadu_pd(r[0] + k), a1 = _mm_loadu_pd(r[1] + k);
    _mm_storeu_pd(d, _mm_unpacklo_pd(a0, a1));
    _mm_storeu_pd(d + ds, _mm_unpackhi_pd(a0, a1));
}
#endif
#else
#define FL_HAVE_TILE 0
#endif

/* ---- BLAS bridge (fl_blas.c) ----
 * Row-major C (M x N) = alpha * op(A) @ op(B) + beta * C, where op(A) is
 * M x K and op(B) is K x N; trans_a / trans_b nonzero mean "use the transpose
 * of the stored matrix". lda, ldb, ldc are row strides of the stored matrices.
 * Sizes must already be known to fit an int (the callers check). Products of
 * at most FL_SMALL_M rows with alpha 1 and beta 0 or 1 run fl_small_gemm
 * (fl_small.c) at level `isa`. */
/* Panels of B (FL_PW_OF(isa) values wide) for fl_gemm_panel at level isa:
 * the K x N matrix B[k][n] = src[rowof(n) * ld + k] when `by_rows` (each
 * column n of B is the row rowof(n) of src, rowof(n) = (n / nu) * H + u0 +
 * n % nu: the units u0..u0+nu of every gate of w_hh), else B[k][n] =
 * src[k * ld + u0 + n] (columns u0..u0+N of src). P holds
 * fl_panel_size(isa, K, N) values. */
size_t FL_NAME(fl_panel_size)(int isa, int K, int N);
void FL_NAME(fl_pack_panels)(int isa, const FL_REAL *src, int ld, int K, int N, int by_rows,
                             int H, int u0, int nu, FL_REAL *P);
/* The same panels (not by_rows) of the K x N matrix B[k][n] =
 * src[rows[k] * ld + c0 + n]: K rows of src picked by rows (a ragged
 * batch's valid rows, gathered as they are packed). */
void FL_NAME(fl_pack_panels_gather)(int isa, const FL_REAL *src, int ld, const int *rows,
                                    int K, int c0, int N, FL_REAL *P);
/* C (M x N) = op(A) @ B (+ C when accumulate), B packed by fl_pack_panels;
 * op(A) is A (M x K, row stride lda), or with trans_a the transpose of the
 * K x M matrix A (row stride lda). work: fl_panel_work(trans_a, M, K) values
 * of scratch (callers in a time loop pass it, so that no step allocates),
 * or NULL to allocate what is needed. */
void FL_NAME(fl_gemm_panel)(int isa, int trans_a, int M, int N, int K, int accumulate,
                            const FL_REAL *A,
                            int lda, const FL_REAL *P, FL_REAL *C, int ldc, FL_REAL *work);
/* out[k] (= or +=) the sum of column k of m (rows x cols, row stride ld),
 * k < cols; the rows are added in order (out's first, when accumulate).
 * out and m do not overlap. */
void FL_NAME(fl_col_sums)(int isa, FL_REAL *out, const FL_REAL *m, size_t rows, int cols,
                          int ld, int accumulate);
/* A whole-sequence product C = op(A) op(B) (alpha 1, beta 0): through the
 * BLAS when it is large (unless fl_own_products), else on fl_panel_gemm in
 * this thread (B packed, A transposed when needed), which spares a small
 * product the wake-up of the BLAS's thread pool. Returns FL_OK or
 * FL_ERR_NOMEM. */
int FL_NAME(fl_gemm_whole)(const fl_blas *blas, int isa, int trans_a, int trans_b,
                           int M, int N, int K, const FL_REAL *A, int lda,
                           const FL_REAL *B, int ldb, FL_REAL *C, int ldc);
void FL_NAME(fl_gemm)(const fl_blas *blas, int isa, int trans_a, int trans_b,
                      int M, int N, int K, FL_REAL alpha,
                      const FL_REAL *A, int lda, const FL_REAL *B, int ldb,
                      FL_REAL beta, FL_REAL *C, int ldc);

/* ---- one cell's pointwise math, for one batch row at one step ----
 *
 * All pointers of one call address distinct, non-overlapping rows (restrict).
 *
 * forward row, for units j < n of one batch row (all of them, n = H, or a
 * thread's slice); gate block g of unit j is at [g * ld + j] in xp, the
 * biases and extra, and at [g * ldr + j] in hr:
 *   xp     in: x_t @ w_ih^T for this row (no bias); out: the post-activation
 *          gates (in place: training keeps them)
 *   hr     h_{t-1} @ w_hh^T for this row (no bias)
 *   b_ih, b_hh   biases (zeros when the layer has none), never NULL
 *   h_in   (n)  h_{t-1};  h  (n)  out: h_t
 *   c      (n)  LSTM only: in c_{t-1}, out c_t; NULL for other cells
 *   y      (n)  out: h_t
 *   extra  out: what backward needs besides the gates (scratch in
 *          inference). Writing unconditionally keeps the loop branch-free
 *          so that it vectorises.
 *
 * backward row, for units j < n, gate block g of unit j at [g * ld + j] in
 * gates, extra, dgx and dgh:
 *   gates, extra, hprev   as saved by the forward row
 *   dh     (H)    in: dL/dh_t (all paths); out: the part of dL/dh_{t-1} that
 *                 does not go through w_hh (only read back when has_direct)
 *   dc     (H)    LSTM only: in dL/dc_t, out dL/dc_{t-1}
 *   dgx    (G*H)  out: dL/d(gate pre-activations on the input side)
 *   dgh    (G*H)  out: dL/d(gate pre-activations on the recurrent side);
 *                 equal to dgx except for the GRU's n gate.
 */
#define FL_FWD_ROW_ARGS(R) int n, int ld, int ldr, R *restrict xp, const R *restrict hr, \
    const R *restrict b_ih, const R *restrict b_hh, const R *restrict h_in, R *restrict h, \
    R *restrict c, R *restrict y, R *restrict extra
#define FL_BWD_ROW_ARGS(R) int n, int ld, const R *restrict gates, const R *restrict extra, \
    const R *restrict hprev, R *restrict dh, R *restrict dc, R *restrict dgx, \
    R *restrict dgh
typedef void (*FL_NAME(fl_fwd_row_fn))(FL_FWD_ROW_ARGS(FL_REAL));
typedef void (*FL_NAME(fl_bwd_row_fn))(FL_BWD_ROW_ARGS(FL_REAL));

typedef struct {
    int gates;       /* G */
    int extra;       /* E */
    int has_c;       /* carries a cell state (LSTM) */
    int split_dgh;   /* dgh differs from dgx (GRU) */
    int has_direct;  /* dL/dh_{t-1} has a part not through w_hh (GRU) */
    FL_NAME(fl_fwd_row_fn) fwd;
    FL_NAME(fl_bwd_row_fn) bwd;
} FL_NAME(fl_cell);

/* What each instruction-set copy provides. */
#define FL_DECLARE_ISA(isa)                                                         \
    extern const FL_NAME(fl_cell) FL_NAME_ISA(fl_lstm_cell, isa);                  \
    extern const FL_NAME(fl_cell) FL_NAME_ISA(fl_gru_cell, isa);                   \
    extern const FL_NAME(fl_cell) FL_NAME_ISA(fl_rnn_tanh_cell, isa);              \
    extern const FL_NAME(fl_cell) FL_NAME_ISA(fl_rnn_relu_cell, isa);              \
    void FL_NAME_ISA(fl_panel_gemm, isa)(int trans_a, int M, int N, int K,          \
                                         int accumulate,                            \
                                         const FL_REAL *restrict A, int lda,        \
                                         const FL_REAL *restrict P,                 \
                                         FL_REAL *restrict C, int ldc,              \
                                         FL_REAL *restrict work);                   \
    void FL_NAME_ISA(fl_col_sums, isa)(FL_REAL *restrict out,                       \
                                       const FL_REAL *restrict m, size_t rows,      \
                                       int cols, int ld, int accumulate);           \
    void FL_NAME_ISA(fl_small_gemm, isa)(int trans_b, int M, int N, int K,          \
                                         FL_REAL beta, const FL_REAL *restrict A,   \
                                         int lda, const FL_REAL *restrict B,        \
                                         int ldb, FL_REAL *restrict C, int ldc);
FL_DECLARE_ISA(_generic)
#if FL_X86_DISPATCH
FL_DECLARE_ISA(_avx2)
FL_DECLARE_ISA(_avx512)
#endif
#undef FL_DECLARE_ISA

#endif /* FL_KERNEL_EMIT */
