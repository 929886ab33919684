/*
 * gru.c -- the GRU cell's pointwise math, forward and backward.
 *
 * PyTorch's GRU (blocks of H in the order r, z, n):
 *   r = sigmoid(x W_ir^T + b_ir + h W_hr^T + b_hr)
 *   z = sigmoid(x W_iz^T + b_iz + h W_hz^T + b_hz)
 *   n = tanh(x W_in^T + b_in + r * (h W_hn^T + b_hn))
 *   h' = (1 - z) n + z h
 * Saved for backward: gates [r z n] and extra [h W_hn^T + b_hn].
 * The n gate makes the recurrent-side gradient differ from the input-side
 * one (it is scaled by r), and h reaches h' directly through z h.
 */
#ifndef FL_REAL
#define FL_TEMPLATE_FILE "gru.c"
#define FL_TEMPLATE_ISA
#include "fl_template.h"
#else
#include "fl_kernel.h"
#include "fl_act.h"

static void FL_INAME(gru_fwd_row)(FL_FWD_ROW_ARGS(FL_REAL))
{
    (void)c;
    /* gate blocks never overlap: assert independence (no alias versioning) */
    #pragma omp simd
    for (int j = 0; j < n; j++) {
        FL_REAL r = FL_INAME(fl_sigmoid)(xp[j] + b_ih[j] + hr[j] + b_hh[j]);
        FL_REAL z = FL_INAME(fl_sigmoid)(xp[ld + j] + b_ih[ld + j] + hr[ldr + j] + b_hh[ld + j]);
        FL_REAL hn = hr[2 * ldr + j] + b_hh[2 * ld + j];
        FL_REAL ng = FL_INAME(fl_tanh)(xp[2 * ld + j] + b_ih[2 * ld + j] + r * hn);
        FL_REAL h_new = ((FL_REAL)1 - z) * ng + z * h_in[j];
        h[j] = h_new;
        y[j] = h_new;
        /* gates replace xp in place: column j of xp was read above */
        xp[j] = r;
        xp[ld + j] = z;
        xp[2 * ld + j] = ng;
        extra[j] = hn;
    }
}

static void FL_INAME(gru_bwd_row)(FL_BWD_ROW_ARGS(FL_REAL))
{
    (void)dc;
    /* gate blocks never overlap: assert independence (no alias versioning) */
    #pragma omp simd
    for (int j = 0; j < n; j++) {
        FL_REAL r = gates[j], z = gates[ld + j], ng = gates[2 * ld + j], hn = extra[j];
        FL_REAL d_h = dh[j];
        FL_REAL a_n = d_h * ((FL_REAL)1 - z) * ((FL_REAL)1 - ng * ng);
        FL_REAL a_z = d_h * (hprev[j] - ng) * z * ((FL_REAL)1 - z);
        FL_REAL a_r = a_n * hn * r * ((FL_REAL)1 - r);
        dh[j] = d_h * z;
        dgx[j] = a_r;
        dgx[ld + j] = a_z;
        dgx[2 * ld + j] = a_n;
        dgh[j] = a_r;
        dgh[ld + j] = a_z;
        dgh[2 * ld + j] = a_n * r;
    }
}

const FL_NAME(fl_cell) FL_INAME(fl_gru_cell) = {
    3, 1, 0, 1, 1, FL_INAME(gru_fwd_row), FL_INAME(gru_bwd_row)
};

#endif
