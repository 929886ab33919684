/*
 * act.c -- the kernels' sigmoid and tanh over a plain array, so that tests can
 * measure their error against exact implementations. Each instruction-set
 * copy is compiled (as the pointwise loops are: vectorised, with the
 * multiply-adds the ISA fuses), and fl_activation runs the copy the kernels
 * would run now (fl_isa: the CPU's best, capped by FASTLSTM_ISA), so every
 * copy the kernels use can be tested.
 */
#ifndef FL_REAL
#include "fastlstm.h"
#include "fl_kernel_common.h"
#define FL_TEMPLATE_FILE "act.c"
#define FL_TEMPLATE_ISA
#include "fl_template.h"

#if FL_X86_DISPATCH
#define FL_ACT_DISPATCH(T, isa, kind, n, in, out)                 \
    ((isa) == FL_ISA_AVX512 ? activation_##T##_avx512(kind, n, in, out) \
     : (isa) == FL_ISA_AVX2 ? activation_##T##_avx2(kind, n, in, out)   \
                            : activation_##T##_generic(kind, n, in, out))
#else
#define FL_ACT_DISPATCH(T, isa, kind, n, in, out) activation_##T##_generic(kind, n, in, out)
#endif

int fl_activation(int dtype, int kind, int64_t n, const void *in, void *out)
{
    if (n < 0 || (n > 0 && (!in || !out)) || (kind != FL_ACT_SIGMOID && kind != FL_ACT_TANH))
        return FL_ERR_ARG;
    const int isa = fl_isa();
    (void)isa;
    if (dtype == FL_FLOAT32)
        FL_ACT_DISPATCH(f32, isa, kind, n, in, out);
    else if (dtype == FL_FLOAT64)
        FL_ACT_DISPATCH(f64, isa, kind, n, in, out);
    else
        return FL_ERR_DTYPE;
    return FL_OK;
}

#else
#include "fl_kernel.h"
#include "fl_act.h"

static void FL_INAME(activation)(int kind, int64_t n, const FL_REAL *in, FL_REAL *out)
{
    if (kind == FL_ACT_SIGMOID)
        for (int64_t k = 0; k < n; k++)
            out[k] = FL_INAME(fl_sigmoid)(in[k]);
    else
        for (int64_t k = 0; k < n; k++)
            out[k] = FL_INAME(fl_tanh)(in[k]);
}

#endif
