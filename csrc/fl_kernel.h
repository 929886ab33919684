/*
 * fl_kernel.h -- internal declarations shared by the kernel sources, for one
 * element type. Included from inside a templated body (see fl_template.h),
 * once per FL_REAL; each instantiation is emitted once per translation unit.
 */
#include <math.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>
#include "fastlstm.h"

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

/* ---- activations ----
 * Branch-free (selects only), so the pointwise loops that call them vectorise.
 * exp is computed for non-positive arguments only, by Cody-Waite reduction
 * v = n ln2 + r, |r| <= ln2/2, and a Taylor polynomial of e^r (degree 7 in
 * float, 13 in double: truncation error below 1e-8 and 5e-18 relative);
 * expm1 for |u| <= 1/4 uses the same coefficients one degree lower. The
 * tests bound the error of sigmoid and tanh against NumPy's exact functions
 * (a few ulp). Saturation is exact: sigmoid(+-1000) is 1 or 0 and
 * tanh(+-1000) is +-1, with no overflow; NaN propagates. */
#ifndef FL_INLINE
#if defined(__GNUC__)
#define FL_INLINE static inline __attribute__((always_inline))
#else
#define FL_INLINE static inline
#endif
#endif

#if FL_IS_FLOAT
#define FL_EXP_MIN (-87.0f)         /* below this, e^v is returned as 0 */
#define FL_MANT 23
#define FL_BIAS 127
typedef int32_t FL_NAME(fl_bits);
#else
#define FL_EXP_MIN (-708.0)
#define FL_MANT 52
#define FL_BIAS 1023
typedef int64_t FL_NAME(fl_bits);
#endif

/* Horner's rule for the Taylor polynomial of e^r, sum_{k<=FL_EXP_DEG} r^k/k!,
 * and for expm1(u)/u = sum_{k<FL_EXP_DEG} u^k/(k+1)!; written out (no loop)
 * so that the pointwise loops around them stay straight-line code. */
#if FL_IS_FLOAT
#define FL_HORNER_HIGH(p, r) \
    p = (FL_REAL)(1.0 / 5040);
#else
#define FL_HORNER_HIGH(p, r) \
    p = 1.0 / 6227020800.0;           \
    p = p * (r) + 1.0 / 479001600.0;  \
    p = p * (r) + 1.0 / 39916800.0;   \
    p = p * (r) + 1.0 / 3628800.0;    \
    p = p * (r) + 1.0 / 362880.0;     \
    p = p * (r) + 1.0 / 40320.0;      \
    p = p * (r) + 1.0 / 5040.0;
#endif
#define FL_EXPM1_OVER_U(p, r)                  \
    FL_HORNER_HIGH(p, r)                       \
    p = p * (r) + (FL_REAL)(1.0 / 720);        \
    p = p * (r) + (FL_REAL)(1.0 / 120);        \
    p = p * (r) + (FL_REAL)(1.0 / 24);         \
    p = p * (r) + (FL_REAL)(1.0 / 6);          \
    p = p * (r) + (FL_REAL)(1.0 / 2);          \
    p = p * (r) + (FL_REAL)1;

/* e^v for v <= 0 (v > 0 is treated as 0); 0 below FL_EXP_MIN; NaN stays NaN */
FL_INLINE FL_REAL FL_NAME(fl_exp_neg)(FL_REAL v)
{
    const FL_REAL log2e = (FL_REAL)1.4426950408889634;
    const FL_REAL ln2_hi = (FL_REAL)0.693145751953125;       /* few mantissa bits: n*ln2_hi exact */
    const FL_REAL ln2_lo = (FL_REAL)1.4286068203094172321e-6;
    FL_REAL vc = v > FL_EXP_MIN ? v : FL_EXP_MIN;              /* NaN -> FL_EXP_MIN: no UB below */
    vc = vc < 0 ? vc : (FL_REAL)0;
    int n = (int)(vc * log2e - (FL_REAL)0.5);                  /* round to nearest (vc <= 0) */
    FL_REAL fn = (FL_REAL)n;
    FL_REAL r = (vc - fn * ln2_hi) - fn * ln2_lo;
    FL_REAL p;
    FL_EXPM1_OVER_U(p, r)
    p = p * r + (FL_REAL)1;
    FL_NAME(fl_bits) bits = (FL_NAME(fl_bits))(n + FL_BIAS) << FL_MANT;
    FL_REAL scale;
    memcpy(&scale, &bits, sizeof scale);
    FL_REAL e = p * scale;
    e = v < FL_EXP_MIN ? (FL_REAL)0 : e;
    return v != v ? v : e;
}

