"""How many threads of its own the kernels' time loops may use.

The default is 1 (the whole-sequence products run on the BLAS's threads);
see set_num_threads. The environment variable FASTLSTM_NUM_THREADS, read at
import, changes the default.
"""

import os


def _default():
    env = os.environ.get("FASTLSTM_NUM_THREADS")
    if env:
        try:
            n = int(env)
        except ValueError:
            n = 0
        if n >= 1:
            return n
    return 1


_num_threads = _default()


def set_num_threads(n):
    """Let the kernels' time loops use up to `n` threads (an int >= 1).

    With n > 1, calls whose steps are large enough (at least about 128K
    multiply-adds per step) run entirely on fastlstm's own threads. With
    at least 8 batch rows per thread and a w_hh of fewer than 512K values
    (G*H * H), the time loop gives each thread some of the rows (dense or
    ragged; a forward of any batch size, a backward of batches up to 64):
    a forward projects their inputs (chunk by chunk, just before the steps
    that read them), and both run every step of them alone, with no
    barrier per step. Smaller batches and larger weights split the hidden
    units (batches above 64 only when fastlstm runs every product itself,
    or in large calls: an inference with 4G multiply-adds or more,
    T * B * G*H * (I + H), each thread first projecting the whole input
    for its units, at most 64 MiB of gates at a time; a training forward and a backward with 30G or more, the
    backward before its whole-sequence products on the BLAS):
    each thread owns a slice of them for the input projection and
    every time step (one barrier per step; backward steps below about 6M
    multiply-adds stay on one thread while a second one computes the
    products of the rows they have finished). Backward's whole-sequence
    products are shared by the threads. The BLAS is not called (but for
    those large backwards' products, after the steps), so its pool and
    fastlstm's do not compete. A forward whose steps are too small
    to split but whose input projection is large (at least 3M
    multiply-adds: long sequences at small batch) runs its steps on one
    thread while a second projects the input ahead of them. The threads
    are workers kept between calls (asleep when idle), so a call wakes
    them rather than starting threads. Other
    calls run as with n = 1: the per-step products (and, at inference of
    batches up to 64, the input projection) on one thread, the other
    whole-sequence products on the BLAS with its own threads (SciPy's
    OpenBLAS; threadpoolctl sets their number). 1 is the default, so that
    fastlstm only takes the cores it is given; ``python -m fastlstm.bench
    --threads 2`` sets n = 2 (see BENCHMARKS.md for what it gains). Results
    agree with n = 1 to rounding (products may be summed in another order)::

        from threadpoolctl import threadpool_limits
        threadpool_limits(2, user_api="blas")
        fastlstm.set_num_threads(2)
    """
    global _num_threads
    if isinstance(n, bool) or not isinstance(n, int) or n < 1:
        raise ValueError(f"n: expected an int >= 1, got {n!r}")
    _num_threads = n


def get_num_threads():
    """The number of threads the kernels' time loops may use."""
    return _num_threads
