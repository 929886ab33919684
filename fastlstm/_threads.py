"""How many threads of its own the kernels' time loops may use.

The default is 1: the large whole-sequence products already run on the BLAS's
threads, and fastlstm's own threads only pay off when the BLAS is limited to
one thread (see set_num_threads). The environment variable
FASTLSTM_NUM_THREADS, read at import, changes the default.
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

    With n > 1, fastlstm's own threads split the hidden units of each time
    step (batches up to 64, and steps of at least about 128K multiply-adds);
    the whole-sequence products still run on the BLAS, whose thread pool is
    separate (SciPy's OpenBLAS; set it with threadpoolctl.threadpool_limits or
    OPENBLAS_NUM_THREADS before start-up). Do not run both pools on the same
    cores: OpenBLAS's idle threads keep spinning for a while after each call
    and then slow fastlstm's threads down. Either leave this at 1 and let the
    BLAS use the cores (the default, best for large batches), or limit the
    BLAS to one thread and set n to the number of cores (best for small
    batches and moderate sizes), e.g.::

        from threadpoolctl import threadpool_limits
        threadpool_limits(1, user_api="blas")
        fastlstm.set_num_threads(2)
    """
    global _num_threads
    if isinstance(n, bool) or not isinstance(n, int) or n < 1:
        raise ValueError(f"n: expected an int >= 1, got {n!r}")
    _num_threads = n


def get_num_threads():
    """The number of threads the kernels' time loops may use."""
    return _num_threads
