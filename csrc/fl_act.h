/*
 * fl_act.h -- the kernels' sigmoid and tanh, for one element type and one
 * instruction-set copy. No include guard: every templated body that needs
 * them includes this after fl_kernel.h, so each copy is compiled (and
 * inlined, and vectorised) for the instruction set of the code calling it.
 */
/* ---- activations ----
 * Branch-free (selects only), so the pointwise loops that call them vectorise.
 * Both go through one range reduction of a non-positive argument u:
 * u = n ln2 + r, |r| <= ln2/2 (Cody-Waite), and a Taylor polynomial
 * q(r) = e^r - 1 (degree 7 in float, 13 in double: truncation error below
 * 1e-8 and 5e-18 relative). Then e^u = 2^n (1 + q) for the sigmoid, and
 * e^u - 1 = 2^n q + (2^n - 1) for tanh, which keeps full relative accuracy
 * near 0 (n = 0 there, and 2^n - 1 is exact for every n used). The tests
 * bound the error of sigmoid and tanh against exact values (a few ulp).
 * Saturation is exact: u is clamped at FL_EXP_CLAMP, where n is -bias, 2^n's
 * bit pattern is 0 and e^u is exactly 0, so sigmoid(+-1000) is 1 or 0 and
 * tanh(+-1000) is +-1, with no overflow. The clamps are selects whose
 * comparison is false for NaN, so a NaN argument passes them unchanged
 * (they still compile to single min/max instructions) and propagates to
 * the result. */
#ifndef FL_INLINE
#if defined(__GNUC__)
#define FL_INLINE static inline __attribute__((always_inline))
#else
#define FL_INLINE static inline
#endif
#endif

#if FL_IS_FLOAT
/* round(FL_EXP_CLAMP * log2 e) = -127: e^u is 0 below about -87.7, where
 * the exact value is subnormal; it is normal (and computed) down to
 * log(FLT_MIN) = -87.34 */
#define FL_EXP_CLAMP (-88.0f)
#define FL_MANT 23
#define FL_BIAS 127
typedef uint32_t FL_INAME(fl_bits);
#define FL_FABS fabsf
#define FL_COPYSIGN copysignf
#else
#define FL_EXP_CLAMP (-709.0)   /* round(-709 log2 e) = -1023 */
#define FL_MANT 52
#define FL_BIAS 1023
typedef uint64_t FL_INAME(fl_bits);
#define FL_FABS fabs
#define FL_COPYSIGN copysign
#endif

/* Horner's rule for q(r)/r = sum_{k<=deg-1} r^k/(k+1)!, written out (no
 * loop) so that the pointwise loops around it stay straight-line code */
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

/* For u <= 0 (both callers pass minus an absolute value, so there is no
 * clamp above): *scale = 2^n and the return value
 * q = e^r - 1, so that e^u = scale * (1 + q). Below FL_EXP_CLAMP, scale is
 * 0. NaN gives NaN q (and some scale). */
FL_INLINE FL_REAL FL_INAME(fl_exp_parts)(FL_REAL u, FL_REAL *scale)
{
    const FL_REAL log2e = (FL_REAL)1.4426950408889634;
    const FL_REAL ln2_hi = (FL_REAL)0.693145751953125;       /* few mantissa bits: n*ln2_hi exact */
    const FL_REAL ln2_lo = (FL_REAL)1.4286068203094172321e-6;
    FL_REAL uc = FL_EXP_CLAMP > u ? FL_EXP_CLAMP : u;         /* NaN stays NaN */
    /* n = round(uc log2 e) by the shifter trick: adding 1.5 * 2^mant rounds
     * to an integer that then sits in the low mantissa bits of t, so 2^n is
     * built from t's bits without a float-to-int conversion (which keeps the
     * loop vectorisable for every instruction set); unsigned arithmetic, so
     * that the garbage bits of a NaN cannot overflow */
    const FL_REAL shifter = (FL_REAL)(1.5 * (double)((FL_INAME(fl_bits))1 << FL_MANT));
    FL_REAL t = uc * log2e + shifter;
    FL_REAL fn = t - shifter;
    FL_REAL r = (uc - fn * ln2_hi) - fn * ln2_lo;
    FL_REAL p;
    FL_EXPM1_OVER_U(p, r)
    FL_INAME(fl_bits) tb, sb;
    memcpy(&tb, &t, sizeof tb);
    memcpy(&sb, &shifter, sizeof sb);
    FL_INAME(fl_bits) bits = (tb - sb + FL_BIAS) << FL_MANT;  /* 2^n, n >= -bias */
    memcpy(scale, &bits, sizeof *scale);
    return p * r;
}

FL_INLINE FL_REAL FL_INAME(fl_sigmoid)(FL_REAL v)
{
    FL_REAL scale;
    FL_REAL q = FL_INAME(fl_exp_parts)(-FL_FABS(v), &scale);
    FL_REAL e = q * scale + scale;                  /* e^-|v| */
    FL_REAL p = (FL_REAL)1 / ((FL_REAL)1 + e);
    return v >= 0 ? p : e * p;                     /* NaN: e is NaN */
}

FL_INLINE FL_REAL FL_INAME(fl_tanh)(FL_REAL v)
{
    /* tanh|v| = d / (2 - d) with d = 1 - e^(-2|v|) = -(2^n q + (2^n - 1)),
     * which is >= 0 (also at v = 0); v's sign is copied on last, so tanh is
     * exactly odd and tanh(-0) is -0 */
    FL_REAL scale;
    FL_REAL q = FL_INAME(fl_exp_parts)(-2 * FL_FABS(v), &scale);
    FL_REAL d = ((FL_REAL)1 - scale) - q * scale;
    FL_REAL t = d / ((FL_REAL)2 - d);
    return FL_COPYSIGN(t, v);   /* NaN: q is NaN, so t is NaN */
}

#undef FL_EXP_CLAMP
#undef FL_FABS
#undef FL_COPYSIGN
#undef FL_HORNER_HIGH
#undef FL_EXPM1_OVER_U
#undef FL_MANT
#undef FL_BIAS
