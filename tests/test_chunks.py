"""Long sequences whose input projection runs in several chunks of steps.

With several threads the forward projects the inputs about 1 MiB of gates at
a time (at least 128 rows): with B = 64 and H = 64 a chunk is 16 steps of an
LSTM, 21 of a GRU and 64 of a plain RNN, so T = 70 crosses chunk boundaries
for every cell, dense or ragged, forwards or in reverse. One thread is
checked on the same problems, with the kernels running every product
themselves ('own', see test_gemm_choice), where its inference projects in
the same chunks on the panel kernel, and with the BLAS taking the large
products, where inference projects in one product before the steps, as
training always does on one thread.
"""

import numpy as np
import pytest

import fastlstm
from fastlstm import reference
from fastlstm.selfcheck import make_problem, run

from _compare import TOLERANCE, assert_fast_matches_reference, assert_inference_agrees

T, B = 70, 64


@pytest.mark.parametrize("n,mode", [(1, "own"), (1, "blas"), (2, "auto")])
@pytest.mark.parametrize("cell", ["lstm", "gru", "rnn"])
@pytest.mark.parametrize("ragged", [False, True])
@pytest.mark.parametrize("reverse", [False, True])
@pytest.mark.parametrize("dtype", [np.float64, np.float32])
def test_chunked_projection_matches_reference(threads, gemm, n, mode, cell, ragged, reverse,
                                              dtype):
    threads(n)
    gemm(mode)
    # lengths cover every value 0..T, so chunks of ragged rows hold
    # different numbers of rows
    lengths = [(b * 37) % (T + 1) for b in range(B)] if ragged else None
    fwd, bwd = make_problem(cell, T=T, B=B, I=8, H=64, dtype=dtype, lengths=lengths)
    fwd["reverse"] = reverse
    if dtype == np.float64:
        out = assert_fast_matches_reference(cell, fwd, bwd)
    else:
        # float32 weight gradients here are sums over up to T * B = 4480 rows:
        # their rounding error grows with that count, so they are held to
        # 1e-4 of the largest entry rather than the shared per-entry bound
        out, grads = run(fastlstm, cell, fwd, bwd)
        out_r, grads_r = run(reference, cell, fwd, bwd)
        for a, b in zip(out, out_r):
            if b is not None:
                np.testing.assert_allclose(a, b, **TOLERANCE[np.dtype(dtype)])
        for a, b in zip(grads, grads_r):
            if b is not None:
                np.testing.assert_allclose(a, b, rtol=1e-4, atol=1e-4 * np.abs(b).max())
    inf = getattr(fastlstm, cell + "_forward")(**fwd, training=False)
    assert_inference_agrees(inf[:-1], out)


@pytest.mark.parametrize("ragged", [False, True])
def test_one_thread_inference_projects_a_large_sequence_in_chunks(threads, gemm, ragged):
    # On one thread, with the kernels running every product themselves,
    # inference projects its inputs chunk by chunk (on the panel kernel):
    # 100 x 64 rows of 4 * 128 float64 gates are 26 MB, 1 MiB chunks are 4
    # steps.
    threads(1)
    gemm("own")
    lengths = [(b * 37) % 101 for b in range(64)] if ragged else None
    fwd, _ = make_problem("lstm", T=100, B=64, I=8, H=128, dtype=np.float64, lengths=lengths)
    got = fastlstm.lstm_forward(**fwd, training=False)
    want = reference.lstm_forward(**fwd, training=False)
    for a, b in zip(got[:-1], want[:-1]):
        np.testing.assert_allclose(a, b, **TOLERANCE[np.dtype(np.float64)])
