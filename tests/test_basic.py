"""Smoke test: every cell, fast path against the reference, forward and backward."""

import numpy as np
import pytest

import fastlstm
from fastlstm import reference
from fastlstm.selfcheck import make_problem, run


@pytest.mark.parametrize("cell", ["lstm", "gru", "rnn"])
@pytest.mark.parametrize("lengths", [None, [4, 0, 2, 4, 1]])
@pytest.mark.parametrize("reverse", [False, True])
def test_fast_matches_reference(cell, lengths, reverse):
    fwd, bwd = make_problem(cell, T=4, B=5, I=3, H=6, lengths=lengths)
    fwd["reverse"] = reverse
    out_f, g_f = run(fastlstm, cell, fwd, bwd)
    out_r, g_r = run(reference, cell, fwd, bwd)
    for a, b in zip(list(out_f) + list(g_f), list(out_r) + list(g_r)):
        if b is None:
            assert a is None
        else:
            np.testing.assert_allclose(a, b, rtol=1e-10, atol=1e-12)
