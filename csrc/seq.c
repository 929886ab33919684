/*
 * seq.c -- the time loop shared by every cell, forward and backward.
 *
 * Forward:
 *   1. one GEMM projects the inputs of all T steps: XP = X W_ih^T;
 *   2. per step, one GEMM over the still-active rows: R = H_{t-1} W_hh^T,
 *      then the cell's fused pointwise pass (bias, activations, state update).
 * Backward:
 *   per step (in reverse processing order) the cell's pointwise gradient and
 *   one GEMM carrying dh back through W_hh; dx, dW_ih, dW_hh and the bias
 *   gradients are whole-sequence GEMMs and column sums after the loop.
 *
 * Ragged batches: rows are visited in order of decreasing length (a stable
 * counting sort), so the rows active at processing step s are always a
 * prefix 0..nact-1 of the sorted order and the per-step GEMM only covers them.
 * The state buffers hs/cs (and dh/dc) live in that sorted order; everything
 * indexed by (t, b) -- x, y, the saved workspace -- keeps the caller's layout.
 * In reverse mode row b processes time positions lengths[b]-1 down to 0.
 *
 * Threads: a time loop with enough rows per thread splits the batch's
 * rows (forward_rows, bwd_rows: each thread runs every step of its rows
 * alone); smaller batches split the hidden units, with a barrier per step
 * (fwd_steps, bwd_steps; also large calls above FL_THREAD_MAX_B rows, the
 * forward after each thread has projected all of x for its units, the
 * backward before its whole-sequence products on the BLAS:
 * fl_pre_projection, fl_post_products). A forward whose steps
 * stay on one thread may have a second project the input ahead of them
 * (pipe_project).
 *
 * No allocation happens inside the time loop.
 */
#ifndef FL_REAL
#include <limits.h>
#include <stdlib.h>
#include <string.h>
#include "fastlstm.h"
#include "fl_kernel_common.h"
#if defined(__x86_64__) || defined(_M_X64) || defined(__SSE__)
#include <xmmintrin.h>
#include <emmintrin.h>
#define FL_HAVE_MXCSR 1
#endif

/* Denormals are flushed to zero inside the kernels (sigmoid gates and their
 * gradients produce them, and they are very slow on x86); the caller's
 * floating-point mode is restored before returning. MXCSR is per thread. */
static unsigned fl_denormals_off(void)
{
#ifdef FL_HAVE_MXCSR
    unsigned saved = _mm_getcsr();
    _mm_setcsr(saved | 0x8040u);  /* FTZ (bit 15) | DAZ (bit 6) */
    return saved;
#else
    return 0;
#endif
}

static void fl_denormals_restore(unsigned saved)
{
#ifdef FL_HAVE_MXCSR
    _mm_setcsr(saved);
#else
    (void)saved;
#endif
}

int fl_cell_gates(int cell)
{
    switch (cell) {
    case FL_LSTM: return 4;
    case FL_GRU: return 3;
    case FL_RNN_TANH: case FL_RNN_RELU: return 1;
    default: return 0;
    }
}

int fl_cell_extra(int cell)
{
    switch (cell) {
    case FL_LSTM: return 2;
    case FL_GRU: return 1;
    default: return 0;
    }
}

/* Sizes valid, and every GEMM dimension and leading dimension fits an int. */
static int fl_check_sizes(int cell, int T, int B, int I, int H)
{
    int G = fl_cell_gates(cell);
    if (G == 0)
        return FL_ERR_CELL;
    if (T < 0 || B < 0 || I < 1 || H < 1)
        return FL_ERR_ARG;
    if ((long long)T * B > INT_MAX || (long long)G * H > INT_MAX)
        return FL_ERR_TOO_LARGE;
    return FL_OK;
}

/* Stable sort of the batch rows by decreasing length (counting sort), giving
 * perm[j] = original row at sorted position j and len[j] = its length.
 * lengths NULL means every row has length T. */
static int fl_sort_rows(const int64_t *lengths, int T, int B, int *perm, int *len)
{
    if (!lengths) {
        for (int j = 0; j < B; j++) {
            perm[j] = j;
            len[j] = T;
        }
        return FL_OK;
    }
    int *count = calloc((size_t)T + 2, sizeof(int));
    if (!count)
        return FL_ERR_NOMEM;
    for (int b = 0; b < B; b++) {
        if (lengths[b] < 0 || lengths[b] > T) {
            free(count);
            return FL_ERR_LENGTHS;
        }
        count[T - lengths[b]]++;  /* bucket 0 holds the longest */
    }
    int start = 0;
    for (int k = 0; k <= T; k++) {
        int n = count[k];
        count[k] = start;
        start += n;
    }
    for (int b = 0; b < B; b++) {
        int pos = count[T - lengths[b]]++;
        perm[pos] = b;
        len[pos] = (int)lengths[b];
    }
    free(count);
    return FL_OK;
}

/* Ragged batches keep only the valid steps: the N = sum(lengths) rows (t, b)
 * with t < lengths[b], in time-major order (t, then b). idx[t * B + b] is the
 * packed row of (t, b), or -1 at a padded step, and src[r] = t * B + b is the
 * (t, b) of packed row r (src may be NULL). Without lengths N = T * B and
 * idx is the identity, so callers use it only when lengths are given. */
static int64_t fl_pack_index(const int64_t *lengths, int T, int B, int *idx, int *src)
{
    int64_t n = 0;
    for (int t = 0; t < T; t++)
        for (int b = 0; b < B; b++) {
            const int r = t * B + b, valid = t < lengths[b];
            idx[r] = valid ? (int)n : -1;
            if (valid && src)
                src[n] = r;
            n += valid;
        }
    return n;
}

/* The rows of each of n threads when a time loop splits the batch's rows
 * (sorted positions; rows in sorted order have decreasing lengths): group
 * k is gpos[g0[k] .. g0[k + 1]), a block of B / n rows of a dense batch,
 * or every n-th row of a ragged one from the k-th on, so that the rows of
 * a group still active at a step are a prefix of them and the groups get
 * about the same number of steps. Returns the largest group's size. */
static int fl_row_groups(int ragged, int B, int n, int *gpos, int *g0)
{
    int maxm = 0;
    for (int k = 0, p = 0; k < n; k++) {
        g0[k] = p;
        if (ragged)
            for (int j = k; j < B; j += n)
                gpos[p++] = j;
        else
            for (int j = (int)((long long)B * k / n); j < (int)((long long)B * (k + 1) / n); j++)
                gpos[p++] = j;
        g0[k + 1] = p;
        maxm = p - g0[k] > maxm ? p - g0[k] : maxm;
    }
    return maxm;
}

int64_t fl_workspace_rows(const int64_t *lengths, int T, int B)
{
    if (!lengths)
        return (int64_t)T * B;
    int64_t n = 0;
    for (int b = 0; b < B; b++)
        n += lengths[b] < 0 ? 0 : (lengths[b] > T ? T : lengths[b]);
    return n;
}

/* A call's scratch buffer, from the caller's allocator or malloc. */
static void *fl_scratch(const fl_allocator *m, size_t bytes)
{
    return m->alloc ? m->alloc(m->ctx, bytes) : malloc(bytes);
}

/* Pieces of scratch start on a cache line: a vector load that straddles two
 * lines costs two, and the panels and strips are read with full-width
 * loads (unaligned, they made the per-step product ~12% slower). Counts of
 * values are rounded up to whole lines (fl_lines), and the buffer gets
 * FL_LINE bytes more than its pieces so that its start can be moved up to
 * a line (fl_line_start). */
#define FL_LINE 64
static size_t fl_lines(size_t n, size_t value_bytes)
{
    const size_t per = FL_LINE / value_bytes;
    return (n + per - 1) / per * per;
}

static void *fl_line_start(void *p)
{
    return (void *)(((uintptr_t)p + (FL_LINE - 1)) & ~(uintptr_t)(FL_LINE - 1));
}

static void fl_scratch_release(const fl_allocator *m, void *p, size_t bytes)
{
    if (!p)
        return;
    if (m->alloc)
        m->release(m->ctx, p, bytes);
    else
        free(p);
}

/* Zero `bytes` bytes at p with stores that bypass the cache where they
 * can (whole 16-byte pieces): for output that is not read again soon, it
 * spares reading the lines in first. fl_stream_done() orders them before
 * the stores that follow (call it before others may read the zeros). */
static void fl_zero_stream(void *p, size_t bytes)
{
#if defined(__SSE2__) || defined(_M_X64)
    char *c = p;
    size_t head = (16 - ((uintptr_t)c & 15)) & 15;
    if (head > bytes)
        head = bytes;
    memset(c, 0, head);
    c += head, bytes -= head;
    const __m128i z = _mm_setzero_si128();
    for (; bytes >= 16; c += 16, bytes -= 16)
        _mm_stream_si128((__m128i *)c, z);
    memset(c, 0, bytes);
#else
    memset(p, 0, bytes);
#endif
}

static void fl_stream_done(void)
{
#if defined(__SSE2__) || defined(_M_X64)
    _mm_sfence();
#endif
}

#define FL_TEMPLATE_FILE "seq.c"
#include "fl_template.h"

/* The best instruction-set level of this CPU, capped by the environment
 * variable FASTLSTM_ISA ("generic", "avx2" or "avx512") when set, so that
 * tests can run every copy on one machine. Reads only; no state is kept. */
