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


def assert_inference_agrees(inference, training):
    """Outputs of an inference call equal those of the training call. When
    the kernels run every product themselves the two add in the same order
    and agree bit for bit; otherwise one-thread training projects the inputs
    on the BLAS and inference (in chunks) on the panel kernel, and a BLAS
    may add in another order (OpenBLAS's Haswell kernels do): to rounding."""
    from fastlstm import _core
    exact = _core.gemm_choice()[1]
    for a, b in zip(inference, training):
        if b is None:
            assert a is None
        elif exact:
            np.testing.assert_array_equal(a, b)
        else:
            rtol = 1e-12 if a.dtype == np.float64 else 1e-5
            np.testing.assert_allclose(a, b, rtol=rtol, atol=rtol)
