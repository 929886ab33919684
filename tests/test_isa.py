"""Every instruction-set copy of the kernels against the reference.

The kernels pick the widest copy (generic, AVX2+FMA, AVX-512) the CPU runs;
FASTLSTM_ISA caps that choice, so each copy this machine can run is tested
here, whatever the machine. (On a CPU without AVX-512 the avx512 case runs
the best available copy, which is still worth checking.)
"""

import numpy as np
import pytest

import fastlstm
from fastlstm import reference
from fastlstm.selfcheck import make_problem, run

from _compare import assert_fast_matches_reference


@pytest.mark.parametrize("isa", ["generic", "avx2", "avx512"])
@pytest.mark.parametrize("cell", ["lstm", "gru", "rnn"])
@pytest.mark.parametrize("B,lengths,H", [
    (1, None, 37), (3, [5, 2, 0], 37), (7, [5, 1, 3, 5, 4, 2, 5], 37),
    # batch-1 products take up to 8 panels of 128 bytes per pass: G*H = 280
    # (LSTM) is 9 float panels, a full pass and a remainder
    (1, None, 70), (2, [5, 3], 70)])
@pytest.mark.parametrize("dtype", [np.float64, np.float32])
def test_each_isa_matches_reference(monkeypatch, isa, cell, B, lengths, H, dtype):
    monkeypatch.setenv("FASTLSTM_ISA", isa)
    for reverse in (False, True):
        # H = 37 is not a multiple of any vector width: remainder loops run too
        fwd, bwd = make_problem(cell, T=5, B=B, I=6, H=H, dtype=dtype, lengths=lengths)
        fwd["reverse"] = reverse
        assert_fast_matches_reference(cell, fwd, bwd)


@pytest.mark.parametrize("isa", ["generic", "avx2", "avx512"])
@pytest.mark.parametrize("cell,T,B,H", [
    # products with at least 512 columns and more than 8 rows copy their
    # rows into strips (up to 14 rows on AVX-512) before the panels meet
    # them: B = 13 pads one strip with a zero row, B = 64 cuts strips of
    # 14, 14, 12, 12, 12 (G*H = 528 for this GRU), B = 11 with the RNN's
    # 512 columns, and the 25 x 12 = 300 rows of a whole-sequence input
    # projection are two blocks of at most 256 rows
    ("lstm", 3, 13, 128), ("gru", 2, 64, 176), ("rnn", 2, 11, 512), ("lstm", 25, 12, 128)])
@pytest.mark.parametrize("dtype", [np.float64, np.float32])
def test_each_isa_tall_products_match_reference(monkeypatch, isa, cell, T, B, H, dtype):
    monkeypatch.setenv("FASTLSTM_ISA", isa)
    fwd, bwd = make_problem(cell, T=T, B=B, I=6, H=H, dtype=dtype)
    assert_fast_matches_reference(cell, fwd, bwd)


@pytest.mark.parametrize("isa", ["generic", "avx2", "avx512"])
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_each_isa_tanh_accuracy(monkeypatch, isa, dtype):
    # the tanh compiled into each copy's cells, seen through an RNN step with
    # unit input weight and no recurrence: h = tanh(x)
    monkeypatch.setenv("FASTLSTM_ISA", isa)
    v = np.linspace(-20, 20, 4001).astype(dtype)
    x = v.reshape(1, -1, 1)
    y, _, _ = fastlstm.rnn_forward(x, np.ones((1, 1), dtype), np.zeros((1, 1), dtype),
                                   training=False)
    exact = np.tanh(v.astype(np.float64))
    err = np.abs(y.ravel() - exact) / np.maximum(np.abs(exact), np.finfo(dtype).tiny)
    assert err[exact != 0].max() <= 4 * np.finfo(dtype).eps


def test_non_native_byte_order_is_accepted():
    fwd, bwd = make_problem("lstm", T=3, B=2, I=4, H=5)
    want = run(fastlstm, "lstm", fwd, bwd)
    swapped = {k: (v.astype(v.dtype.newbyteorder(">")) if isinstance(v, np.ndarray) else v)
               for k, v in fwd.items()}
    for mod in (fastlstm, reference):
        got = run(mod, "lstm", swapped, bwd)
        for a, b in zip(list(got[0]) + list(got[1]), list(want[0]) + list(want[1])):
            if b is not None:
                assert a.dtype == np.float64 and a.dtype.isnative
                np.testing.assert_allclose(a, b, rtol=1e-12)
