/*
 * lstm.c -- the LSTM cell's pointwise math, forward and backward.
 *
 * Gate pre-activations (PyTorch's layout, blocks of H in the order i, f, g, o):
 *   a = x W_ih^T + b_ih + h W_hh^T + b_hh
 *   i = sigmoid(a_i)  f = sigmoid(a_f)  g = tanh(a_g)  o = sigmoid(a_o)
 *   c' = f c + i g    h' = o tanh(c')
 * Saved for backward: gates [i f g o] and extra [c | tanh(c')], c being the
 * cell state the step started from.
 * The time loop and all GEMMs live in seq.c; argument meanings in fl_kernel.h.
 */
#ifndef FL_REAL
#define FL_TEMPLATE_FILE "lstm.c"
#define FL_TEMPLATE_ISA
#include "fl_template.h"
#else
#include "fl_kernel.h"
#include "fl_act.h"

static void FL_INAME(lstm_fwd_row)(FL_FWD_ROW_ARGS(FL_REAL))
{
    (void)h_in;
    /* gate blocks never overlap: assert independence (no alias versioning) */
    #pragma omp simd
    for (int j = 0; j < n; j++) {
        FL_REAL i = FL_INAME(fl_sigmoid)(xp[j] + b_ih[j] + hr[j] + b_hh[j]);
        FL_REAL f = FL_INAME(fl_sigmoid)(xp[ld + j] + b_ih[ld + j] + hr[ldr + j] + b_hh[ld + j]);
        FL_REAL g = FL_INAME(fl_tanh)(xp[2 * ld + j] + b_ih[2 * ld + j] + hr[2 * ldr + j] + b_hh[2 * ld + j]);
        FL_REAL o = FL_INAME(fl_sigmoid)(xp[3 * ld + j] + b_ih[3 * ld + j] + hr[3 * ldr + j] + b_hh[3 * ld + j]);
        FL_REAL c_prev = c[j];
        FL_REAL c_new = f * c_prev + i * g;
        FL_REAL tc = FL_INAME(fl_tanh)(c_new);
        FL_REAL h_new = o * tc;
        c[j] = c_new;
        h[j] = h_new;
        y[j] = h_new;
        /* gates replace xp in place: column j of xp was read above */
        xp[j] = i;
        xp[ld + j] = f;
        xp[2 * ld + j] = g;
        xp[3 * ld + j] = o;
        extra[j] = c_prev;
        extra[ld + j] = tc;
    }
}

static void FL_INAME(lstm_bwd_row)(FL_BWD_ROW_ARGS(FL_REAL))
{
    (void)hprev;
    const FL_REAL *gi = gates, *gf = gates + ld, *gg = gates + 2 * ld, *go = gates + 3 * ld;
    const FL_REAL *c_prev = extra, *tc = extra + ld;
    FL_REAL *xi = dgx, *xf = dgx + ld, *xg = dgx + 2 * ld, *xo = dgx + 3 * ld;
    FL_REAL *hi = dgh, *hf = dgh + ld, *hg = dgh + 2 * ld, *ho = dgh + 3 * ld;
    /* gate blocks never overlap: assert independence (no alias versioning) */
    #pragma omp simd
    for (int j = 0; j < n; j++) {
        FL_REAL i = gi[j], f = gf[j], g = gg[j], o = go[j], t = tc[j];
        FL_REAL d_h = dh[j];
        FL_REAL d_c = dc[j] + d_h * o * ((FL_REAL)1 - t * t);
        FL_REAL a_i = d_c * g * i * ((FL_REAL)1 - i);
        FL_REAL a_f = d_c * c_prev[j] * f * ((FL_REAL)1 - f);
        FL_REAL a_g = d_c * i * ((FL_REAL)1 - g * g);
        FL_REAL a_o = d_h * t * o * ((FL_REAL)1 - o);
        dc[j] = d_c * f;
        xi[j] = hi[j] = a_i;
        xf[j] = hf[j] = a_f;
        xg[j] = hg[j] = a_g;
        xo[j] = ho[j] = a_o;
    }
}

const FL_NAME(fl_cell) FL_INAME(fl_lstm_cell) = {
    4, 2, 1, 0, 0, FL_INAME(lstm_fwd_row), FL_INAME(lstm_bwd_row)
};

#endif
