"""How many threads the kernels' time loops may use.

The default is the number of CPUs this process may run on, or the value of
the environment variable FASTLSTM_NUM_THREADS when it is set at import.
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
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except AttributeError:  # not on Linux
        return max(1, os.cpu_count() or 1)


_num_threads = _default()


def set_num_threads(n):
    """Let the kernels' time loops use up to `n` threads (an int >= 1).

    fastlstm's own threads split the hidden units of each time step when the
    step is small enough that the BLAS's threads do not pay (small batches,
    moderate sizes); the large whole-sequence products run on the BLAS, whose
    thread pool is set separately (e.g. threadpoolctl.threadpool_limits, or
    OPENBLAS_NUM_THREADS before start-up). Setting both to the same number of
    cores gives a fair comparison with other libraries.
    """
    global _num_threads
    if isinstance(n, bool) or not isinstance(n, int) or n < 1:
        raise ValueError(f"n: expected an int >= 1, got {n!r}")
    _num_threads = n


def get_num_threads():
    """The number of threads the kernels' time loops may use."""
    return _num_threads
