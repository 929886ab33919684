"""Smoke test: every cell, fast path against the reference, forward and backward."""

import pytest

from fastlstm.selfcheck import make_problem

from _compare import assert_fast_matches_reference


@pytest.mark.parametrize("cell", ["lstm", "gru", "rnn"])
@pytest.mark.parametrize("lengths", [None, [4, 0, 2, 4, 1]])
@pytest.mark.parametrize("reverse", [False, True])
def test_fast_matches_reference(cell, lengths, reverse):
    fwd, bwd = make_problem(cell, T=4, B=5, I=3, H=6, lengths=lengths)
    fwd["reverse"] = reverse
    assert_fast_matches_reference(cell, fwd, bwd)
