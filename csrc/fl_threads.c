/*
 * fl_threads.c -- the threads of one kernel call.
 *
 * A call that splits its time loop over n threads runs the same function
 * on n - 1 more (the caller is thread 0) and waits for them before
 * returning. They come from the caller's pool when it passes one (idle
 * workers kept between calls, fl_pool_run), else they are started for the
 * call and joined (fl_run_threads). The kernels keep nothing between calls;
 * a pool is its owner's, and concurrent calls on one pool take different
 * workers, so they stay independent.
 * Threads meet once per step at a spinning barrier (that yields the CPU
 * when a partner is late, e.g. on an oversubscribed machine); when the
 * partners keep losing their CPUs, the leader finishes the loop alone
 * (fl_solo_wait).
 */
#include <stdlib.h>
#include <string.h>
#include "fl_kernel_common.h"

#if defined(__unix__) || defined(__APPLE__)
#include <pthread.h>
#include <sched.h>
#include <time.h>
#include <unistd.h>
#define FL_HAVE_PTHREADS 1
#endif
#if defined(__x86_64__) || defined(_M_X64) || defined(__SSE__)
#include <xmmintrin.h>
#define FL_POOL_MXCSR 1
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
    atomic_init(&b->word, 0ULL);
    atomic_init(&b->solo, 0);
    b->n = n;
}

#define FL_SOLO_BIT 0x40000000ULL
#define FL_COUNT_MASK 0x3fffffffULL

long long fl_now_ns(void)
{
#ifdef FL_HAVE_PTHREADS
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (long long)ts.tv_sec * 1000000000LL + ts.tv_nsec;
#else
    return 0;  /* (no threads: no waits) */
#endif
}

int fl_barrier_wait(fl_barrier *b, long long patience_ns)
{
    if (atomic_load(&b->solo))
        return 1;
    /* patience < 0: ask at once (tests) */
    const unsigned long long arrive = 1ULL | (patience_ns < 0 ? FL_SOLO_BIT : 0ULL);
    unsigned long long w = atomic_fetch_add(&b->word, arrive) + arrive;
    const unsigned long long phase = w >> 32;
    if ((w & FL_COUNT_MASK) == (unsigned long long)b->n) {  /* the last to arrive */
        int solo = (w & FL_SOLO_BIT) != 0;
        if (solo)
            atomic_store(&b->solo, 1);  /* (before the release, which others see after it) */
        atomic_store(&b->word, (phase + 1) << 32);  /* no arrivals, next phase: release */
        return solo;
    }
    unsigned spins = 0;
    long long since = patience_ns > 0 ? fl_now_ns() : 0;
    int asked = 0;
    while ((w = atomic_load(&b->word)) >> 32 == phase) {
        fl_spin_pause(&spins);
        if (patience_ns > 0 && !asked && (spins & 63) == 0 && fl_now_ns() - since > patience_ns) {
            /* mark this phase's arrivals (the last to arrive sees the mark);
             * the phase in the word guards against marking the next one */
            while (w >> 32 == phase && !asked)
                asked = atomic_compare_exchange_weak(&b->word, &w, w | FL_SOLO_BIT);
        }
    }
    return atomic_load(&b->solo);
}

void fl_solo_init(fl_solo *s, int tid, int n)
{
    s->k0 = tid, s->k1 = tid + 1, s->n = n;
    s->lead = tid == 0 && n > 1;
    s->waits = s->strikes = 0;
    s->force_at = s->lead ? fl_test_solo_step() : -1;
    s->t_step = 0;
}

void fl_solo_step(fl_solo *s)
{
    if (s->lead)
        s->t_step = fl_now_ns();
}