FL_INLINE FL_REAL FL_NAME(fl_sigmoid)(FL_REAL v)
{
    FL_REAL e = FL_NAME(fl_exp_neg)(-(v < 0 ? -v : v));
    FL_REAL p = (FL_REAL)1 / ((FL_REAL)1 + e);
    return v >= 0 ? p : e * p;
}

FL_INLINE FL_REAL FL_NAME(fl_tanh)(FL_REAL v)
{
    /* tanh|v| = -m / (2 + m) with m = e^(-2|v|) - 1; for small |v| m comes
     * from a Taylor polynomial of expm1 (|u| <= 1/4) to avoid cancellation */
    FL_REAL a = v < 0 ? -v : v;
    FL_REAL u = -2 * a;
    FL_REAL m_big = FL_NAME(fl_exp_neg)(u) - (FL_REAL)1;
    FL_REAL m_small;
    FL_EXPM1_OVER_U(m_small, u)
    m_small *= u;
    FL_REAL m = a < (FL_REAL)0.125 ? m_small : m_big;
    FL_REAL t = -m / ((FL_REAL)2 + m);
    return v < 0 ? -t : t;   /* NaN: m is NaN, so t is NaN */
}

#undef FL_EXP_MIN
#undef FL_HORNER_HIGH
#undef FL_EXPM1_OVER_U
#undef FL_MANT
#undef FL_BIAS

/* ---- BLAS bridge (fl_blas.c) ----
 * Row-major C (M x N) = alpha * op(A) @ op(B) + beta * C, where op(A) is
 * M x K and op(B) is K x N; trans_a / trans_b nonzero mean "use the transpose
 * of the stored matrix". lda, ldb, ldc are row strides of the stored matrices.
 * Sizes must already be known to fit an int (the callers check). */
void FL_NAME(fl_gemm)(const fl_blas *blas, int trans_a, int trans_b,
                      int M, int N, int K, FL_REAL alpha,
                      const FL_REAL *A, int lda, const FL_REAL *B, int ldb,
                      FL_REAL beta, FL_REAL *C, int ldc);

/* ---- one cell's pointwise math, for one batch row at one step ----
 *
 * All pointers of one call address distinct, non-overlapping rows (restrict).
 *
 * forward row:
 *   xp     (G*H)  in: x_t @ w_ih^T for this row (no bias); out: the
 *                 post-activation gates (in place: training keeps them)
 *   hr     (G*H)  h_{t-1} @ w_hh^T for this row (no bias)
 *   b_ih, b_hh (G*H)  biases (zeros when the layer has none), never NULL
 *   h      (H)    in: h_{t-1}; out: h_t
 *   c      (H)    LSTM only: in c_{t-1}, out c_t; NULL for other cells
 *   y      (H)    out: h_t
 *   extra  (E*H)  out: what backward needs besides the gates (scratch in
 *                 inference). Writing unconditionally keeps the loop
 *                 branch-free so that it vectorises.
 *
 * backward row:
 *   gates, extra, hprev   as saved by the forward row
 *   dh     (H)    in: dL/dh_t (all paths); out: the part of dL/dh_{t-1} that
 *                 does not go through w_hh (only read back when has_direct)
 *   dc     (H)    LSTM only: in dL/dc_t, out dL/dc_{t-1}
 *   dgx    (G*H)  out: dL/d(gate pre-activations on the input side)
 *   dgh    (G*H)  out: dL/d(gate pre-activations on the recurrent side);
 *                 equal to dgx except for the GRU's n gate.
 */
#define FL_FWD_ROW_ARGS(R) int H, R *restrict xp, const R *restrict hr, \
    const R *restrict b_ih, const R *restrict b_hh, R *restrict h, R *restrict c, \
    R *restrict y, R *restrict extra
#define FL_BWD_ROW_ARGS(R) int H, const R *restrict gates, const R *restrict extra, \
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

extern const FL_NAME(fl_cell) FL_NAME(fl_lstm_cell);
extern const FL_NAME(fl_cell) FL_NAME(fl_gru_cell);
extern const FL_NAME(fl_cell) FL_NAME(fl_rnn_tanh_cell);
extern const FL_NAME(fl_cell) FL_NAME(fl_rnn_relu_cell);

#endif /* FL_KERNEL_EMIT */
