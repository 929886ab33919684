/*
 * fl_act.h -- the kernels' sigmoid and tanh, for one element type and one
 * instruction-set copy. No include guard: every templated body that needs
 * them includes this after fl_kernel.h, so each copy is compiled (and
 * inlined, and vectorised) for the instruction set of the code calling it.
 */
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
#define FL_EXP_MIN (-87.336544750553102f)  /* log(FLT_MIN): below, e^v is returned as 0 */
#define FL_MANT 23
#define FL_BIAS 127
typedef int32_t FL_INAME(fl_bits);
#else
#define FL_EXP_MIN (-708.39641853226410)  /* log(DBL_MIN) */
#define FL_MANT 52
#define FL_BIAS 1023
typedef int64_t FL_INAME(fl_bits);
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
FL_INLINE FL_REAL FL_INAME(fl_exp_neg)(FL_REAL v)
{
    const FL_REAL log2e = (FL_REAL)1.4426950408889634;
    const FL_REAL ln2_hi = (FL_REAL)0.693145751953125;       /* few mantissa bits: n*ln2_hi exact */
    const FL_REAL ln2_lo = (FL_REAL)1.4286068203094172321e-6;
    FL_REAL vc = v > FL_EXP_MIN ? v : FL_EXP_MIN;              /* NaN -> FL_EXP_MIN: no UB below */
    vc = vc < 0 ? vc : (FL_REAL)0;
    /* n = round(vc log2 e) by the shifter trick: adding 1.5 * 2^mant rounds
     * to an integer that then sits in the low mantissa bits of t, so 2^n is
     * built from t's bits without a float-to-int conversion (which keeps the
     * loop vectorisable for every instruction set) */
    const FL_REAL shifter = (FL_REAL)(1.5 * (double)((FL_INAME(fl_bits))1 << FL_MANT));
    FL_REAL t = vc * log2e + shifter;
    FL_REAL fn = t - shifter;
    FL_REAL r = (vc - fn * ln2_hi) - fn * ln2_lo;
    FL_REAL p;
    FL_EXPM1_OVER_U(p, r)
    p = p * r + (FL_REAL)1;
    FL_INAME(fl_bits) tb, sb;
    memcpy(&tb, &t, sizeof tb);
    memcpy(&sb, &shifter, sizeof sb);
    FL_INAME(fl_bits) bits = (tb - sb + FL_BIAS) << FL_MANT;  /* 2^n, n >= -126 / -1022 */
    FL_REAL scale;
    memcpy(&scale, &bits, sizeof scale);
    FL_REAL e = p * scale;
    e = v < FL_EXP_MIN ? (FL_REAL)0 : e;
    return v != v ? v : e;
}

FL_INLINE FL_REAL FL_INAME(fl_sigmoid)(FL_REAL v)
{
    FL_REAL e = FL_INAME(fl_exp_neg)(-(v < 0 ? -v : v));
    FL_REAL p = (FL_REAL)1 / ((FL_REAL)1 + e);
    return v >= 0 ? p : e * p;
}

FL_INLINE FL_REAL FL_INAME(fl_tanh)(FL_REAL v)
{
    /* tanh|v| = -m / (2 + m) with m = e^(-2|v|) - 1; for small |v| m comes
     * from a Taylor polynomial of expm1 (|u| <= 1/4) to avoid cancellation */
    FL_REAL a = v < 0 ? -v : v;
    FL_REAL u = -2 * a;
    FL_REAL m_big = FL_INAME(fl_exp_neg)(u) - (FL_REAL)1;
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
