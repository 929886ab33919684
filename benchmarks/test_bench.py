"""pytest-benchmark timings of the C kernels against the NumPy reference (and torch).

Run from the repository root (the default ``testpaths`` is ``tests/``, so
these are only collected when pytest is pointed here):

    python -m pytest benchmarks/                       # all
    python -m pytest benchmarks/ -k "lstm and fwdbwd"  # a subset
    python -m pytest benchmarks/ --benchmark-group-by=group --benchmark-sort=name

Each benchmark group is one (cell, mode, shape) and holds the implementations
side by side: ``fast`` (the C kernels), ``reference`` (pure NumPy, only at the
small shapes: it is slow) and ``torch`` (``torch.nn.LSTM``/``GRU``/``RNN``,
skipped when torch is not installed). ``fwd`` is the inference forward
(``training=False``; torch under ``no_grad``); ``fwdbwd`` is the training
forward followed by the backward with an upstream ``dy``.

Set ``FASTLSTM_BENCH_THREADS=1`` (or any count) to pin every BLAS / OpenMP
pool and torch to that many threads; by default nothing is changed.

There are no timing thresholds here: these only measure. For one table of
ratios, GFLOP/s and ONNX Runtime as well, use ``python -m fastlstm.bench``.
"""

import importlib.util
import os

import numpy as np
import pytest

import fastlstm
from fastlstm import bench, reference
from fastlstm.selfcheck import make_problem

CELLS = ("lstm", "gru", "rnn")
MODES = ("fwd", "fwdbwd")
#: (T, B, I, H), small to medium
SHAPES = ((100, 1, 64, 64), (100, 16, 128, 128), (100, 32, 256, 256))
#: the reference is timed only at these (it is slow at the larger ones)
REFERENCE_SHAPES = {(100, 1, 64, 64), (100, 16, 128, 128)}
IMPLS = ("fast", "reference", "torch")

HAVE_TORCH = importlib.util.find_spec("torch") is not None


@pytest.fixture(scope="session", autouse=True)
def _threads():
    """Pin all thread pools to $FASTLSTM_BENCH_THREADS when it is set."""
    n = os.environ.get("FASTLSTM_BENCH_THREADS")
    if not n:
        yield
        return
    if HAVE_TORCH:
        import torch  # noqa: F401  (loaded first so that the setting reaches it)
    settings = bench.ThreadSettings()
    settings.apply(int(n))
    yield
    settings.restore()


def _runner(impl, cell, mode, shape):
    T, B, I, H = shape
    fwd, bwd = make_problem(cell, T, B, I, H, dtype=np.float32)
    if impl == "fast":
        return bench.numpy_runner(fastlstm, cell, mode, fwd, bwd).fn
    if impl == "reference":
        return bench.numpy_runner(reference, cell, mode, fwd, bwd).fn
    return bench.torch_runner(cell, mode, fwd, bwd).fn


def _shape_id(shape):
    return "x".join(map(str, shape))


@pytest.mark.parametrize("impl", IMPLS)
@pytest.mark.parametrize("shape", SHAPES, ids=_shape_id)
@pytest.mark.parametrize("mode", MODES)
@pytest.mark.parametrize("cell", CELLS)
def test_kernel(benchmark, cell, mode, shape, impl):
    if impl == "reference" and shape not in REFERENCE_SHAPES:
        pytest.skip("the NumPy reference is only timed at the small shapes")
    if impl == "torch" and not HAVE_TORCH:
        pytest.skip("torch is not installed")
    fn = _runner(impl, cell, mode, shape)
    fn()  # warm-up (torch builds its oneDNN primitives on the first call)
    benchmark.group = f"{cell} {mode} {_shape_id(shape)}"
    benchmark.extra_info.update(
        cell=cell, mode=mode, shape=list(shape), impl=impl,
        gflop=bench.flops(cell, *shape, mode) / 1e9)
    y = benchmark(fn)
    assert y is not None
