/*
 * rnn.c -- the plain (Elman) RNN cell's pointwise math, forward and backward.
 *
 *   h' = act(x W_ih^T + b_ih + h W_hh^T + b_hh),   act = tanh or relu
 * The single "gate" saved for backward is h' itself; both derivatives are
 * functions of it (1 - h'^2, and h' > 0 as in PyTorch).
 */
#ifndef FL_REAL
#define FL_TEMPLATE_FILE "rnn.c"
#define FL_TEMPLATE_ISA
#include "fl_template.h"
#else
#include "fl_kernel.h"
#include "fl_act.h"

/* relu written as a < 0 ? 0 : a so that NaN passes through, as in torch */
#define FL_RNN_ACT(relu, a) ((relu) ? ((a) < 0 ? (FL_REAL)0 : (a)) : FL_INAME(fl_tanh)(a))

static inline void FL_INAME(rnn_fwd)(FL_FWD_ROW_ARGS(FL_REAL), int relu)
{
    (void)c; (void)extra; (void)h_in;  /* the saved "gate" is h' itself */
    /* gate blocks never overlap: assert independence (no alias versioning) */
    #pragma omp simd
    for (int j = 0; j < n; j++) {
        FL_REAL a = xp[j] + b_ih[j] + hr[j] + b_hh[j];
        FL_REAL v = FL_RNN_ACT(relu, a);
        h[j] = v;
        y[j] = v;
        xp[j] = v;
    }
}

static inline void FL_INAME(rnn_bwd)(FL_BWD_ROW_ARGS(FL_REAL), int relu)
{
    (void)extra; (void)hprev; (void)dc;
    /* gate blocks never overlap: assert independence (no alias versioning) */
    #pragma omp simd
    for (int j = 0; j < n; j++) {
        FL_REAL v = gates[j];
        FL_REAL d = relu ? (v > 0 ? dh[j] : (FL_REAL)0) : dh[j] * ((FL_REAL)1 - v * v);
        dgx[j] = d;
        dgh[j] = d;
    }
}

static void FL_INAME(rnn_tanh_fwd_row)(FL_FWD_ROW_ARGS(FL_REAL))
{
    FL_INAME(rnn_fwd)(n, ld, ldr, xp, hr, b_ih, b_hh, h_in, h, c, y, extra, 0);
}

static void FL_INAME(rnn_relu_fwd_row)(FL_FWD_ROW_ARGS(FL_REAL))
{
    FL_INAME(rnn_fwd)(n, ld, ldr, xp, hr, b_ih, b_hh, h_in, h, c, y, extra, 1);
}

static void FL_INAME(rnn_tanh_bwd_row)(FL_BWD_ROW_ARGS(FL_REAL))
{
    FL_INAME(rnn_bwd)(n, ld, gates, extra, hprev, dh, dc, dgx, dgh, 0);
}

static void FL_INAME(rnn_relu_bwd_row)(FL_BWD_ROW_ARGS(FL_REAL))
{
    FL_INAME(rnn_bwd)(n, ld, gates, extra, hprev, dh, dc, dgx, dgh, 1);
}

const FL_NAME(fl_cell) FL_INAME(fl_rnn_tanh_cell) = {
    1, 0, 0, 0, 0, FL_INAME(rnn_tanh_fwd_row), FL_INAME(rnn_tanh_bwd_row)
};
const FL_NAME(fl_cell) FL_INAME(fl_rnn_relu_cell) = {
    1, 0, 0, 0, 0, FL_INAME(rnn_relu_fwd_row), FL_INAME(rnn_relu_bwd_row)
};

#endif
