/*
 * fl_kernel_common.h -- internal declarations that do not depend on the
 * element type: instruction-set levels and the threads of a kernel call.
 */
#ifndef FL_KERNEL_COMMON_H
#define FL_KERNEL_COMMON_H

#include <stdatomic.h>
#include <stddef.h>
#include "fastlstm.h"

/* Instruction-set levels of the multi-ISA code (fl_template.h). */
enum { FL_ISA_GENERIC = 0, FL_ISA_AVX2 = 1, FL_ISA_AVX512 = 2 };

/* The best level this CPU runs, capped by FASTLSTM_ISA (seq.c). */
int fl_isa(void);

/* Every product on fastlstm's own kernel (fl_blas.own; not for the generic
 * copy, whose kernel loses to any BLAS). */
static inline int fl_own_products(const fl_blas *blas, int isa)
{
    return blas && blas->own && isa != FL_ISA_GENERIC;
}

/* Products with at most this many rows (and A not transposed) skip the BLAS. */
#ifndef FL_SMALL_M
#define FL_SMALL_M 4
#endif

/* Batches up to this size (any size with fl_own_products) run the per-step
 * product on w_hh^T packed once per call (fl_small_gemm) rather than through
 * a BLAS call per step. */
#ifndef FL_PACK_MAX_B
#define FL_PACK_MAX_B 64
#endif

/* Whole-sequence products of at most this many multiply-adds (any number
 * with fl_own_products) run on fastlstm's own kernel rather than the BLAS
 * (fl_gemm_whole). */
#ifndef FL_OWN_GEMM_MAX
#define FL_OWN_GEMM_MAX 4194304.0
#endif

/* The forward projects the inputs of about FL_CHUNK_BYTES of gates at a
 * time (at least FL_CHUNK_MIN_ROWS rows, so each product stays efficient). */
#ifndef FL_CHUNK_BYTES
#define FL_CHUNK_BYTES 1048576.0
#endif
#ifndef FL_CHUNK_MIN_ROWS
#define FL_CHUNK_MIN_ROWS 128.0
#endif

/* Blocking of fl_panel_gemm (fl_small.c): rows of op(A) per block, rows of
 * K per chunk, and the K above which chunks of K are outermost. (KC: 384
 * ran 2-7% faster than 192 on an AMD Zen 5, whose L2 feeds a panel's rows
 * as fast as the products take them; fewer chunks, fewer passes over C.) */
#define FL_PANEL_MC 256
#ifndef FL_PANEL_KC
#define FL_PANEL_KC 384
#endif
#define FL_PANEL_KLONG 2048

/* Values of scratch fl_gemm_panel uses for an M x K op(A) (the copy of one
 * block of it, plus a register of slack). */
static inline size_t fl_panel_work(int trans_a, int M, int K)
{
    size_t rows = (size_t)(M < FL_PANEL_MC ? M : FL_PANEL_MC) + 1;
    size_t kdim = (size_t)(trans_a || K > FL_PANEL_KLONG ? FL_PANEL_KC : (K > 0 ? K : 1));
    return rows * kdim + 16;
}

/* Width of a panel of B for fl_panel_gemm, in bytes, by instruction set:
 * one pass of the product's block (two registers of each row, fl_small.c).
 * Every packing and every product of one call uses the width of the level
 * it runs at. (AVX2 on 128-byte panels, two passes each, read every other
 * line of a panel in a pass: the product ran 4-8% slower on an AMD Zen 3,
 * the LSTM forward 100x64x512x512 on 2 threads 7%.) */
#define FL_PANEL_BYTES_OF_VEC(vec_bytes) ((vec_bytes) == 64 ? 128 : 64)
#define FL_PANEL_BYTES_MAX 128
static inline int fl_panel_bytes(int isa)
{
    return FL_PANEL_BYTES_OF_VEC(isa == FL_ISA_AVX512 ? 64 : 32);
}

