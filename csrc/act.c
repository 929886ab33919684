/*
 * act.c -- the kernels' sigmoid and tanh over a plain array, so that tests can
 * measure their error against exact implementations.
 */
#ifndef FL_REAL
#include "fastlstm.h"
#define FL_TEMPLATE_FILE "act.c"
#include "fl_template.h"

int fl_activation(int dtype, int kind, int64_t n, const void *in, void *out)
{
    if (n < 0 || (n > 0 && (!in || !out)) || (kind != FL_ACT_SIGMOID && kind != FL_ACT_TANH))
        return FL_ERR_ARG;
    if (dtype == FL_FLOAT32)
        activation_f32(kind, n, in, out);
    else if (dtype == FL_FLOAT64)
        activation_f64(kind, n, in, out);
    else
        return FL_ERR_DTYPE;
    return FL_OK;
}

#else
#include "fl_kernel.h"
#include "fl_act.h"

static void FL_NAME(activation)(int kind, int64_t n, const FL_REAL *in, FL_REAL *out)
{
    if (kind == FL_ACT_SIGMOID)
        for (int64_t k = 0; k < n; k++)
            out[k] = FL_INAME(fl_sigmoid)(in[k]);
    else
        for (int64_t k = 0; k < n; k++)
            out[k] = FL_INAME(fl_tanh)(in[k]);
}

#endif