int fl_isa(void)
{
    int cap = FL_ISA_AVX512;
    const char *env = getenv("FASTLSTM_ISA");
    if (env && strcmp(env, "generic") == 0)
        cap = FL_ISA_GENERIC;
    else if (env && strcmp(env, "avx2") == 0)
        cap = FL_ISA_AVX2;
    (void)cap;
#if FL_X86_DISPATCH
    if (cap >= FL_ISA_AVX512 && __builtin_cpu_supports("avx512f") &&
        __builtin_cpu_supports("avx512dq") && __builtin_cpu_supports("avx512vl") &&
        __builtin_cpu_supports("avx512bw"))
        return FL_ISA_AVX512;
    if (cap >= FL_ISA_AVX2 && __builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma"))
        return FL_ISA_AVX2;
#endif
    return FL_ISA_GENERIC;
}

/* FASTLSTM_TEST_SOLO=i makes the leader of a threaded time loop (forward or
 * backward) ask to go on alone at the loop's i-th barrier (from 0), as it
 * does when the others lose their CPUs (fl_solo_wait), so that tests can
 * check that path; -1 when unset. Reads only; no state is kept. */
int fl_test_solo_step(void)
{
    const char *env = getenv("FASTLSTM_TEST_SOLO");
    return env && *env ? atoi(env) : -1;
}

/* FASTLSTM_TEST_UNITS=1 makes a time loop that would split its batch's
 * rows across threads (forward_rows, bwd_rows) split the hidden units
 * instead, as smaller batches do, so that tests can check that path and
 * the leader going on alone at any batch. Reads only; no state is kept. */
int fl_test_units(void)
{
    const char *env = getenv("FASTLSTM_TEST_UNITS");
    return env && strcmp(env, "1") == 0;
}

/* What both entry points check before running anything. */
static int fl_enter(int dtype, int cell, int T, int B, int I, int H)
{
    int st = fl_check_sizes(cell, T, B, I, H);
    if (st == FL_OK && dtype != FL_FLOAT32 && dtype != FL_FLOAT64)
        st = FL_ERR_DTYPE;
    return st;
}

int fl_forward(const fl_forward_args *a, const fl_blas *blas)
{
    int st = a ? fl_enter(a->dtype, a->cell, a->T, a->B, a->n_in, a->H) : FL_ERR_ARG;
    if (st != FL_OK)
        return st;
    unsigned mode = fl_denormals_off();
    st = a->dtype == FL_FLOAT32 ? forward_f32(a, blas) : forward_f64(a, blas);
    fl_denormals_restore(mode);
    return st;
}

int fl_backward(const fl_backward_args *a, const fl_blas *blas)
{
    int st = a ? fl_enter(a->dtype, a->cell, a->T, a->B, a->n_in, a->H) : FL_ERR_ARG;
    if (st != FL_OK)
        return st;
    unsigned mode = fl_denormals_off();
    st = a->dtype == FL_FLOAT32 ? backward_f32(a, blas) : backward_f64(a, blas);
    fl_denormals_restore(mode);
    return st;
}

#else /* ---------------- templated body ---------------- */
#include "fl_kernel.h"

#define FL_PICK(isa)                                                  \
    switch (cell) {                                                   \
    case FL_LSTM: return &FL_NAME_ISA(fl_lstm_cell, isa);             \
    case FL_GRU: return &FL_NAME_ISA(fl_gru_cell, isa);               \
    case FL_RNN_TANH: return &FL_NAME_ISA(fl_rnn_tanh_cell, isa);     \
    case FL_RNN_RELU: return &FL_NAME_ISA(fl_rnn_relu_cell, isa);     \
    default: return NULL;                                             \
    }

/* The cell's pointwise code compiled for instruction-set level `isa`. */
static const FL_NAME(fl_cell) *FL_NAME(pick_cell)(int cell, int isa)
{
#if FL_X86_DISPATCH
    if (isa == FL_ISA_AVX512) { FL_PICK(_avx512) }
    if (isa == FL_ISA_AVX2) { FL_PICK(_avx2) }
#endif
    (void)isa;
    FL_PICK(_generic)
}
#undef FL_PICK

/* Rows of n values, for i0 <= i < i1: dst row i - i0 = src row rows[i]
 * (gather_rows), or dst row rows[i] = src row i (scatter_rows). */
static void FL_NAME(gather_rows)(FL_REAL *dst, const FL_REAL *src, const int *rows, size_t i0,
                                 size_t i1, int n)
{
    for (size_t i = i0; i < i1; i++)
        memcpy(dst + (i - i0) * n, src + (size_t)rows[i] * n, sizeof(FL_REAL) * (size_t)n);
}

/* xg row idx[r] = x row r for the valid rows r (idx[r] >= 0) of x (T * B rows) */
static void FL_NAME(gather_x)(FL_REAL *xg, const FL_REAL *x, const int *idx, int T, int B, int I)
{
    for (size_t r = 0; r < (size_t)T * B; r++)
        if (idx[r] >= 0)
            memcpy(xg + (size_t)idx[r] * I, x + r * I, sizeof(FL_REAL) * (size_t)I);
}

static void FL_NAME(scatter_rows)(FL_REAL *dst, const FL_REAL *src, const int *rows, size_t i0,
                                  size_t i1, int n)
{
    for (size_t i = i0; i < i1; i++)
        memcpy(dst + (size_t)rows[i] * n, src + i * n, sizeof(FL_REAL) * (size_t)n);
}

/* dst[perm[j]] = src[j] (unsort == 1) or dst[j] = src[perm[j]] (unsort == 0)
 * for B rows of H; src NULL means zeros. */
static void FL_NAME(permute_rows)(FL_REAL *dst, const FL_REAL *src, const int *perm,
                                  int B, int H, int unsort)
{
    for (int j = 0; j < B; j++) {
        FL_REAL *d = dst + (size_t)(unsort ? perm[j] : j) * H;
        if (!src)
            memset(d, 0, sizeof(FL_REAL) * (size_t)H);
        else
            memcpy(d, src + (size_t)(unsort ? j : perm[j]) * H, sizeof(FL_REAL) * (size_t)H);
    }
}

/* Everything the steps of one forward call share; each thread owns the
 * hidden units [u[tid], u[tid + 1]) of every row (all G gates of them). */
typedef struct {
    const FL_NAME(fl_cell) *cell;
    const fl_blas *blas;
    int isa, T, B, H, G, EH, reverse, training, nthreads, pack;
    const FL_REAL *w_hh, *b_ih, *b_hh;
    FL_REAL *xp, *ex, *hs[2], *cs, *y, *hprev, *extra;
    FL_REAL *r, *wt;  /* per thread: R (B x G*nu) and packed w_hh slice (H x G*nu), */
    size_t r_stride, wt_stride;  /* r_stride and wt_stride values apart */
    FL_REAL *work;    /* per thread: work_stride values of scratch for fl_gemm_panel */
    size_t work_stride;
    const int *perm, *len, *idx;  /* idx: packed workspace row of (t, b), or NULL */
    const int *tstart;  /* ragged: first workspace row of each time step (T + 1) */
    const int *src;     /* ragged: the (t, b) of each workspace row (N) */
    FL_REAL *xg;        /* ragged, in chunks: the valid rows of x of a chunk */
    /* XP is projected `chunk` steps at a time, just before they run: with
     * several threads each projects its own columns of it */
    const FL_REAL *x, *w_ih;
    FL_REAL *pih;  /* per thread: packed w_ih slice (G panel sets), with threads */
    size_t pih_stride;
    int I, chunk;  /* in training XP is the gates array, every row of it */
    int own_proj;  /* XP projected chunk by chunk on the panel kernel (pih) */
    /* pipelined projection (one thread runs the steps, another projects
     * the chunks ahead of them): chunks claimed in order from pnext, and
     * pdone[k] set once chunk k of XP is written */
    int pipe, nchunks;
    atomic_int pnext;
    atomic_int *pdone;
    atomic_int failed;
    int u[FL_MAX_THREADS + 1];
    fl_barrier bar;
} FL_NAME(fwd_ctx);

/* XP[:, g*H + u0 .. + nu] = x W_ih[g*H + u0 .. + nu]^T for every gate g, for
 * the M rows of x given: a thread's own columns of the input projection, on
 * the panel kernel. P holds the G panels sets packed by pack_ih_slice. */
static void FL_NAME(project_slice)(int isa, const FL_REAL *x, int M, int I, const FL_REAL *P,
                                   int G, int H, int u0, int nu, FL_REAL *xp, FL_REAL *work)
{
    const size_t np = FL_NAME(fl_panel_size)(isa, I, nu);
    if (nu == H && H % FL_PW_OF(isa) == 0) {
        /* all units, whole panels: the G panel sets are those of w_ih^T
         * (I x G*H), and XP's G blocks are adjacent: one product */
        FL_NAME(fl_gemm_panel)(isa, 0, M, G * H, I, 0, x, I, P, xp, G * H, work);
        return;
    }
    for (int g = 0; g < G; g++)
        FL_NAME(fl_gemm_panel)(isa, 0, M, nu, I, 0, x, I, P + g * np, xp + (size_t)g * H + u0,
                               G * H, work);
}

static void FL_NAME(pack_ih_slice)(int isa, const FL_REAL *w_ih, int I, int G, int H, int u0,
                                   int nu, FL_REAL *P)
{
    const size_t np = FL_NAME(fl_panel_size)(isa, I, nu);
    for (int g = 0; g < G; g++)
        FL_NAME(fl_pack_panels)(isa, w_ih, I, I, nu, 1, H, g * H + u0, nu, P + g * np);
}

/* Workspace rows [*r0, *r1) of processing steps [s0, s1): in time order
 * rows are grouped by time step, and in reverse mode (dense batches only;
 * ragged reverse runs as one chunk) step s is time T - 1 - s. */
static void FL_NAME(chunk_rows)(const FL_NAME(fwd_ctx) *c, int s0, int s1, size_t *r0,
                                size_t *r1)
{
    if (c->tstart) {
        *r0 = (size_t)c->tstart[s0];
        *r1 = (size_t)c->tstart[s1];
    } else if (c->reverse) {
        *r0 = (size_t)(c->T - s1) * c->B;
        *r1 = (size_t)(c->T - s0) * c->B;
    } else {
        *r0 = (size_t)s0 * c->B;
        *r1 = (size_t)s1 * c->B;
    }
}

/* Thread k's units of step s (nact active rows), on thread k's R, packed
 * weights and scratch: the projection of the chunk of steps starting at s
 * when `project` (its workspace rows [r0, r1)), the product and the
 * pointwise pass. xoff: workspace row of XP's first row. Returns 0, or -1
 * when the one-thread projection found no memory. */
static int FL_NAME(fwd_slice)(FL_NAME(fwd_ctx) *c, int k, int s, int nact, int project,
                              size_t r0, size_t r1, size_t xoff)
{
    const int B = c->B, H = c->H, G = c->G, GH = G * H, EH = c->EH;
    const int u0 = c->u[k], nu = c->u[k + 1] - u0, GN = G * nu;
    const FL_NAME(fl_cell) *cell = c->cell;
    FL_REAL *r = c->r + (size_t)k * c->r_stride;
    FL_REAL *work = c->work + (size_t)k * c->work_stride;
    FL_REAL *wt = c->pack ? c->wt + (size_t)k * c->wt_stride : NULL;
    FL_REAL *pih = c->own_proj ? c->pih + (size_t)k * c->pih_stride : NULL;
    const int ldr = wt ? nu : H;  /* gate stride within a row of R */
    const int rrow = wt ? GN : GH;

    if (project) {
        FL_REAL *dst = c->xp + (r0 - xoff) * GH;
        const FL_REAL *xs = c->xg ? c->xg : c->x + r0 * c->I;  /* (xg: ragged, gathered) */
        if (pih)  /* thread k's columns; only its units read them */
            FL_NAME(project_slice)(c->isa, xs, (int)(r1 - r0), c->I, pih, G, H, u0, nu, dst,
                                   work);
        else if (FL_NAME(fl_gemm_whole)(c->blas, c->isa, 0, 1, (int)(r1 - r0), GH, c->I, xs,
                                        c->I, c->w_ih, c->I, dst, GH) != FL_OK)
            return -1;
    }
    const FL_REAL *hin = c->hs[s & 1];
    FL_REAL *hout = c->hs[(s + 1) & 1];
    const int pw = FL_PW_OF(c->isa);
    if (wt && nact < 4 && GN > 4 * pw && (s & 1)) {
        /* a row or few against weights that may not fit in L1 (the
         * product streams them, four panels at a time): odd steps take
         * the later panels first, so that each step starts on the panels
         * the step before touched last, still in L1 */
        const int npan = (GN + pw - 1) / pw, p0 = (npan / 2 + 3) / 4 * 4;
        const int c0 = p0 * pw;
        FL_NAME(fl_gemm_panel)(c->isa, 0, nact, GN - c0, H, 0, hin, H,
                               wt + (size_t)p0 * H * pw, r + c0, GN, work);
        FL_NAME(fl_gemm_panel)(c->isa, 0, nact, c0, H, 0, hin, H, wt, r, GN, work);
    } else if (wt)
        FL_NAME(fl_gemm_panel)(c->isa, 0, nact, GN, H, 0, hin, H, wt, r, GN, work);
    else
        FL_NAME(fl_gemm)(c->blas, c->isa, 0, 1, nact, GH, H, 1, hin, H, c->w_hh, H, 0,
                         r, GH);
    for (int j = 0; j < nact; j++) {
        int t = c->reverse ? c->len[j] - 1 - s : s;
        size_t yrow = (size_t)t * B + c->perm[j];               /* in y */
        size_t row = c->idx ? (size_t)c->idx[yrow] : yrow;      /* in the workspace */
        if (c->training)
            memcpy(c->hprev + row * H + u0, hin + (size_t)j * H + u0,
                   sizeof(FL_REAL) * (size_t)nu);
        FL_REAL *ex = EH ? (c->training ? c->extra + row * EH : c->ex + (size_t)j * EH) + u0
                         : NULL;
        cell->fwd(nu, H, ldr, c->xp + (row - xoff) * GH + u0, r + (size_t)j * rrow,
                  c->b_ih + u0, c->b_hh + u0, hin + (size_t)j * H + u0,
                  hout + (size_t)j * H + u0, c->cs ? c->cs + (size_t)j * H + u0 : NULL,
                  c->y + yrow * H + u0, ex);
    }
    return 0;
}

/* ---- the projection pipelined beside the time loop ----
 * When the steps run on one thread (too little work per step to split) but
 * a second is allowed, the second projects XP a chunk at a time ahead of
 * them, and the steps wait only for a chunk not yet done: at batch 1 the
 * projection was a fifth to a third of a forward. Any thread may project
 * any chunk: a chunk is claimed from pnext, in order, and the stepping
 * thread claims the one it needs itself when nobody has (a projector
 * thread late to start, or without a CPU), so it never waits on a thread
 * that has not begun. XP holds every row (xoff 0); each chunk is one
 * product on the packed w_ih^T (slot 0 of pih, all units), the same
 * whichever thread runs it. */
static void FL_NAME(pipe_project)(FL_NAME(fwd_ctx) *c, int k, int tid)
{
    const int s0 = k * c->chunk, s1 = c->T - s0 < c->chunk ? c->T : s0 + c->chunk;
    size_t r0, r1;
    FL_NAME(chunk_rows)(c, s0, s1, &r0, &r1);
    FL_NAME(project_slice)(c->isa, c->x + r0 * c->I, (int)(r1 - r0), c->I, c->pih, c->G, c->H,
                           0, c->H, c->xp + r0 * (size_t)c->G * c->H,
                           c->work + (size_t)tid * c->work_stride);
    atomic_store_explicit(&c->pdone[k], 1, memory_order_release);
}

/* The stepping thread: returns once chunk k of XP is written. */
static void FL_NAME(pipe_wait)(FL_NAME(fwd_ctx) *c, int k)
{
    unsigned spins = 0;
    while (!atomic_load_explicit(&c->pdone[k], memory_order_acquire)) {
        int want = k;  /* every chunk before k is done, so pnext >= k */
        if (atomic_compare_exchange_strong(&c->pnext, &want, k + 1)) {
            FL_NAME(pipe_project)(c, k, 0);
            return;
        }
        fl_spin_pause(&spins);  /* another thread is projecting it */
    }
}

/* The projecting thread: claims chunks in order until none is left. */
static void FL_NAME(pipe_worker)(FL_NAME(fwd_ctx) *c, int tid)
{
    for (;;) {
        const int k = atomic_fetch_add(&c->pnext, 1);
        if (k >= c->nchunks)
            return;
        FL_NAME(pipe_project)(c, k, tid);
    }
}

/* The time loop, for thread `tid`'s units. States are double-buffered:
 * step s reads hs[s & 1] and writes hs[(s + 1) & 1], so one barrier per step
 * separates the threads' writes from the next step's reads. When the other
 * threads lose their CPUs (fl_solo_wait), thread 0 runs every thread's
 * units from then on, in the same order and on the same packed weights, so
 * the results are the same; the others leave. */
static void FL_NAME(fwd_steps)(FL_NAME(fwd_ctx) *c, int tid)
{
    const int G = c->G, H = c->H;
    const int u0 = c->u[tid], nu = c->u[tid + 1] - u0, GN = G * nu;
    /* this thread's packed weights (one slot of each per thread) */
    if (c->pack)  /* column g*nu + n of this thread's w_hh^T is row g*H + u0 + n of w_hh */
        FL_NAME(fl_pack_panels)(c->isa, c->w_hh, H, H, GN, 1, H, u0, nu,
                                c->wt + (size_t)tid * c->wt_stride);
    if (c->own_proj && !c->pipe)  /* (pipelined: packed before the threads start) */
        FL_NAME(pack_ih_slice)(c->isa, c->w_ih, c->I, G, H, u0, nu,
                               c->pih + (size_t)tid * c->pih_stride);
    if (c->idx) {  /* y is zero at padded steps: this thread's units of them */
        for (size_t r = 0; r < (size_t)c->T * c->B; r++)
            if (c->idx[r] < 0)
                fl_zero_stream(c->y + r * H + u0, sizeof(FL_REAL) * (size_t)nu);
        fl_stream_done();
    }

    fl_solo solo;
    fl_solo_init(&solo, tid, c->nthreads);
    int nact = c->B, s_end = 0;
    size_t xoff = 0, r0 = 0, r1 = 0;  /* xoff: workspace row of XP's first row */
    for (int s = 0; s < c->T; s++) {
        while (nact > 0 && c->len[nact - 1] <= s)
            nact--;
        if (nact == 0)
            break;
        fl_solo_step(&solo);
        int project = s == s_end;
        if (project)  /* the next chunk of steps */
            s_end = c->T - s < c->chunk ? c->T : s + c->chunk;
        if (project && c->pipe) {  /* its XP from the pipeline (XP: every row) */
            FL_NAME(pipe_wait)(c, s / c->chunk);
            project = 0;
        } else if (project) {  /* projected here */
            FL_NAME(chunk_rows)(c, s, s_end, &r0, &r1);
            xoff = c->training ? 0 : r0;
            if (c->xg) {
                /* ragged: the chunk's valid rows of x, gathered just before
                 * their product (a share per thread; every thread's
                 * projection reads them all). The last chunk's products
                 * are done: every thread has passed a barrier since. */
                for (int k = solo.k0; k < solo.k1; k++) {
                    const size_t n = r1 - r0, a0 = r0 + n * k / c->nthreads;
                    const size_t a1 = r0 + n * (k + 1) / c->nthreads;
                    FL_NAME(gather_rows)(c->xg + (a0 - r0) * c->I, c->x, c->src, a0, a1, c->I);
                }
                if (c->nthreads > 1 && fl_solo_wait(&solo, &c->bar) && tid != 0)
                    return;  /* thread 0 goes on alone */
            }
        }
        for (int k = solo.k0; k < solo.k1; k++)
            if (FL_NAME(fwd_slice)(c, k, s, nact, project, r0, r1, xoff) != 0) {
                atomic_store(&c->failed, 1);  /* one thread: nobody waits on it */
                return;
            }
        if (c->nthreads > 1 && fl_solo_wait(&solo, &c->bar) && tid != 0)
            return;  /* thread 0 goes on alone */
    }
}

static void FL_NAME(fwd_worker)(void *ctx, int tid)
{
    FL_NAME(fwd_ctx) *c = ctx;
    if (c->pipe && tid == 1)
        FL_NAME(pipe_worker)(c, tid);
    else
        FL_NAME(fwd_steps)(c, tid);
}

/* Thread tid's share (of n) of the panels of a K x ncols matrix, packed
 * into P as fl_pack_panels would pack all of them: src is that matrix (row
 * stride ld), or with by_rows its transpose (column c is row c of src). */
static void FL_NAME(pack_share)(int isa, const FL_REAL *src, int ld, int K, int ncols,
                                int by_rows, FL_REAL *P, int tid, int n)
{
    const int pw = FL_PW_OF(isa), np = (ncols + pw - 1) / pw;
    const int p0 = (int)((long long)np * tid / n), p1 = (int)((long long)np * (tid + 1) / n);
    if (p1 > p0) {
        const int c0 = p0 * pw, c1 = p1 * pw < ncols ? p1 * pw : ncols;
        FL_NAME(fl_pack_panels)(isa, src, ld, K, c1 - c0, by_rows, 0, c0, c1 - c0,
                                P + (size_t)p0 * K * pw);
    }
}

/* ---- the forward with the batch split across threads ----
 * Rows of a batch never meet, so with several threads each can own some
 * rows and run every step of them alone: no barrier per step (a late
 * partner holds nobody up), and each thread's per-step products are those
 * of a smaller batch on the whole of w_ih and w_hh (packed once, shared:
 * the threads pack a share of the panels each and meet once). Thread k
 * projects its rows of x a chunk of steps at a time (on the panel kernel:
 * the BLAS's pool would spin beside these threads), then per step
 * multiplies their h_{t-1} by w_hh^T and runs the pointwise pass. A dense
 * batch gives each thread a block of rows; a ragged one deals its rows,
 * sorted by decreasing length, round the threads, so that each thread's
 * rows still active at a step are a prefix of its own and the threads get
 * about the same number of steps. */
typedef struct {
    const FL_NAME(fl_cell) *cell;
    int isa, T, B, I, H, G, EH, reverse, training, nthreads, ngroups, chunk;
    const FL_REAL *x, *w_ih, *w_hh, *b_ih, *b_hh, *h0, *c0;
    FL_REAL *y, *gates, *hprev, *extra, *h_n, *c_n;
    FL_REAL *pih, *phh;  /* w_ih^T (I x GH) and w_hh^T (H x GH) in panels, shared */
    FL_REAL *scratch;    /* per thread: stride values (rows_scratch) */
    size_t stride;
    int *soff;           /* per thread: chunk + 1 ints */
    const int *perm, *len;  /* batch row and length of each sorted position */
    const int *idx;      /* ragged: workspace row of (t, b) (-1: padded), else NULL */
    const int *gpos;     /* sorted positions of group k: gpos[g0[k] .. g0[k + 1]) */
    int g0[FL_MAX_THREADS + 1];
    fl_barrier bar;
} FL_NAME(rows_ctx);

/* A thread's scratch for m rows, chunks of ch steps: R, the chunk's XP
 * and x rows, ex (inference), the states h (two) and c, and the products'
 * scratch, each on a cache line. */
static size_t FL_NAME(rows_scratch)(int m, int ch, int I, int H, int G, int EH, int has_c,
                                    size_t *at)
{
    const size_t GH = (size_t)G * H, mc = (size_t)m * ch;
    size_t n = 0;
#define FL_PIECE(i, v) (at[i] = n, n += fl_lines((v), sizeof(FL_REAL)))
    FL_PIECE(0, m * GH);                                      /* R */
    FL_PIECE(1, mc * GH);                                     /* XP of a chunk */
    FL_PIECE(2, mc * I);                                      /* x rows of a chunk */
    FL_PIECE(3, (size_t)m * EH);                              /* ex (inference) */
    FL_PIECE(4, (size_t)m * H);                               /* h, even steps */
    FL_PIECE(5, (size_t)m * H);                               /* h, odd steps */
    FL_PIECE(6, has_c ? (size_t)m * H : 0);                   /* c */
    size_t w1 = fl_panel_work(0, m, H), w2 = fl_panel_work(0, (int)mc, I);
    FL_PIECE(7, w1 > w2 ? w1 : w2);                           /* product scratch */
#undef FL_PIECE
    return n;
}

/* Every step of group k's rows, on thread tid's scratch. */
static void FL_NAME(rows_group)(FL_NAME(rows_ctx) *c, int k, int tid)
{
    const FL_NAME(fl_cell) *cell = c->cell;
    const int T = c->T, B = c->B, I = c->I, H = c->H, GH = c->G * H, EH = c->EH;
    const int *pos = c->gpos + c->g0[k], m = c->g0[k + 1] - c->g0[k];
    size_t at[8];
    FL_NAME(rows_scratch)(m, c->chunk, I, H, c->G, EH, cell->has_c, at);
    FL_REAL *s = c->scratch + (size_t)tid * c->stride;
    FL_REAL *r = s + at[0], *xpc = s + at[1], *xg = s + at[2], *ex = s + at[3];
    FL_REAL *hs[2] = {s + at[4], s + at[5]};
    FL_REAL *cs = cell->has_c ? s + at[6] : NULL, *work = s + at[7];
    int *soff = c->soff + (size_t)tid * (c->chunk + 1);
    const size_t hrow = sizeof(FL_REAL) * (size_t)H;
#define FL_ROW(j) c->perm[pos[j]]  /* batch row of the group's j-th row */
#define FL_LEN(j) c->len[pos[j]]
#define FL_TIME(j, step) (c->reverse ? FL_LEN(j) - 1 - (step) : (step))

    for (int j = 0; j < m; j++) {
        const size_t b = (size_t)FL_ROW(j);
        if (c->h0)
            memcpy(hs[0] + (size_t)j * H, c->h0 + b * H, hrow);
        else
            memset(hs[0] + (size_t)j * H, 0, hrow);
        if (cs && c->c0)
            memcpy(cs + (size_t)j * H, c->c0 + b * H, hrow);
        else if (cs)
            memset(cs + (size_t)j * H, 0, hrow);
        for (int t = FL_LEN(j); t < T; t++)  /* y is zero at padded steps */
            fl_zero_stream(c->y + ((size_t)t * B + b) * H, hrow);
    }
    fl_stream_done();

    int nact = m;
    for (int s0 = 0; s0 < T; s0 += c->chunk) {
        const int s1 = T - s0 < c->chunk ? T : s0 + c->chunk;
        /* the chunk's rows of x (the active rows of each step), gathered,
         * and their projection; soff[i]: first of step s0 + i */
        int na = nact, nrows = 0;
        for (int step = s0; step < s1; step++) {
            while (na > 0 && FL_LEN(na - 1) <= step)
                na--;
            soff[step - s0] = nrows;
            for (int j = 0; j < na; j++, nrows++)
                memcpy(xg + (size_t)nrows * I,
                       c->x + ((size_t)FL_TIME(j, step) * B + FL_ROW(j)) * I,
                       sizeof(FL_REAL) * (size_t)I);
        }
        if (nrows == 0)
            break;
        FL_NAME(fl_gemm_panel)(c->isa, 0, nrows, GH, I, 0, xg, I, c->pih, xpc, GH, work);
        for (int step = s0; step < s1; step++) {
            while (nact > 0 && FL_LEN(nact - 1) <= step)
                nact--;
            if (nact == 0)
                break;
            FL_REAL *xp = xpc + (size_t)soff[step - s0] * GH;
            const FL_REAL *hin = hs[step & 1];
            FL_REAL *hout = hs[(step + 1) & 1];
            FL_NAME(fl_gemm_panel)(c->isa, 0, nact, GH, H, 0, hin, H, c->phh, r, GH, work);
            for (int j = 0; j < nact; j++) {
                const size_t yrow = (size_t)FL_TIME(j, step) * B + FL_ROW(j);  /* in y */
                const size_t row = c->idx ? (size_t)c->idx[yrow] : yrow;  /* saved arrays */
                FL_REAL *g = xp + (size_t)j * GH;
                if (c->training)
                    memcpy(c->hprev + row * H, hin + (size_t)j * H, hrow);
                FL_REAL *e = EH ? (c->training ? c->extra + row * EH : ex + (size_t)j * EH) : NULL;
                cell->fwd(H, H, H, g, r + (size_t)j * GH, c->b_ih, c->b_hh, hin + (size_t)j * H,
                          hout + (size_t)j * H, cs ? cs + (size_t)j * H : NULL, c->y + yrow * H,
                          e);
                if (c->training)  /* the gates, kept for backward */
                    memcpy(c->gates + row * GH, g, sizeof(FL_REAL) * (size_t)GH);
            }
        }
    }
    /* a row's final state is in the buffer its last step wrote */
    for (int j = 0; j < m; j++) {
        memcpy(c->h_n + (size_t)FL_ROW(j) * H, hs[FL_LEN(j) & 1] + (size_t)j * H, hrow);
        if (cs)
            memcpy(c->c_n + (size_t)FL_ROW(j) * H, cs + (size_t)j * H, hrow);
    }
#undef FL_ROW
#undef FL_LEN
#undef FL_TIME
}

/* Thread tid of n: its share of the panels of both weights, then (once
 * every share is packed) its groups of rows. */
static void FL_NAME(rows_worker)(void *ctx, int tid)
{
    FL_NAME(rows_ctx) *c = ctx;
    const int n = c->nthreads, GH = c->G * c->H;
    FL_NAME(pack_share)(c->isa, c->w_hh, c->H, c->H, GH, 1, c->phh, tid, n);  /* w_hh^T */
    FL_NAME(pack_share)(c->isa, c->w_ih, c->I, c->I, GH, 1, c->pih, tid, n);  /* w_ih^T */
    if (n > 1)
        fl_barrier_wait(&c->bar, 0);
    for (int k = tid; k < c->ngroups; k += n)
        FL_NAME(rows_group)(c, k, tid);
}

/* The forward on `nthreads` threads of rows (see above). */
static int FL_NAME(forward_rows)(const fl_forward_args *a, const FL_NAME(fl_cell) *cell,
                                 int isa, int nthreads)
{
    const int T = a->T, B = a->B, I = a->n_in, H = a->H;
    const int G = cell->gates, GH = G * H, EH = cell->extra * H;
    const int training = a->gates != NULL, ragged = a->lengths != NULL;
    FL_NAME(rows_ctx) c;
    memset(&c, 0, sizeof c);
    c.ngroups = nthreads;
    /* ints: perm, len, gpos, idx (ragged) */
    int *ibuf = malloc(sizeof(int) * (3 * (size_t)B + (ragged ? (size_t)T * B : 0) + 1));
    if (!ibuf)
        return FL_ERR_NOMEM;
    int *perm = ibuf, *len = ibuf + B, *gpos = ibuf + 2 * B;
    int st = fl_sort_rows(a->lengths, T, B, perm, len);
    if (st != FL_OK) {
        free(ibuf);
        return st;
    }
    if (ragged)
        fl_pack_index(a->lengths, T, B, ibuf + 3 * B, NULL);
    const int maxm = fl_row_groups(ragged, B, nthreads, gpos, c.g0);
    /* steps per chunk: about FL_ROWS_CHUNK_BYTES of XP per thread, at
     * least FL_ROWS_CHUNK_ROWS rows */
    double want = FL_ROWS_CHUNK_BYTES / ((double)maxm * GH * sizeof(FL_REAL));
    double least = FL_ROWS_CHUNK_ROWS / (double)maxm;
    want = want > least ? want : least;
    c.chunk = want >= T ? T : (want < 1 ? 1 : (int)want);
    size_t at[8];
    const size_t stride = FL_NAME(rows_scratch)(maxm, c.chunk, I, H, G, EH, cell->has_c, at);
    const size_t n_ih = fl_lines(FL_NAME(fl_panel_size)(isa, I, GH), sizeof(FL_REAL));
    const size_t n_hh = fl_lines(FL_NAME(fl_panel_size)(isa, H, GH), sizeof(FL_REAL));
    const size_t n_zero = (a->b_ih && a->b_hh) ? 0 : fl_lines((size_t)GH, sizeof(FL_REAL));
    const size_t buf_bytes = sizeof(FL_REAL) * (n_ih + n_hh + n_zero +
                                                (size_t)nthreads * stride) + FL_LINE;
    void *block = fl_scratch(&a->mem, buf_bytes);
    int *soff = malloc(sizeof(int) * (size_t)nthreads * (c.chunk + 1));
    if (!block || !soff) {
        fl_scratch_release(&a->mem, block, buf_bytes);
        free(soff);
        free(ibuf);
        return FL_ERR_NOMEM;
    }
    FL_REAL *buf = fl_line_start(block);
    c.cell = cell;
    c.isa = isa;
    c.T = T, c.B = B, c.I = I, c.H = H, c.G = G, c.EH = EH;
    c.reverse = a->reverse, c.training = training;
    c.x = a->x, c.w_ih = a->w_ih, c.w_hh = a->w_hh, c.h0 = a->h0;
    c.c0 = cell->has_c ? a->c0 : NULL;
    c.y = a->y, c.gates = a->gates, c.hprev = a->hprev, c.extra = a->extra;
    c.h_n = a->h_n, c.c_n = cell->has_c ? a->c_n : NULL;
    c.perm = perm, c.len = len, c.gpos = gpos;
    c.idx = ragged ? ibuf + 3 * B : NULL;
    c.soff = soff;
    c.pih = buf;
    c.phh = buf + n_ih;
    FL_REAL *zero = c.phh + n_hh;
    if (n_zero)
        memset(zero, 0, sizeof(FL_REAL) * n_zero);
    c.b_ih = a->b_ih ? (const FL_REAL *)a->b_ih : zero;
    c.b_hh = a->b_hh ? (const FL_REAL *)a->b_hh : zero;
    c.scratch = zero + n_zero;
    c.stride = stride;
    c.nthreads = nthreads;
    fl_barrier_init(&c.bar, nthreads);
    if (!fl_pool_run(a->pool, nthreads, FL_NAME(rows_worker), &c, 0)) {
        c.nthreads = 1;  /* no threads to be had: every group on this one */
        FL_NAME(rows_worker)(&c, 0);
    }
    fl_scratch_release(&a->mem, block, buf_bytes);
    free(soff);
    free(ibuf);
    return FL_OK;
}

static int FL_NAME(forward)(const fl_forward_args *a, const fl_blas *blas)
{
    const int isa = fl_isa();
    const FL_NAME(fl_cell) *cell = FL_NAME(pick_cell)(a->cell, isa);
    const int T = a->T, B = a->B, I = a->n_in, H = a->H;
    const int G = cell->gates, GH = G * H, EH = cell->extra * H;
    const int training = a->gates != NULL;
    const FL_REAL *x = a->x, *w_ih = a->w_ih, *w_hh = a->w_hh;
    FL_REAL *y = a->y, *h_n = a->h_n, *c_n = cell->has_c ? (FL_REAL *)a->c_n : NULL;

    if (!x || !w_ih || !w_hh || !y || !h_n || (cell->has_c && !c_n) ||
        (training && (!a->hprev || (EH && !a->extra))))
        return FL_ERR_ARG;

    /* Threads split the hidden units when the per-step work is worth it;
     * the per-step product then runs on a packed slice of w_hh^T per thread
     * (fl_small_gemm), as it also does on one thread at small batch, where a
     * BLAS call costs more than the arithmetic. */
    const int own = fl_own_products(blas, isa);
    const int nrows = fl_test_units() ? 1 : fl_row_threads(a->num_threads, T, B, H, GH);
    if (nrows > 1)
        return FL_NAME(forward_rows)(a, cell, isa, nrows);
    /* a large batch with much work: each thread projects the whole input
     * for its units first, then the steps split by units (fl_pre_projection;
     * a training forward where its backward will run so, fl_post_products:
     * at less work, the per-step products on the BLAS ran faster in forward
     * and backward together) */
    const int pre = !own && (training ? fl_post_products : fl_pre_projection)(
                                 a->num_threads, T, B, I, H, GH, a->lengths != NULL);
    int nthreads = fl_threads_for(a->num_threads, T, B, H, GH, own || pre);
    const int pack = nthreads > 1 || ((B <= FL_PACK_MAX_B || own) && T > 1);
    FL_NAME(fwd_ctx) c;
    memset(&c, 0, sizeof c);
    fl_split_units(c.u, nthreads, H);
    int maxnu = 0;
    for (int t = 0; t < nthreads; t++)
        maxnu = c.u[t + 1] - c.u[t] > maxnu ? c.u[t + 1] - c.u[t] : maxnu;

    /* N workspace rows: every (t, b), or with lengths only the valid ones */
    const size_t N = (size_t)fl_workspace_rows(a->lengths, T, B);
    const int packed = a->lengths != NULL;

    /* The input projection runs `chunk` steps at a time, just before those
     * steps, on the panel kernel (each thread its own columns) with several
     * threads, and on one thread at inference when fastlstm does every
     * product itself (`own`: a CPU with AVX-512 under a BLAS without it):
     * their XP is still in cache when the steps read it, and at inference
     * the XP scratch holds one chunk, not the whole sequence. One-thread
     * inference on a BLAS that suits the CPU projects in one product, like
     * training (fl_gemm_whole), before the steps: on an AMD Zen 3 (512 KiB
     * of L2 per core, where the chunks' w_ih panels compete with w_hh's)
     * the forward ran 0-15% slower chunked (LSTM 100x16x128x128 level,
     * 100x32x256x256 5%, 100x64x512x512 10%, GRU 100x64x512x512 15%);
     * chunks had gained 4-7% on an Intel AVX-512 machine. (One-thread
     * training keeps the whole XP as the saved gates anyway; chunks
     * measured 0-4% slower there.) A ragged batch in reverse runs as one
     * chunk (the rows of one of its steps belong to different time steps). */
    int chunk = T;
    /* a second thread projects beside the steps (pipe_project): when the
     * steps keep to one thread for want of work per step, and the
     * projection is worth a thread (waking one costs tens of microseconds) */
    const int pipe = nthreads == 1 && fl_pipe_projection(a->num_threads, T, B, I, H, GH, packed);
    if (pipe) {
        chunk = (FL_PIPE_CHUNK_ROWS + B - 1) / B;
        chunk = chunk < T ? chunk : T;
    } else if (pre) {
        /* XP holds every row, each thread's columns projected before its
         * steps; at inference, at most FL_PRE_CHUNK_BYTES of XP at a time */
        const double want = fl_test_pre_chunks()
                                ? 1 : FL_PRE_CHUNK_BYTES / ((double)B * GH * sizeof(FL_REAL));
        if (!training && want < (double)T)
            chunk = want < 1 ? 1 : (int)want;
    } else if ((nthreads > 1 || (!training && own)) &&
        !(packed && a->reverse) && B > 0) {
        double want = (double)FL_CHUNK_BYTES / ((double)B * GH * sizeof(FL_REAL));
        double least = (double)FL_CHUNK_MIN_ROWS / B;
        want = want > least ? want : least;
        if (want < (double)T)
            chunk = want < 1 ? 1 : (int)want;
    }
    const size_t xp_rows = chunk >= T || pipe ? N : (size_t)chunk * B;

    /* scratch: [XP (a chunk), ex (inference only) | R per thread | hs x 2 |
     * cs | zero bias | w_hh^T slices | w_ih slices (threads) | valid rows of
     * x (ragged)], ints: perm, len, idx, tstart */
#define FL_UP(n) fl_lines((n), sizeof(FL_REAL))
    const size_t at_ex = FL_UP(xp_rows * GH);  /* (inference: ex follows XP) */
    size_t n_xp = training ? 0 : at_ex + FL_UP((size_t)B * EH);
    size_t s_r = FL_UP((size_t)B * GH), n_r = (size_t)nthreads * s_r;
    size_t n_h = FL_UP((size_t)B * H), n_c = cell->has_c ? n_h : 0;
    size_t n_zero = (a->b_ih && a->b_hh) ? 0 : FL_UP((size_t)GH);
    size_t s_wt = FL_UP(FL_NAME(fl_panel_size)(isa, H, GH));
    size_t n_wt = pack ? (size_t)nthreads * s_wt : 0;
    size_t s_ih = FL_UP((size_t)G * FL_NAME(fl_panel_size)(isa, I, maxnu));
    /* XP on the panel kernel, from w_ih slices packed per thread: with
     * threads (each projects its own columns) or chunks */
    const int own_proj = nthreads > 1 || chunk < T || pipe;
    size_t n_ih = own_proj ? (size_t)nthreads * s_ih : 0;
    /* ragged: x's valid rows, gathered up front for one projection, or per
     * thread chunk by chunk (the chunk's rows stay in cache for its product) */
    const int gather_chunks = packed && chunk < T;
    size_t n_xg = packed ? FL_UP(xp_rows * I) : 0;
    /* per thread: scratch of the per-step product and the chunk projections */
    size_t s_work = fl_panel_work(0, B, H);
    size_t s_proj = fl_panel_work(0, pipe ? chunk * B : (int)xp_rows, I);
    s_work = FL_UP(own_proj && s_proj > s_work ? s_proj : s_work);
    size_t n_work = (size_t)(nthreads + pipe) * s_work;  /* (the projector's too) */
#undef FL_UP
    const size_t buf_bytes = sizeof(FL_REAL) * (n_xp + n_r + 2 * n_h + n_c + n_zero + n_wt +
                                                n_ih + n_xg + n_work + 1) + FL_LINE;
    void *block = fl_scratch(&a->mem, buf_bytes);
    FL_REAL *buf = block ? fl_line_start(block) : NULL;
    int *ibuf = malloc(sizeof(int) * (2 * (size_t)B + (packed ? (size_t)T * B + T + 1 : 0) +
                                      (gather_chunks ? N : 0) + 1));
    if (!buf || !ibuf) {
        fl_scratch_release(&a->mem, block, buf_bytes);
        free(ibuf);
        return FL_ERR_NOMEM;
    }
    c.cell = cell;
    c.blas = blas;
    c.isa = isa;
    c.T = T, c.B = B, c.H = H, c.G = G, c.EH = EH;
    c.reverse = a->reverse, c.training = training, c.pack = pack;
    c.w_hh = w_hh;
    c.xp = training ? (FL_REAL *)a->gates : buf;  /* gates overwrite XP in place */
    c.chunk = chunk;
    c.own_proj = own_proj;
    c.ex = training ? NULL : buf + at_ex;  /* per-step extra, discarded */
    c.r = buf + n_xp;
    c.r_stride = s_r;
    c.hs[0] = c.r + n_r;
    c.hs[1] = c.hs[0] + n_h;
    c.cs = cell->has_c ? c.hs[1] + n_h : NULL;
    FL_REAL *zero = c.hs[1] + n_h + n_c;
    c.wt = zero + n_zero;
    c.wt_stride = s_wt;
    c.pih = c.wt + n_wt;
    c.pih_stride = s_ih;
    c.y = y;
    c.hprev = a->hprev;
    c.extra = a->extra;
    FL_REAL *xg = c.pih + n_ih;
    c.work = xg + n_xg;
    c.work_stride = s_work;
    int *perm = ibuf, *len = ibuf + B;
    c.perm = perm, c.len = len;
    c.idx = packed ? ibuf + 2 * B : NULL;
    if (n_zero)
        memset(zero, 0, sizeof(FL_REAL) * n_zero);
    c.b_ih = a->b_ih ? (const FL_REAL *)a->b_ih : zero;
    c.b_hh = a->b_hh ? (const FL_REAL *)a->b_hh : zero;

    int st = fl_sort_rows(a->lengths, T, B, perm, len);
    if (st != FL_OK)
        goto done;

    if (packed) {  /* padded steps: x is never read and y is zero (fwd_steps) */
        int *tstart = ibuf + 2 * B + (size_t)T * B;
        int *src = gather_chunks ? tstart + T + 1 : NULL;
        fl_pack_index(a->lengths, T, B, (int *)c.idx, src);
        if (gather_chunks) {
            c.src = src;
            c.xg = xg;
        } else {
            FL_NAME(gather_x)(xg, x, c.idx, T, B, I);
            x = xg;
        }
        /* the packed rows of time t start after those of the earlier steps;
         * rows are sorted by decreasing length, so len[0..n) > t is a prefix */
        tstart[0] = 0;
        for (int t = 0, n = B; t < T; t++) {
            while (n > 0 && len[n - 1] <= t)
                n--;
            tstart[t + 1] = tstart[t] + n;
        }
        c.tstart = tstart;
    }
    c.x = x, c.w_ih = w_ih, c.I = I;
    atomic_init(&c.failed, 0);

    FL_NAME(permute_rows)(c.hs[0], a->h0, perm, B, H, 0);
    if (c.cs)
        FL_NAME(permute_rows)(c.cs, a->c0, perm, B, H, 0);

    /* the time loop (with the projection, chunk by chunk), on one thread or
     * several; with several, each projects its own columns of XP on the
     * panel kernel, so that the BLAS's pool never runs beside them; or on
     * one thread with a second projecting ahead of it */
    c.nthreads = nthreads;
    if (nthreads > 1)
        fl_barrier_init(&c.bar, nthreads);
    c.pipe = pipe;
    if (pipe) {
        c.nchunks = (T + chunk - 1) / chunk;
        c.pdone = malloc(sizeof(atomic_int) * (size_t)c.nchunks);
        if (!c.pdone) {
            st = FL_ERR_NOMEM;
            goto done;
        }
        for (int k = 0; k < c.nchunks; k++)
            atomic_init(&c.pdone[k], 0);
        atomic_init(&c.pnext, 0);
        FL_NAME(pack_ih_slice)(isa, w_ih, I, G, H, 0, H, c.pih);
    }
    if (!fl_pool_run(a->pool, pipe ? 2 : nthreads, FL_NAME(fwd_worker), &c, pipe)) {
        /* no threads to be had: run on this one (a pipeline's chunks are
         * then all claimed by the steps) */
        nthreads = c.nthreads = 1;
        fl_split_units(c.u, 1, H);
        if (!pipe)
            c.own_proj = 0;  /* (the w_ih slots are sized for a thread's units) */
        FL_NAME(fwd_worker)(&c, 0);
    }
    free(c.pdone);
    if (atomic_load(&c.failed)) {
        st = FL_ERR_NOMEM;
        goto done;
    }

    /* a row's final state is in the buffer its last step wrote */
    for (int j = 0; j < B; j++)
        memcpy(h_n + (size_t)perm[j] * H, c.hs[len[j] & 1] + (size_t)j * H,
               sizeof(FL_REAL) * (size_t)H);
    if (c.cs)
        FL_NAME(permute_rows)(c_n, c.cs, perm, B, H, 1);
done:
    fl_scratch_release(&a->mem, block, buf_bytes);
    free(ibuf);
    return st;
}

/* What the steps of one backward call share (units split as in forward). */
typedef struct {
    const FL_NAME(fl_cell) *cell;
    const fl_blas *blas;
    int isa, T, B, H, G, EH, reverse, nthreads, pack;
    int lthreads;  /* threads of the time loop (the first lthreads), <= nthreads */
    const FL_REAL *w_hh, *gates, *extra, *hprev, *dy;
    FL_REAL *dgx, *dgh_full, *dgh[2], *dh, *dc;
    FL_REAL *wp;  /* per thread: its columns of w_hh in panels (when pack), */
    size_t wp_stride;  /* wp_stride values apart */
    FL_REAL *work;  /* per thread: work_stride values of scratch for fl_gemm_panel */
    size_t work_stride;
    const int *perm, *len, *idx;
    /* with several threads they also compute the whole-sequence products */
    const FL_REAL *x, *w_ih;
    FL_REAL *dx, *dw_ih, *dw_hh, *db_ih, *db_hh;
    FL_REAL *p_ih, *p_x, *p_h;  /* threads: w_ih, x and hprev in panels, shared */
    /* ragged, with threads: x is the caller's, its valid rows src[r] are
     * gathered as they are packed, and each thread scatters its rows of dx
     * (workspace rows, in dx) into the caller's dx_out */
    const int *src;
    FL_REAL *dx_out;
    int I, N, products;
    /* pipelined products (the loop on thread 0, products of finished rows
     * on thread 1): rows [done_from, N) are final; thread 1 leaves rows
     * [0, pipe_rem) to the products after the loop, and pipe_any says it
     * wrote the weight gradients already */
    int pipe, pipe_rem, pipe_any;
    atomic_int done_from, loop_done;
    FL_REAL *pipe_buf;  /* thread 1: x and hprev rows of a block, in panels, */
    size_t pipe_ph_at, pipe_work_at;  /* and its products' scratch: where each starts */
    int ul[FL_MAX_THREADS + 1];  /* units of each thread in the time loop */
    fl_barrier bar, lbar;        /* all threads; the loop's threads */
    /* the loop split by rows (bwd_rows): group k's sorted positions are
     * gpos[g0[k] .. g0[k + 1]); per thread, loc_stride values of dh, dc
     * and dgh for its rows at loc */
    int rows, ngroups;
    const int *gpos;
    int g0[FL_MAX_THREADS + 1];
    FL_REAL *loc;
    size_t loc_stride;
} FL_NAME(bwd_ctx);

/* dW[c0 .. c1, :] = D[:, c0 .. c1]^T Y (D is N x GH, Y is N x K in panels P)
 * and the matching entries of the bias gradient db (column sums of D; db
 * may be NULL): a block of gate columns' rows of dw_ih or dw_hh, as one
 * product (one per gate would stream all of Y's panels once per gate). */
static void FL_NAME(weight_grad_cols)(int isa, const FL_REAL *D, int N, int GH, int c0, int c1,
                                      const FL_REAL *P, int K, FL_REAL *dW, FL_REAL *db,
                                      int accumulate, FL_REAL *work)
{
    if (c1 <= c0)
        return;
    FL_NAME(fl_gemm_panel)(isa, 1, c1 - c0, K, N, accumulate, D + c0, GH, P,
                           dW + (size_t)c0 * K, K, work);
    if (db)
        FL_NAME(fl_col_sums)(isa, db + c0, D + c0, (size_t)N, c1 - c0, GH, accumulate);
}

/* A thread's share of the whole-sequence products after the time loop:
 * first its share of the panels every thread reads (w_ih as GH x I, x as
 * N x I, hprev as N x H), then after a barrier its rows of dx and its
 * share of the rows of dw_ih, dw_hh (and entries of db_ih, db_hh): one
 * product each over a block of gate columns of dgx or dgh (per gate, each
 * thread's units took four products that each streamed all of x's or
 * hprev's panels; LSTM forward+backward 100x32x256x256 on 2 threads ran 4%
 * faster so). */
static void FL_NAME(bwd_products)(FL_NAME(bwd_ctx) *c, int tid)
{
    const int H = c->H, G = c->G, GH = G * H, I = c->I, n = c->nthreads;
    const int N = c->pipe ? c->pipe_rem : c->N, acc = c->pipe && c->pipe_any;
    int r0 = (int)((long long)N * tid / n), r1 = (int)((long long)N * (tid + 1) / n);
    if (!c->pipe)  /* (pipelined, thread 1 packed it before the loop ended) */
        FL_NAME(pack_share)(c->isa, c->w_ih, I, GH, I, 0, c->p_ih, tid, n);
    if (c->src) {  /* this thread's panels of x's valid rows */
        const int pw = FL_PW_OF(c->isa), np = (I + pw - 1) / pw;
        const int p0 = (int)((long long)np * tid / n), p1 = (int)((long long)np * (tid + 1) / n);
        const int c1 = p1 * pw < I ? p1 * pw : I;
        if (p1 > p0)
            FL_NAME(fl_pack_panels_gather)(c->isa, c->x, I, c->src, N, p0 * pw, c1 - p0 * pw,
                                           c->p_x + (size_t)p0 * N * pw);
    } else
        FL_NAME(pack_share)(c->isa, c->x, I, N, I, 0, c->p_x, tid, n);
    FL_NAME(pack_share)(c->isa, c->hprev, H, N, H, 0, c->p_h, tid, n);
    fl_barrier_wait(&c->bar, 0);
    FL_NAME(fl_gemm_panel)(c->isa, 0, r1 - r0, I, GH, 0, c->dgx + (size_t)r0 * GH, GH, c->p_ih,
                           c->dx + (size_t)r0 * I, I, NULL);
    if (c->src) {  /* its rows of dx to the caller's, and its share of the zeros */
        FL_NAME(scatter_rows)(c->dx_out, c->dx, c->src, (size_t)r0, (size_t)r1, I);
        const size_t TB = (size_t)c->T * c->B;
        for (size_t r = TB * tid / n; r < TB * (tid + 1) / n; r++)
            if (c->idx[r] < 0)
                fl_zero_stream(c->dx_out + r * I, sizeof(FL_REAL) * (size_t)I);
        fl_stream_done();
    }
    const int c0 = (int)((long long)GH * tid / n) / 16 * 16;  /* its gate columns */
    const int c1 = tid + 1 == n ? GH : (int)((long long)GH * (tid + 1) / n) / 16 * 16;
    FL_NAME(weight_grad_cols)(c->isa, c->dgx, N, GH, c0, c1, c->p_x, I, c->dw_ih, c->db_ih, acc,
                              NULL);
    FL_NAME(weight_grad_cols)(c->isa, c->dgh_full, N, GH, c0, c1, c->p_h, H, c->dw_hh,
                              c->db_hh, acc, NULL);
}

/* Pipelined products, on thread 1 while thread 0 runs the loop: as rows
 * become final (from the last step down), the products of blocks of them
 * (rows of dx, and every unit's weight and bias gradients, accumulated),
 * until the loop ends; the rest is left to bwd_products. */
static void FL_NAME(bwd_pipe)(FL_NAME(bwd_ctx) *c)
{
    const int H = c->H, G = c->G, GH = G * H, I = c->I;
    FL_REAL *px = c->pipe_buf, *ph = px + c->pipe_ph_at;
    FL_REAL *work = px + c->pipe_work_at;  /* (no block allocates) */
    FL_NAME(fl_pack_panels)(c->isa, c->w_ih, I, GH, I, 0, 0, 0, I, c->p_ih);  /* w_ih as GH x I */
    int pf = c->N, any = 0;  /* rows [pf, N) done here */
    unsigned spins = 0;
    for (;;) {
        if (atomic_load(&c->loop_done))
            break;  /* the rest goes to every thread's share (bwd_products) */
        const int r = atomic_load(&c->done_from);
        if (pf - r >= FL_PIPE_MIN_ROWS) {
            const int r0 = pf - r > FL_PIPE_ROWS ? pf - FL_PIPE_ROWS : r, k = pf - r0;
            FL_NAME(fl_gemm_panel)(c->isa, 0, k, I, GH, 0, c->dgx + (size_t)r0 * GH, GH,
                                   c->p_ih, c->dx + (size_t)r0 * I, I, work);
            if (c->src) {
                FL_NAME(scatter_rows)(c->dx_out, c->dx, c->src, (size_t)r0, (size_t)pf, I);
                FL_NAME(fl_pack_panels_gather)(c->isa, c->x, I, c->src + r0, k, 0, I, px);
            } else
                FL_NAME(fl_pack_panels)(c->isa, c->x + (size_t)r0 * I, I, k, I, 0, 0, 0, I, px);
            FL_NAME(fl_pack_panels)(c->isa, c->hprev + (size_t)r0 * H, H, k, H, 0, 0, 0, H, ph);
            FL_NAME(weight_grad_cols)(c->isa, c->dgx + (size_t)r0 * GH, k, GH, 0, GH, px, I,
                                      c->dw_ih, c->db_ih, any, work);
            FL_NAME(weight_grad_cols)(c->isa, c->dgh_full + (size_t)r0 * GH, k, GH, 0, GH, ph, H,
                                      c->dw_hh, c->db_hh, any, work);
            any = 1;
            pf = r0;
            spins = 0;
            continue;
        }
        fl_spin_pause(&spins);
    }
    c->pipe_rem = pf;
    c->pipe_any = any;
}

/* The pointwise gradient of loop thread k's units at step s (nact active
 * rows) into dgh; returns the step's lowest workspace row. */
static size_t FL_NAME(bwd_pointwise)(FL_NAME(bwd_ctx) *c, int k, int s, int nact, FL_REAL *dgh)
{
    const int B = c->B, H = c->H, GH = c->G * H, EH = c->EH;
    const int u0 = c->ul[k], nu = c->ul[k + 1] - u0;
    const FL_NAME(fl_cell) *cell = c->cell;
    size_t first = (size_t)-1;
    for (int j = 0; j < nact; j++) {
        int t = c->reverse ? c->len[j] - 1 - s : s;
        size_t yrow = (size_t)t * B + c->perm[j];
        size_t row = c->idx ? (size_t)c->idx[yrow] : yrow;
        first = row < first ? row : first;
        FL_REAL *dhj = c->dh + (size_t)j * H + u0;
        if (c->dy) {
            const FL_REAL *dyr = c->dy + yrow * H + u0;
            for (int i = 0; i < nu; i++)
                dhj[i] += dyr[i];
        }
        cell->bwd(nu, H, c->gates + row * GH + u0, EH ? c->extra + row * EH + u0 : NULL,
                  c->hprev + row * H + u0, dhj, c->dc ? c->dc + (size_t)j * H + u0 : NULL,
                  c->dgx + row * GH + u0, dgh + (size_t)j * GH + u0);
        if (cell->split_dgh)
            for (int g = 0; g < c->G; g++)
                memcpy(c->dgh_full + row * GH + (size_t)g * H + u0,
                       dgh + (size_t)j * GH + (size_t)g * H + u0, sizeof(FL_REAL) * (size_t)nu);
    }
    return first;
}

/* Loop thread k's columns of dh_{t-1} = (direct part, if any) + dgh w_hh,
 * on its packed columns of w_hh (or the BLAS, for all units, unpacked). */
static void FL_NAME(bwd_recur)(FL_NAME(bwd_ctx) *c, int k, int nact, const FL_REAL *dgh)
{
    const int H = c->H, GH = c->G * H;
    const int u0 = c->ul[k], nu = c->ul[k + 1] - u0;
    const int direct = c->cell->has_direct;
    if (c->pack)
        FL_NAME(fl_gemm_panel)(c->isa, 0, nact, nu, GH, direct, dgh, GH,
                               c->wp + (size_t)k * c->wp_stride, c->dh + u0, H,
                               c->work + (size_t)k * c->work_stride);
    else
        FL_NAME(fl_gemm)(c->blas, c->isa, 0, 0, nact, H, GH, 1, dgh, GH, c->w_hh, H,
                         direct ? 1 : 0, c->dh, H);
}

/* The backward time loop split by rows, as forward_rows splits the
 * forward's: thread tid runs every step of its groups of rows alone, on
 * w_hh in panels that the threads pack a share of each (then meet once),
 * and on its own copies of its rows' dh and dc. */
static void FL_NAME(bwd_rows)(FL_NAME(bwd_ctx) *c, int tid)
{
    const FL_NAME(fl_cell) *cell = c->cell;
    const int B = c->B, H = c->H, GH = c->G * H, EH = c->EH, n = c->nthreads;
    const int direct = cell->has_direct;
    const size_t hrow = sizeof(FL_REAL) * (size_t)H;
    FL_NAME(pack_share)(c->isa, c->w_hh, H, GH, H, 0, c->wp, tid, n);  /* w_hh (GH x H), shared */
    if (n > 1)
        fl_barrier_wait(&c->bar, 0);
    FL_REAL *work = c->work + (size_t)tid * c->work_stride;
    for (int k = tid; k < c->ngroups; k += n) {
        const int *pos = c->gpos + c->g0[k], m = c->g0[k + 1] - c->g0[k];
        FL_REAL *dh = c->loc + (size_t)tid * c->loc_stride;
        FL_REAL *dc = dh + fl_lines((size_t)m * H, sizeof(FL_REAL));
        FL_REAL *dg = dc + (c->dc ? fl_lines((size_t)m * H, sizeof(FL_REAL)) : 0);
        for (int j = 0; j < m; j++) {
            memcpy(dh + (size_t)j * H, c->dh + (size_t)pos[j] * H, hrow);
            if (c->dc)
                memcpy(dc + (size_t)j * H, c->dc + (size_t)pos[j] * H, hrow);
        }
        int na = 0;
        for (int s = c->T - 1; s >= 0; s--) {
            while (na < m && c->len[pos[na]] > s)
                na++;
            if (na == 0)
                continue;
            for (int j = 0; j < na; j++) {
                const int p = pos[j], t = c->reverse ? c->len[p] - 1 - s : s;
                const size_t yrow = (size_t)t * B + c->perm[p];
                const size_t row = c->idx ? (size_t)c->idx[yrow] : yrow;
                FL_REAL *dhj = dh + (size_t)j * H;
                if (c->dy) {
                    const FL_REAL *dyr = c->dy + yrow * H;
                    for (int i = 0; i < H; i++)
                        dhj[i] += dyr[i];
                }
                cell->bwd(H, H, c->gates + row * GH, EH ? c->extra + row * EH : NULL,
                          c->hprev + row * H, dhj, c->dc ? dc + (size_t)j * H : NULL,
                          c->dgx + row * GH, dg + (size_t)j * GH);
                if (cell->split_dgh)
                    memcpy(c->dgh_full + row * GH, dg + (size_t)j * GH,
                           sizeof(FL_REAL) * (size_t)GH);
            }
            /* dh_{t-1} = (direct part, if any) + dgh w_hh */
            FL_NAME(fl_gemm_panel)(c->isa, 0, na, H, GH, direct, dg, GH, c->wp, dh, H, work);
        }
        for (int j = 0; j < m; j++) {
            memcpy(c->dh + (size_t)pos[j] * H, dh + (size_t)j * H, hrow);
            if (c->dc)
                memcpy(c->dc + (size_t)pos[j] * H, dc + (size_t)j * H, hrow);
        }
    }
}

/* The backward time loop for thread `tid`'s units: the pointwise gradient
 * of its units, a barrier, then its units' columns of dh_{t-1} = dgh w_hh
 * (which need every unit's dgh). dgh alternates between two buffers, so the
 * next step's pointwise pass never overwrites what a slower thread's product
 * still reads; one barrier per step suffices. Only the first lthreads
 * threads run the loop (units split by ul); with products, every thread
 * then takes its share of them (units split by u). As in the forward, when
 * the other loop threads lose their CPUs, thread 0 does every loop thread's
 * units from then on (and the others go on to the products). */
static void FL_NAME(bwd_steps)(FL_NAME(bwd_ctx) *c, int tid)
{
    if (c->rows) {
        FL_NAME(bwd_rows)(c, tid);
        goto products;
    }
    if (tid >= c->lthreads) {  /* a thread of the products only */
        if (c->pipe && tid == 1)
            FL_NAME(bwd_pipe)(c);
        goto products;
    }
    const int B = c->B, H = c->H, GH = c->G * H, nl = c->lthreads;
    const int u0 = c->ul[tid], nu = c->ul[tid + 1] - u0;
    if (c->pack)  /* this thread's units' columns of w_hh (GH x nu) */
        FL_NAME(fl_pack_panels)(c->isa, c->w_hh, H, GH, nu, 0, H, u0, nu,
                                c->wp + (size_t)tid * c->wp_stride);
    fl_solo solo;
    fl_solo_init(&solo, tid, nl);
    int nact = 0;
    for (int s = c->T - 1; s >= 0; s--) {
        while (nact < B && c->len[nact] > s)
            nact++;
        if (nact == 0)
            continue;
        fl_solo_step(&solo);
        FL_REAL *dgh = c->dgh[s & 1];
        size_t first = 0;
        for (int k = solo.k0; k < solo.k1; k++)
            first = FL_NAME(bwd_pointwise)(c, k, s, nact, dgh);
        if (c->pipe)  /* in time order, the rows of steps s.. are rows first.. */
            atomic_store(&c->done_from, (int)first);
        if (nl > 1 && fl_solo_wait(&solo, &c->lbar) && tid != 0)
            goto products;  /* thread 0 goes on alone */
        for (int k = solo.k0; k < solo.k1; k++)
            FL_NAME(bwd_recur)(c, k, nact, dgh);
    }
    if (c->pipe)
        atomic_store(&c->loop_done, 1);
products:
    if (c->products) {
        fl_barrier_wait(&c->bar, 0);  /* every thread's gate gradients are in */
        FL_NAME(bwd_products)(c, tid);
    }
}

static void FL_NAME(bwd_worker)(void *ctx, int tid)
{
    FL_NAME(bwd_steps)((FL_NAME(bwd_ctx) *)ctx, tid);
}

static int FL_NAME(backward)(const fl_backward_args *a, const fl_blas *blas)
{
    const int isa = fl_isa();
    const FL_NAME(fl_cell) *cell = FL_NAME(pick_cell)(a->cell, isa);
    const int T = a->T, B = a->B, I = a->n_in, H = a->H;
    const int G = cell->gates, GH = G * H, EH = cell->extra * H;
    const FL_REAL *x = a->x, *w_ih = a->w_ih;
    FL_REAL *dc0 = cell->has_c ? (FL_REAL *)a->dc0 : NULL;

    if (!x || !w_ih || !a->w_hh || !a->gates || !a->hprev || (EH && !a->extra) || !a->dx ||
        !a->dh0 || (cell->has_c && !dc0) || !a->dw_ih || !a->dw_hh ||
        (!a->db_ih != !a->db_hh))
        return FL_ERR_ARG;

    const int own = fl_own_products(blas, isa);
    /* in a large call (fl_post_products), the time loop runs on fastlstm's
     * threads and the whole-sequence products on the BLAS after it (`post`) */
    const int post = !own && fl_post_products(a->num_threads, T, B, I, H, GH, a->lengths != NULL);
    int nthreads = fl_threads_for(a->num_threads, T, B, H, GH, own || post);
    const int pack = nthreads > 1 || ((B <= FL_PACK_MAX_B || own) && T > 1);
    /* the loop split by rows (bwd_rows) where the forward's would be */
    const int rows = nthreads > 1 && !fl_test_units() &&
                     fl_row_threads(nthreads, T, B, H, GH) == nthreads;

    const size_t N = (size_t)fl_workspace_rows(a->lengths, T, B);
    const int packed = a->lengths != NULL;

    /* scratch: [dgx (N x GH) | dgh full (GRU) | dgh step x 2 | dh | dc | valid
     * rows of x and dx (ragged) | w_hh packed per loop thread | w_ih, x and
     * hprev in panels (threads)], ints: perm, len, idx */
#define FL_UP(n) fl_lines((n), sizeof(FL_REAL))
    size_t n_full = FL_UP(N * GH), n_split = cell->split_dgh ? n_full : 0;
    size_t n_step = FL_UP((size_t)B * GH), n_h = FL_UP((size_t)B * H);
    size_t n_c = cell->has_c ? n_h : 0;
    size_t s_xg = packed ? FL_UP(N * I) : 0, n_xg = 2 * s_xg;
    size_t s_wp = FL_UP(FL_NAME(fl_panel_size)(isa, GH, H));
    size_t n_wp = pack ? (size_t)nthreads * s_wp : 0;
    /* the products' shared panels (threads, unless post) */
    const int products = nthreads > 1 && !post;
    size_t n_pih = products ? FL_UP(FL_NAME(fl_panel_size)(isa, GH, I)) : 0;
    size_t n_px = products ? FL_UP(FL_NAME(fl_panel_size)(isa, (int)N, I)) : 0;
    size_t n_ph = products ? FL_UP(FL_NAME(fl_panel_size)(isa, (int)N, H)) : 0;
    size_t s_work = FL_UP(fl_panel_work(0, B, GH)), n_work = (size_t)nthreads * s_work;
    /* the loop's threads: below FL_BWD_THREAD_MIN_WORK per step it runs on
     * one thread (a barrier per step would cost more than it saves, and its
     * pointwise pass runs slower per unit on two threads than on one), and
     * a second thread computes the products of the rows it has finished
     * meanwhile (time order only: in reverse, finished rows are not a
     * suffix of the workspace) */
    const int lthreads =
        rows || ((double)B * GH * H < FL_BWD_THREAD_MIN_WORK && !post) ? 1 : nthreads;
    const int pipe = !rows && lthreads == 1 && nthreads > 1 && !a->reverse;
    /* thread 1's blocks: x and hprev rows in panels, and the scratch of its
     * products (dx rows, and weight gradients, op(A) transposed) */
    size_t s_pipe = fl_panel_work(0, FL_PIPE_ROWS, GH), s_wg = fl_panel_work(1, GH, FL_PIPE_ROWS);
    s_pipe = s_wg > s_pipe ? s_wg : s_pipe;
    const size_t s_pipe_px = FL_UP(FL_NAME(fl_panel_size)(isa, FL_PIPE_ROWS, I));
    const size_t s_pipe_ph = FL_UP(FL_NAME(fl_panel_size)(isa, FL_PIPE_ROWS, H));
    size_t n_pipe = pipe ? s_pipe_px + s_pipe_ph + s_pipe : 0;
    /* split by rows: each thread's dh, dc and dgh for its largest group */
    const int maxm = rows ? (B + nthreads - 1) / nthreads : 0;
    const size_t s_loc = FL_UP((size_t)maxm * H) * (cell->has_c ? 2 : 1) +
                         FL_UP((size_t)maxm * GH);
    const size_t n_loc = rows ? (size_t)nthreads * s_loc : 0;
#undef FL_UP
    const size_t buf_bytes = sizeof(FL_REAL) * (n_full + n_split + 2 * n_step + n_h + n_c +
                                                n_xg + n_wp + n_pih + n_px + n_ph + n_work +
                                                n_pipe + n_loc + 1) + FL_LINE;
    void *block = fl_scratch(&a->mem, buf_bytes);
    FL_REAL *buf = block ? fl_line_start(block) : NULL;
    /* ragged with threads: x's rows are gathered as the threads pack them */
    const int gather_late = packed && nthreads > 1;
    int *ibuf = malloc(sizeof(int) * (2 * (size_t)B + (packed ? (size_t)T * B : 0) +
                                      (gather_late ? N : 0) + (rows ? (size_t)B : 0) + 1));
    if (!buf || !ibuf) {
        fl_scratch_release(&a->mem, block, buf_bytes);
        free(ibuf);
        return FL_ERR_NOMEM;
    }
    FL_NAME(bwd_ctx) c;
    memset(&c, 0, sizeof c);
    c.cell = cell, c.blas = blas, c.isa = isa;
    c.T = T, c.B = B, c.H = H, c.G = G, c.EH = EH, c.reverse = a->reverse;
    c.w_hh = a->w_hh, c.gates = a->gates, c.extra = a->extra, c.hprev = a->hprev, c.dy = a->dy;
    c.dgx = buf;
    c.dgh_full = cell->split_dgh ? buf + n_full : buf;
    c.dgh[0] = buf + n_full + n_split;
    c.dgh[1] = c.dgh[0] + n_step;
    c.dh = c.dgh[1] + n_step;
    c.dc = cell->has_c ? c.dh + n_h : NULL;
    FL_REAL *xg = (c.dc ? c.dc + n_c : c.dh + n_h), *dxg = xg + s_xg;
    c.wp = xg + n_xg;
    c.p_ih = c.wp + n_wp;  /* (threads only) */
    c.p_x = c.p_ih + n_pih;
    c.p_h = c.p_x + n_px;
    c.work = c.p_h + n_ph;
    c.work_stride = s_work;
    c.wp_stride = s_wp;
    c.pipe_buf = c.work + n_work;
    c.pipe_ph_at = s_pipe_px;
    c.pipe_work_at = s_pipe_px + s_pipe_ph;
    c.loc = c.pipe_buf + n_pipe;
    c.loc_stride = s_loc;
    c.pack = pack;
    int *perm = ibuf, *len = ibuf + B;
    c.perm = perm, c.len = len;
    c.idx = packed ? ibuf + 2 * B : NULL;

    int st = fl_sort_rows(a->lengths, T, B, perm, len);
    if (st != FL_OK)
        goto done;
    if (packed)
        fl_pack_index(a->lengths, T, B, (int *)c.idx,
                      gather_late ? ibuf + 2 * B + (size_t)T * B : NULL);
    if (rows) {
        int *gpos = ibuf + 2 * B + (packed ? (size_t)T * B : 0) + (gather_late ? N : 0);
        fl_row_groups(packed, B, nthreads, gpos, c.g0);
        c.gpos = gpos;
        c.rows = 1;
        c.ngroups = nthreads;
    }

    FL_NAME(permute_rows)(c.dh, a->dh_n, perm, B, H, 0);
    if (c.dc)
        FL_NAME(permute_rows)(c.dc, a->dc_n, perm, B, H, 0);

    /* the whole-sequence products run over the N valid rows; with lengths,
     * x's valid rows are gathered (its padded rows, possibly NaN or inf, are
     * never read; with threads, as they are packed) and dx is scattered back
     * with zeros at padded steps (with threads, by each thread) */
    if (gather_late) {
        c.src = ibuf + 2 * B + (size_t)T * B;
        c.dx_out = a->dx;
    } else if (packed) {
        FL_NAME(gather_x)(xg, x, c.idx, T, B, I);
        x = xg;
    }
    c.x = x, c.w_ih = w_ih, c.I = I, c.N = (int)N;
    c.dx = packed ? dxg : (FL_REAL *)a->dx;
    c.dw_ih = a->dw_ih, c.dw_hh = a->dw_hh, c.db_ih = a->db_ih;
    /* where dgh is dgx (all but GRU), db_hh is db_ih: copied at the end */
    c.db_hh = cell->split_dgh ? a->db_hh : NULL;

    /* with several threads, they compute the products too, so that the BLAS's
     * pool never runs beside fastlstm's threads (with post, the BLAS does,
     * after them) */
    c.lthreads = lthreads;
    c.pipe = pipe;
    atomic_init(&c.done_from, (int)N);
    atomic_init(&c.loop_done, 0);
    fl_split_units(c.ul, c.lthreads, H);
    c.nthreads = nthreads;
    c.products = products;
    if (nthreads > 1)
        fl_barrier_init(&c.bar, nthreads);
    if (c.lthreads > 1)
        fl_barrier_init(&c.lbar, c.lthreads);
    if (!fl_pool_run(a->pool, nthreads, FL_NAME(bwd_worker), &c, 0)) {
        c.nthreads = c.lthreads = 1;  /* no threads to be had: run on this one */
        c.products = c.pipe = 0;
        if (c.src) {  /* (the products below read x's valid rows gathered) */
            FL_NAME(gather_x)(xg, x, c.idx, T, B, I);
            c.x = x = xg;
            c.src = NULL;
        }
        fl_split_units(c.ul, 1, H);
        FL_NAME(bwd_worker)(&c, 0);
    }

    FL_NAME(permute_rows)(a->dh0, c.dh, perm, B, H, 1);
    if (c.dc)
        FL_NAME(permute_rows)(dc0, c.dc, perm, B, H, 1);

    if (!c.products) {
        st = FL_NAME(fl_gemm_whole)(blas, isa, 0, 0, (int)N, I, GH, c.dgx, GH, w_ih, I,
                                    c.dx, I);
        if (st == FL_OK)
            st = FL_NAME(fl_gemm_whole)(blas, isa, 1, 0, GH, I, (int)N, c.dgx, GH, x, I,
                                        a->dw_ih, I);
        if (st == FL_OK)
            st = FL_NAME(fl_gemm_whole)(blas, isa, 1, 0, GH, H, (int)N, c.dgh_full, GH,
                                        c.hprev, H, a->dw_hh, H);
        if (st == FL_OK && a->db_ih) {
            FL_NAME(fl_col_sums)(isa, a->db_ih, c.dgx, N, GH, GH, 0);
            if (cell->split_dgh)
                FL_NAME(fl_col_sums)(isa, a->db_hh, c.dgh_full, N, GH, GH, 0);
        }
    }
    if (st == FL_OK && a->db_ih && !cell->split_dgh)
        memcpy(a->db_hh, a->db_ih, sizeof(FL_REAL) * (size_t)GH);
    if (packed && !c.src) {  /* (with threads, they scattered their rows) */
        FL_REAL *dx = a->dx;
        for (size_t r = 0; r < (size_t)T * B; r++) {
            if (c.idx[r] >= 0)
                memcpy(dx + r * I, dxg + (size_t)c.idx[r] * I, sizeof(FL_REAL) * (size_t)I);
            else
                memset(dx + r * I, 0, sizeof(FL_REAL) * (size_t)I);
        }
    }
done:
    fl_scratch_release(&a->mem, block, buf_bytes);
    free(ibuf);
    return st;
}

#endif