/* ---- threads (fl_threads.c) ---- */
#define FL_MAX_THREADS 64
/* per-step multiply-adds (B * G*H * H) below which one thread is used */
#ifndef FL_THREAD_MIN_WORK
#define FL_THREAD_MIN_WORK 131072.0
#endif
/* the backward's time loop runs on one thread below this many per-step
 * multiply-adds (B * G*H * H); its whole-sequence products still use all */
#ifndef FL_BWD_THREAD_MIN_WORK
#define FL_BWD_THREAD_MIN_WORK 6000000.0
#endif
/* When the backward's loop runs on one thread, a second one computes the
 * whole-sequence products of the rows the loop has finished, in blocks of
 * at least FL_PIPE_MIN_ROWS and at most FL_PIPE_ROWS rows. */
#ifndef FL_PIPE_MIN_ROWS
#define FL_PIPE_MIN_ROWS 128
#endif
#ifndef FL_PIPE_ROWS
#define FL_PIPE_ROWS 512
#endif
/* A dense batch splits its rows across threads (each runs every step of
 * its rows alone) when each gets at least FL_ROWS_MIN rows (fl_row_threads). */
#ifndef FL_ROWS_MIN
#define FL_ROWS_MIN 8
#endif
/* ... while w_hh has fewer than FL_ROWS_MAX_WHH values (G*H * H). Each
 * thread of rows streams the whole of w_hh and w_ih at every step for its
 * share of the batch; past about 2 MiB of w_hh (float32; 512 KiB of L2 per
 * core on the machine below) that costs more than the rows split saves,
 * and half of each for the whole batch is cheaper: the hidden units are
 * split instead (or, at B > FL_THREAD_MAX_B unless the kernels do every
 * product, the BLAS runs each step's product on its threads). On the
 * 2-vCPU AMD Zen 3, 2 threads, in-process pairs: LSTM forward
 * 100x64x512x512 (1M values) +5-9%, forward+backward +5%, GRU +2%;
 * 50x128x1024x1024 forward LSTM +10-15%, GRU +14-29%, RNN +13%, LSTM
 * forward+backward level; LSTM forward 100x32x256x256 (256K values) stays
 * 9% faster split by rows, and 100x128x256x256 23% faster than on the
 * BLAS (a bound on the per-step work had sent it there). */
#ifndef FL_ROWS_MAX_WHH
#define FL_ROWS_MAX_WHH 524288.0
#endif
/* Each thread of rows projects about FL_ROWS_CHUNK_BYTES of gates at a
 * time (at least FL_ROWS_CHUNK_ROWS rows). */
#ifndef FL_ROWS_CHUNK_BYTES
#define FL_ROWS_CHUNK_BYTES 262144.0
#endif
#ifndef FL_ROWS_CHUNK_ROWS
#define FL_ROWS_CHUNK_ROWS 64.0
#endif
/* pipelined projection (seq.c, pipe_project): multiply-adds of the whole
 * projection (T * B * G*H * I) from which a second thread projects beside
 * the steps, and the rows of XP per chunk it projects. (On the 2-vCPU AMD
 * Zen 3 VM, with threads started per call, LSTM forward 100x1x64x64, 1.6M
 * multiply-adds, ran 20% slower pipelined, 1000x1x32x32, 4.1M, 5-10%
 * faster, 1000x1x64x64 15% faster; with the pool's workers, a threshold of
 * 0.5M still made LSTM and GRU 100x1x64x64 10-11% slower.) */
#ifndef FL_PIPE_MIN_WORK
#define FL_PIPE_MIN_WORK 3000000.0
#endif
#ifndef FL_PIPE_CHUNK_ROWS
#define FL_PIPE_CHUNK_ROWS 64
#endif
/* batches above this leave the per-step product to the BLAS (unless
 * fl_own_products: then any batch runs on the kernels' own threads) */