int fl_solo_wait(fl_solo *s, fl_barrier *b)
{
    if (s->k1 - s->k0 != 1)
        return 1;  /* (already alone) */
    long long patience = 0, limit = 0, t_wait = 0;
    if (s->lead && s->waits > 0) {
        t_wait = fl_now_ns();
        limit = FL_SOLO_STEPS * (t_wait - s->t_step);
        limit = limit > FL_SOLO_WAIT_NS ? limit : FL_SOLO_WAIT_NS;
        if (s->strikes + 1 >= FL_SOLO_STRIKES)
            patience = limit;  /* (below that, a long wait only counts) */
    }
    if (s->waits++ == s->force_at)
        patience = -1;
    if (fl_barrier_wait(b, patience)) {
        s->k0 = 0;
        s->k1 = s->lead ? s->n : 0;
        return 1;
    }
    if (t_wait && fl_now_ns() - t_wait > limit)
        s->strikes++;
    return 0;
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

int fl_pipe_projection(int requested, int T, int B, int n_in, int H, int GH, int ragged)
{
    return requested > 1 && T > 1 && !ragged && (double)B * GH * H < FL_THREAD_MIN_WORK &&
           (double)T * B * GH * n_in >= FL_PIPE_MIN_WORK;
}

static int fl_test_pre(void)
{
    const char *env = getenv("FASTLSTM_TEST_PRE");
    return env && (strcmp(env, "1") == 0 || strcmp(env, "2") == 0);
}

int fl_test_pre_chunks(void)
{
    const char *env = getenv("FASTLSTM_TEST_PRE");
    return env && strcmp(env, "2") == 0;
}

static int fl_large_call(int requested, int T, int B, int n_in, int H, int GH, int ragged,
                         double min_work)
{
    return !ragged && B > FL_THREAD_MAX_B &&
           (fl_test_pre() || (double)T * B * GH * ((double)n_in + H) >= min_work) &&
           fl_threads_for(requested, T, B, H, GH, 1) > 1;
}

int fl_pre_projection(int requested, int T, int B, int n_in, int H, int GH, int ragged)
{
    return fl_large_call(requested, T, B, n_in, H, GH, ragged, FL_PRE_MIN_WORK);
}

int fl_post_products(int requested, int T, int B, int n_in, int H, int GH, int ragged)
{
    return fl_large_call(requested, T, B, n_in, H, GH, ragged, FL_POST_MIN_WORK);
}

int fl_row_threads(int requested, int T, int B, int H, int GH)
{
    int n = requested < FL_MAX_THREADS ? requested : FL_MAX_THREADS;
    if (n > B / FL_ROWS_MIN)
        n = B / FL_ROWS_MIN;
    if (n < 2 || T < 2 || (double)B * GH * H < FL_THREAD_MIN_WORK ||
        (double)GH * H >= FL_ROWS_MAX_WHH)
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

/* ---- a pool of workers kept between calls ----
 * Starting and joining a thread took 75-110 us on the project's 2-vCPU VM,
 * waking one that sleeps on a condition variable 23-27 us: a short call
 * with threads paid more for its threads than it saved. A worker waits for
 * a job (spinning briefly after its last one, then asleep),
 * runs it and flags it done; the caller takes n - 1 idle workers (starting
 * new ones when the pool has too few), hands each its tid, runs tid 0
 * itself, waits for their flags and gives the workers back. */
#ifdef FL_HAVE_PTHREADS
typedef struct fl_worker {
    pthread_mutex_t mu;
    pthread_cond_t cv;
    void (*fn)(void *, int);
    void *ctx;
    int tid;
    unsigned csr;     /* the caller's floating-point mode (MXCSR), which a
                       * thread started by the call would have inherited */
    atomic_int job;   /* 1 once fn, ctx and tid are set, 2 while running, then 0 */
    atomic_int done;  /* 1 once fn has returned */
    struct fl_worker *next;  /* in the pool's idle list */
} fl_worker;

struct fl_pool {
    pthread_mutex_t mu;
    fl_worker *idle;
    pid_t pid;  /* the process whose workers these are (a forked child has none) */
};

/* How long a worker waiting for its next job spins before it sleeps: long
 * enough for back-to-back calls (a forward and its backward, or a loop of
 * calls from Python, whose calls arrive some tens to a couple of hundred
 * microseconds apart), short enough not to hold a CPU for long. Waking a
 * worker that sleeps costs the caller a system call and the worker tens of
 * microseconds more before it runs (on the project's 2-vCPU VM 11-24 us and
 * 50-80 us: its idle vCPU has halted). A count of pauses (2000, about 55 us
 * here) let the worker sleep before nearly every call of such a loop; a
 * clock keeps the window the same on CPUs whose pause is 10 times shorter
 * or longer. Separate processes, 2 threads: LSTM forward 1000x1x32x32
 * (pipelined projection) about 15% faster (median of 4 runs 0.46 -> 0.38-0.40
 * ms). */
#ifndef FL_POOL_SPIN_NS
#define FL_POOL_SPIN_NS 250000LL
#endif

static void *fl_worker_main(void *p)
{
    fl_worker *w = p;
    for (;;) {
        const long long t_idle = fl_now_ns();
        for (unsigned i = 1; atomic_load(&w->job) != 1; i++) {
            fl_cpu_relax();
            if (i % 64 == 0 && fl_now_ns() - t_idle > FL_POOL_SPIN_NS)
                break;
        }
        if (atomic_load(&w->job) != 1) {
            pthread_mutex_lock(&w->mu);
            while (atomic_load(&w->job) != 1)
                pthread_cond_wait(&w->cv, &w->mu);
            pthread_mutex_unlock(&w->mu);
        }
        int one = 1;  /* (an optional job may have been withdrawn meanwhile) */
        if (!atomic_compare_exchange_strong(&w->job, &one, 2))
            continue;
#ifdef FL_POOL_MXCSR
        _mm_setcsr(w->csr);
#endif
        w->fn(w->ctx, w->tid);
        atomic_store(&w->job, 0);
        atomic_store(&w->done, 1);
    }
    return NULL;
}

static fl_worker *fl_worker_new(void)
{
    fl_worker *w = calloc(1, sizeof *w);
    if (!w)
        return NULL;
    atomic_init(&w->job, 0);
    atomic_init(&w->done, 0);
    if (pthread_mutex_init(&w->mu, NULL) != 0) {
        free(w);
        return NULL;
    }
    if (pthread_cond_init(&w->cv, NULL) != 0) {
        pthread_mutex_destroy(&w->mu);
        free(w);
        return NULL;
    }
    pthread_attr_t attr;
    pthread_t th;
    int ok = 0;
    if (pthread_attr_init(&attr) == 0) {
        ok = pthread_attr_setdetachstate(&attr, PTHREAD_CREATE_DETACHED) == 0 &&
             pthread_create(&th, &attr, fl_worker_main, w) == 0;
        pthread_attr_destroy(&attr);
    }
    if (!ok) {
        pthread_cond_destroy(&w->cv);
        pthread_mutex_destroy(&w->mu);
        free(w);
        return NULL;
    }
    return w;
}

static void fl_pool_give_back(fl_pool *p, fl_worker **ws, int n)
{
    pthread_mutex_lock(&p->mu);
    for (int i = 0; i < n; i++) {
        ws[i]->next = p->idle;
        p->idle = ws[i];
    }
    pthread_mutex_unlock(&p->mu);
}
#endif

fl_pool *fl_pool_new(void)
{
#ifdef FL_HAVE_PTHREADS
    fl_pool *p = calloc(1, sizeof *p);
    if (!p)
        return NULL;
    if (pthread_mutex_init(&p->mu, NULL) != 0) {
        free(p);
        return NULL;
    }
    p->pid = getpid();
    return p;
#else
    return NULL;
#endif
}

int fl_pool_run(fl_pool *p, int n, void (*fn)(void *, int), void *ctx, int optional)
{
#ifdef FL_HAVE_PTHREADS
    if (n <= 1 || !p || getpid() != p->pid)  /* (after a fork: threads per call) */
        return fl_run_threads(n, fn, ctx);
    fl_worker *ws[FL_MAX_THREADS];
    int got = 0;
    pthread_mutex_lock(&p->mu);
    for (; got < n - 1 && p->idle; got++) {
        ws[got] = p->idle;
        p->idle = p->idle->next;
    }
    pthread_mutex_unlock(&p->mu);
    for (; got < n - 1; got++)
        if (!(ws[got] = fl_worker_new()))
            break;
    if (got < n - 1) {  /* every thread or none, as fl_run_threads */
        fl_pool_give_back(p, ws, got);
        return 0;
    }
    for (int i = 0; i < got; i++) {
        fl_worker *w = ws[i];
        w->fn = fn;
        w->ctx = ctx;
        w->tid = i + 1;
#ifdef FL_POOL_MXCSR
        w->csr = _mm_getcsr();
#endif
        atomic_store(&w->done, 0);
        pthread_mutex_lock(&w->mu);  /* (a sleeping worker checks job under mu) */
        atomic_store(&w->job, 1);
        pthread_cond_signal(&w->cv);
        pthread_mutex_unlock(&w->mu);
    }
    fn(ctx, 0);
    for (int i = 0; i < got; i++) {
        int one = 1;  /* optional work a worker has not begun is withdrawn */
        if (optional && atomic_compare_exchange_strong(&ws[i]->job, &one, 0))
            continue;
        unsigned spins = 0;
        while (!atomic_load(&ws[i]->done))
            fl_spin_pause(&spins);
    }
    fl_pool_give_back(p, ws, got);
    return 1;
#else
    (void)optional;
    return fl_run_threads(n, fn, ctx);
#endif
}
