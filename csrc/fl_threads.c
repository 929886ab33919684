/*
 * fl_threads.c -- the threads of one kernel call.
 *
 * A call that splits its time loop over n threads starts n - 1 of them
 * (the caller is thread 0), runs the same function on each and joins them
 * before returning: nothing outlives the call and nothing is shared between
 * calls, so concurrent calls from several threads stay independent.
 * Threads meet once per step at a spinning barrier (that yields the CPU
 * when a partner is late, e.g. on an oversubscribed machine).
 */
#include <stdlib.h>
#include "fl_kernel_common.h"

#if defined(__unix__) || defined(__APPLE__)
#include <pthread.h>
#include <sched.h>
#define FL_HAVE_PTHREADS 1
#endif

static void fl_cpu_relax(void)
{
#if (defined(__x86_64__) || defined(__i386__)) && (defined(__GNUC__) || defined(__clang__))
    __builtin_ia32_pause();
#endif
}

void fl_spin_pause(unsigned *spins)
{
    if (++*spins < 20000)
        fl_cpu_relax();
    else {
#ifdef FL_HAVE_PTHREADS
        sched_yield();
#endif
    }
}

void fl_barrier_init(fl_barrier *b, int n)
{
    atomic_init(&b->count, 0);
    atomic_init(&b->phase, 0);
    b->n = n;
}

void fl_barrier_wait(fl_barrier *b)
{
    int phase = atomic_load(&b->phase);
    if (atomic_fetch_add(&b->count, 1) + 1 == b->n) {
        atomic_store(&b->count, 0);
        atomic_fetch_add(&b->phase, 1);  /* releases the others */
        return;
    }
    unsigned spins = 0;
    while (atomic_load(&b->phase) == phase)
        fl_spin_pause(&spins);
}

int fl_threads_for(int requested, int T, int B, int H, int GH, int any_b)
{
    int n = requested < FL_MAX_THREADS ? requested : FL_MAX_THREADS;
    if (n > H / 16)
        n = H / 16;  /* at least 16 hidden units per thread */
    if (n < 2 || T < 2)
        return 1;
    /* too little work per step to pay for a barrier, or a batch large enough
     * for the BLAS (and its own threads) to do better */
    if ((double)B * GH * H < FL_THREAD_MIN_WORK || (B > FL_THREAD_MAX_B && !any_b))
        return 1;
    return n;
}

void fl_split_units(int *u, int n, int H)
{
    u[0] = 0;
    for (int t = 1; t < n; t++) {
        int v = (int)((long long)t * H / n) / 16 * 16;  /* whole vectors per thread */
        u[t] = v > u[t - 1] ? v : u[t - 1];
    }
    u[n] = H;
}

#ifdef FL_HAVE_PTHREADS
typedef struct {
    void (*fn)(void *, int);
    void *ctx;
    int tid;
    atomic_int *gate;  /* 0: wait, 1: run, -1: give up */
} fl_thread_arg;

static void *fl_thread_main(void *p)
{
    fl_thread_arg *arg = p;
    int g;
    unsigned spins = 0;
    while ((g = atomic_load(arg->gate)) == 0)
        if (++spins > 1000)
            sched_yield();
    if (g > 0)
        arg->fn(arg->ctx, arg->tid);
    return NULL;
}
#endif

int fl_run_threads(int n, void (*fn)(void *, int), void *ctx)
{
    if (n <= 1) {
        fn(ctx, 0);
        return 1;
    }
#ifdef FL_HAVE_PTHREADS
    pthread_t th[FL_MAX_THREADS];
    fl_thread_arg args[FL_MAX_THREADS];
    atomic_int gate;
    atomic_init(&gate, 0);
    int created = 0;
    for (int t = 1; t < n; t++) {
        args[t].fn = fn;
        args[t].ctx = ctx;
        args[t].tid = t;
        args[t].gate = &gate;
        if (pthread_create(&th[t], NULL, fl_thread_main, &args[t]) != 0)
            break;
        created++;
    }
    atomic_store(&gate, created == n - 1 ? 1 : -1);
    if (created == n - 1)
        fn(ctx, 0);
    for (int t = 1; t <= created; t++)
        pthread_join(th[t], NULL);
    return created == n - 1;
#else
    (void)fn;
    (void)ctx;
    return 0;
#endif
}