#ifndef FL_THREAD_MAX_B
#define FL_THREAD_MAX_B 64
#endif
/* a forward above FL_THREAD_MAX_B rows with at least FL_PRE_MIN_WORK
 * multiply-adds (T * B * G*H * (I + H)) projects first and splits the steps
 * by units (fl_pre_projection); a backward with at least FL_POST_MIN_WORK
 * runs its loop on fastlstm's threads and its whole-sequence products on
 * the BLAS after it (fl_post_products) */
#ifndef FL_PRE_MIN_WORK
#define FL_PRE_MIN_WORK 4e9
#endif
#ifndef FL_POST_MIN_WORK
#define FL_POST_MIN_WORK 3e10
#endif
/* ... where an inference projects at most this many bytes of XP at a time
 * (each thread its columns of a chunk of steps, just before them), so that
 * a long sequence's scratch stays bounded */
#ifndef FL_PRE_CHUNK_BYTES
#define FL_PRE_CHUNK_BYTES 67108864.0
#endif

/* A spinning barrier of n threads. `word` holds the arrivals of the current
 * phase (low 32 bits, with FL_SOLO_BIT) and the phase (high 32 bits). */
typedef struct {
    _Atomic unsigned long long word;
    atomic_int solo;
    int n;
} fl_barrier;

void fl_barrier_init(fl_barrier *b, int n);
/* One wait of a spin loop: a pause, or after many (*spins counts them) a
 * yield of the CPU. */
void fl_spin_pause(unsigned *spins);
/* Wait until all n threads have arrived. A thread with patience_ns > 0 (the
 * leader of a time loop, thread 0) that has waited longer than that for the
 * others (they have lost their CPUs to other work) asks to go on alone: once
 * the others have arrived, this and every later wait returns 1, and the
 * leader does the rest of the loop alone while the others leave it (a loop
 * split across threads would otherwise wait for a descheduled thread at
 * every step: 20-30x slower beside another runtime's spinning threads).
 * patience_ns < 0 asks at once (for tests). Returns 0 while all go on. */
int fl_barrier_wait(fl_barrier *b, long long patience_ns);
/* FASTLSTM_TEST_SOLO (seq.c): the barrier the leader asks at (-1: none). */
int fl_test_solo_step(void);
/* FASTLSTM_TEST_UNITS=1 (seq.c): split units, not rows, in the forward. */
int fl_test_units(void);

/* One thread's side of a time loop that the leader (thread 0) may finish
 * alone. The thread runs the units of threads [k0, k1) at each step: its
 * own, or after fl_solo_wait returned 1 every thread's (the leader) or
 * none (the others, which leave the loop). */
typedef struct {
    int k0, k1, n, lead, waits, strikes, force_at;
    long long t_step;
} fl_solo;
void fl_solo_init(fl_solo *s, int tid, int n);
/* Before a step's work: the leader notes the time. */
void fl_solo_step(fl_solo *s);
/* The step's barrier (patience as above; none at the first wait, which
 * includes the start of the threads; the leader asks at its FL_SOLO_STRIKES-th
 * long wait). Returns 1 once the leader goes on alone. */
int fl_solo_wait(fl_solo *s, fl_barrier *b);
/* Nanoseconds of a monotonic clock (0 where there are no threads). */
long long fl_now_ns(void);
/* The leader's patience: at least FL_SOLO_WAIT_NS nanoseconds, and at least
 * FL_SOLO_STEPS times its own time for the step (a partner that much slower
 * has lost its CPU; an interrupt or a page fault costs less). */
#ifndef FL_SOLO_WAIT_NS
#define FL_SOLO_WAIT_NS 200000
#endif
#ifndef FL_SOLO_STEPS
#define FL_SOLO_STEPS 3
#endif
/* ... at the FL_SOLO_STRIKES-th wait of a call longer than that. */
#ifndef FL_SOLO_STRIKES
#define FL_SOLO_STRIKES 3
#endif
/* How many threads a time loop of these sizes should use, at most `requested`;
 * any_b: batches above FL_THREAD_MAX_B too (when the kernels do every product). */
