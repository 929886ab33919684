"""The one fast-vs-reference comparison several test files share."""

import numpy as np

import fastlstm
from fastlstm import reference
from fastlstm.selfcheck import run

TOLERANCE = {np.dtype(np.float64): dict(rtol=1e-10, atol=1e-12),
             np.dtype(np.float32): dict(rtol=1e-4, atol=1e-5)}


def assert_fast_matches_reference(cell, fwd, bwd):
    """Forward outputs and every gradient of the C kernels equal the reference's
    (float64 to 1e-10, float32 to 1e-4); returns the fast outputs."""
    tol = TOLERANCE[np.dtype(fwd["x"].dtype)]
    out_f, g_f = run(fastlstm, cell, fwd, bwd)
    out_r, g_r = run(reference, cell, fwd, bwd)
    for a, b in zip(list(out_f) + list(g_f), list(out_r) + list(g_r)):
        if b is None:
            assert a is None
        else:
            assert a.dtype == b.dtype
            np.testing.assert_allclose(a, b, **tol)
    return out_f
