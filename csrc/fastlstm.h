/*
 * fastlstm.h -- the public C interface of the fastlstm kernels.
 *
 * Plain C99, no Python. Every entry point runs a whole sequence (all T steps)
 * of one recurrent cell, forward or backward through time, and returns a
 * status code (FL_OK on success). Nothing here prints, exits or keeps global
 * mutable state: two threads may call the kernels at once on different
 * output buffers.
 *
 * Layout conventions (all arrays are dense, C-contiguous, row-major, and of the
 * element type named by `dtype`):
 *   T  time steps, B  batch, I  input features, H  hidden features,
 *   G  gates per cell (LSTM 4, GRU 3, RNN 1); gate blocks are stacked as in
 *      PyTorch (LSTM i,f,g,o; GRU r,z,n).
 *   x      (T, B, I)     time-major input
 *   w_ih   (G*H, I)      input weights;  w_hh (G*H, H) recurrent weights
 *   b_ih, b_hh (G*H)     biases, or NULL for "no bias"
 *   h0, c0 (B, H)        initial states, or NULL for zeros (c0: LSTM only)
 *   lengths (B)          int64 valid lengths in [0, T], or NULL (all T).
 *                        Semantics of PyTorch's PackedSequence: y is zero at
 *                        steps t >= lengths[b] and the state of b stops there.
 *   reverse              0: steps 0..len-1; 1: steps len-1..0 (the reverse
 *                        half of a bidirectional layer).
 *
 * Denormal numbers are flushed to zero inside the kernels (the caller's
 * floating-point mode is restored on return).
 *
 * Ownership: the caller owns every buffer; the kernels allocate their own
 * scratch with malloc (never inside the time loop) and free it before return.
 * Inputs are never written. Outputs must not alias inputs or each other.
 */
#ifndef FASTLSTM_H
#define FASTLSTM_H

#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

/* Status codes. */
enum {
    FL_OK = 0,
    FL_ERR_NOMEM = 1,      /* malloc failed                                   */
    FL_ERR_ARG = 2,        /* inconsistent sizes, NULL where data is required */
    FL_ERR_TOO_LARGE = 3,  /* a matrix dimension does not fit the BLAS int    */
    FL_ERR_LENGTHS = 4,    /* a length outside [0, T]                         */
    FL_ERR_DTYPE = 5,      /* unknown dtype code                              */
    FL_ERR_CELL = 6        /* unknown cell or nonlinearity code               */
};

/* Element type codes. */
enum { FL_FLOAT32 = 0, FL_FLOAT64 = 1 };

/* Cell codes. */
enum { FL_LSTM = 0, FL_GRU = 1, FL_RNN_TANH = 2, FL_RNN_RELU = 3 };

/* Fortran-interface GEMM, as exported by every BLAS (and by
 * scipy.linalg.cython_blas): column-major, all arguments by pointer. */
typedef void (*fl_sgemm_fn)(char *transa, char *transb, int *m, int *n, int *k,
                            float *alpha, float *a, int *lda, float *b, int *ldb,
                            float *beta, float *c, int *ldc);
typedef void (*fl_dgemm_fn)(char *transa, char *transb, int *m, int *n, int *k,
                            double *alpha, double *a, int *lda, double *b, int *ldb,
                            double *beta, double *c, int *ldc);

/* The BLAS the kernels call. A NULL member (or a NULL fl_blas pointer) selects
 * the built-in plain C GEMM, which is slow and meant for debugging only.
 * own = 0 leaves the large products to the BLAS: the whole-sequence products
 * above a few million multiply-adds, and the per-step products of batches
 * above 64 (fastlstm's threads then leave the time loop to the BLAS's),
 * except in calls on several threads with much work in all, whose steps
 * run on fastlstm's threads (a backward's before the BLAS's products;
 * fl_pre_projection and fl_post_products in fl_kernel_common.h).
 * own != 0 runs every product fastlstm's own kernel can take on that kernel
 * and its threads, at any size: for a BLAS slower than it (one built for
 * narrower vectors than the CPU has, say). The results agree to rounding.
 * own has no effect with the generic (plain C) copy of the kernels. */
typedef struct {
    fl_sgemm_fn sgemm;
    fl_dgemm_fn dgemm;
    int own;
} fl_blas;

/* An optional source of the large scratch buffer of a call: alloc(ctx, n)
 * returns n bytes aligned for any element type (or NULL), release(ctx, p, n)
 * takes them back (the kernels ask for 64 bytes more than they use and start
 * their pieces on 64-byte lines themselves, so no stronger alignment is
 * needed). Both are called from the calling thread only. A NULL
 * alloc selects malloc/free. (The Python bridge passes a cache of freed
 * blocks, so that calls of one shape reuse memory already mapped.) */