int fl_threads_for(int requested, int T, int B, int H, int GH, int any_b);
/* 1 when a forward of that shape (on `requested` threads, the BLAS taking
 * the large products) has each of fastlstm's threads project the whole
 * input for its units on the panel kernel and then run its units of every
 * step, rather than leaving every step's product to the BLAS (which repacks
 * w_hh each step). Above FL_THREAD_MAX_B rows, dense, with FL_PRE_MIN_WORK
 * multiply-adds (FASTLSTM_TEST_PRE=1: any, for tests). Until the change
 * below, the whole projection was one BLAS call; its idle threads went on
 * spinning for about 0.1 s beside fastlstm's (4.6% of a profile's samples
 * at LSTM 50x128x1024x1024), which a short call did not earn back (RNN
 * 50x128x1024x1024, 13G multiply-adds, -14%), hence a rule of 30G then. On
 * fastlstm's threads (AMD Zen 3, 2 threads, in-process pairs, inference
 * against the BLAS's projection): LSTM 50x128x1024x1024 +7.9%, GRU +10.9%,
 * RNN 200x128x1024x1024 +8.1%; against every step on the BLAS: RNN
 * 50x128x1024x1024 +10.9%, LSTM 10x128x1024x1024 (10.7G) +11%,
 * 20x128x512x512 (5.4G) +12.8%, RNN 20x128x1024x1024 (5.4G) +7%, GRU
 * 100x96x512x512 +19%; LSTM 5x128x512x512 (1.3G) ran 25% slower in the
 * median, hence 4G. The B = 64 steps split so after a whole projection by
 * the BLAS had run 30% slower than with chunks projected on fastlstm's
 * threads. */
int fl_pre_projection(int requested, int T, int B, int n_in, int H, int GH, int ragged);
/* FASTLSTM_TEST_PRE=2: as 1, and such an inference projects one step at a
 * time (FL_PRE_CHUNK_BYTES), so that tests reach that path at small sizes.
 * Reads only; no state is kept. */
int fl_test_pre_chunks(void);
/* 1 when a backward of that shape runs its time loop on fastlstm's threads,
 * split by units, and then its whole-sequence products on the BLAS, rather
 * than every step's product on the BLAS: as fl_pre_projection, with
 * FL_POST_MIN_WORK multiply-adds (AMD Zen 3, 2 threads, in-process pairs:
 * LSTM forward+backward 50x128x1024x1024 +6.2%, GRU +14%, with the forward
 * then projecting by the BLAS; LSTM 20x128x512x512, 5.4G, forward+backward
 * 10% slower so). */
int fl_post_products(int requested, int T, int B, int n_in, int H, int GH, int ragged);
/* Threads of a dense batch's forward split by rows (1: not split so). */
int fl_row_threads(int requested, int T, int B, int H, int GH);
/* 1 when a forward of that shape (on `requested` threads) runs its steps on
 * one thread with a second projecting the chunks of XP ahead of them: the
 * per-step work too small to split, the projection large enough to pay for
 * waking a thread. */
int fl_pipe_projection(int requested, int T, int B, int n_in, int H, int GH, int ragged);
/* u[0..n]: boundaries of n slices of H units, in whole 16-unit vectors. */
void fl_split_units(int *u, int n, int H);
/* fn(ctx, tid) for tid in [0, n) on n threads, the caller being thread 0.
 * Returns 1, or 0 without running fn when threads could not be started. */
int fl_run_threads(int n, void (*fn)(void *, int), void *ctx);
/* The same on idle workers of pool p (fastlstm.h), fl_run_threads without
 * one or in a process forked from the pool's. optional: the other threads'
 * work may be left undone (thread 0 does what they do not), so once thread
 * 0 has returned, a worker that has not begun is not waited for. */
int fl_pool_run(fl_pool *p, int n, void (*fn)(void *, int), void *ctx, int optional);

#endif