typedef struct {
    void *(*alloc)(void *ctx, size_t bytes);
    void (*release)(void *ctx, void *p, size_t bytes);
    void *ctx;
} fl_allocator;

/* An optional pool of worker threads kept between calls: a call with
 * threads hands its other threads' work to idle workers of the pool rather
 * than starting threads and joining them (which took 75-110 us on a 2-vCPU
 * VM; waking an idle worker 23-27 us). NULL (zero-initialised arguments)
 * starts threads per call. One pool may serve concurrent calls (each takes
 * its own workers, and the pool starts more when it has too few). It is
 * never freed: its workers sleep when idle. In a process forked from the
 * one that made it, calls start threads per call (its workers are not
 * there). fl_pool_new returns NULL where there are no threads or no memory.
 * (The Python bridge keeps one per process.) */
typedef struct fl_pool fl_pool;
fl_pool *fl_pool_new(void);

/* Number of gates G, and of extra (T*B, n*H) rows saved for backward. */
int fl_cell_gates(int cell);
int fl_cell_extra(int cell);

/* Rows of the training workspace: sum of the lengths (clamped to [0, T]), or
 * T * B when lengths is NULL. */
int64_t fl_workspace_rows(const int64_t *lengths, int T, int B);

/*
 * Forward through time.
 *
 * In:  dtype, cell, T, B, I, H, x, w_ih, w_hh, b_ih, b_hh, h0, c0, lengths,
 *      reverse (see above).
 * Out (caller-allocated, written completely):
 *   y    (T, B, H)   hidden state at each step, zero at padded steps
 *   h_n  (B, H)      state after each sequence's last valid step
 *   c_n  (B, H)      LSTM cell state likewise; ignored (may be NULL) otherwise
 * Training workspace (all three NULL for inference, or all non-NULL), with
 * N = fl_workspace_rows(lengths, T, B) rows: one per valid step (t, b), in
 * time-major order (t, then b); N = T * B and row t * B + b without lengths:
 *   gates (N, G*H)   post-activation gates at each valid step
 *   hprev (N, H)     the state each valid step started from
 *   extra (N, E*H)   E = fl_cell_extra(cell); per cell:
 *                       LSTM  [c_prev | tanh(c)],  GRU  [W_hn h + b_hn],
 *                       RNN   nothing (E = 0, may be NULL)
 *   The workspace is what fl_backward reads. Ragged batches thus cost what
 *   their valid steps cost: padded steps are neither computed nor stored.
 */
typedef struct {
    int dtype, cell, T, B, n_in, H, reverse;  /* n_in is I (I clashes with complex.h) */
    int num_threads;  /* threads the time loop may use (<= 1: the calling thread only) */
    const void *x, *w_ih, *w_hh, *b_ih, *b_hh, *h0, *c0;
    const int64_t *lengths;
    void *y, *h_n, *c_n;
    void *gates, *hprev, *extra;
    fl_allocator mem;  /* zero-initialised: malloc/free */
    fl_pool *pool;     /* NULL: threads started per call */
} fl_forward_args;

int fl_forward(const fl_forward_args *a, const fl_blas *blas);

/*
 * Backward through time, from the workspace of a training-mode fl_forward run
 * with the same dtype, cell, sizes, x, w_ih, w_hh, lengths and reverse.
 *
 * In:  dy (T, B, H), dh_n (B, H), dc_n (B, H; LSTM): upstream gradients, each
 *      may be NULL for zeros. dy at padded steps is ignored.
 * Out (caller-allocated, written completely):
 *   dx (T, B, I)   zero at padded steps
 *   dh0 (B, H), dc0 (B, H; LSTM only, else may be NULL)
 *   dw_ih (G*H, I), dw_hh (G*H, H)
 *   db_ih, db_hh (G*H)   may both be NULL when the forward had no bias
 */
typedef struct {
    int dtype, cell, T, B, n_in, H, reverse;  /* n_in is I (I clashes with complex.h) */
    int num_threads;  /* threads the time loop may use (<= 1: the calling thread only) */
    const void *x, *w_ih, *w_hh;
    const int64_t *lengths;
    const void *gates, *hprev, *extra;
    const void *dy, *dh_n, *dc_n;
    void *dx, *dh0, *dc0, *dw_ih, *dw_hh, *db_ih, *db_hh;
    fl_allocator mem;  /* zero-initialised: malloc/free */
    fl_pool *pool;     /* NULL: threads started per call */
} fl_backward_args;

int fl_backward(const fl_backward_args *a, const fl_blas *blas);

/* The kernels' own activations applied to n values (in and out may alias);
 * for testing their accuracy. */
enum { FL_ACT_SIGMOID = 0, FL_ACT_TANH = 1 };
int fl_activation(int dtype, int kind, int64_t n, const void *in, void *out);

#ifdef __cplusplus
}
#endif
#endif /* FASTLSTM_H */
