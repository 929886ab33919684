"""The block cache of the Python bridge: large outputs and scratch buffers
are reused by size once freed, never while an array (or a view) uses them."""

import os
import subprocess
import sys
import threading

import numpy as np
import pytest

import fastlstm
from fastlstm import _core, reference
from fastlstm.selfcheck import make_problem

from _compare import TOLERANCE


def _problem(seed=0):
    # y alone is 40 * 16 * 128 * 8 = 655 kB: above the cache's 256 kB floor
    fwd, _ = make_problem("lstm", T=40, B=16, I=8, H=128, dtype=np.float64)
    rng = np.random.default_rng(seed)
    fwd["x"] = rng.standard_normal(fwd["x"].shape)
    return fwd


def test_live_outputs_are_never_reused():
    a, b = _problem(1), _problem(2)
    ya = fastlstm.lstm_forward(**a, training=False)[0]
    view = ya[5:]
    keep = ya.copy()
    del ya  # the view still holds the block
    for _ in range(3):
        yb = fastlstm.lstm_forward(**b, training=False)[0]
        del yb
    np.testing.assert_array_equal(view, keep[5:])


def test_freed_blocks_are_reused():
    if _core.cache_info()[2] == 0:
        pytest.skip("the cache is turned off (FASTLSTM_CACHE_BYTES=0)")
    _core.cache_clear()
    a = _problem()
    y = fastlstm.lstm_forward(**a, training=False)[0]
    blocks, held, _ = _core.cache_info()  # the call's scratch, released
    assert blocks >= 1
    del y
    assert _core.cache_info()[:2] == (blocks + 1, held + 40 * 16 * 128 * 8)
    y = fastlstm.lstm_forward(**a, training=False)[0]
    assert _core.cache_info()[:2] == (blocks, held)  # y's block taken, scratch returned
    want = reference.lstm_forward(**a, training=False)[0]
    np.testing.assert_allclose(y, want, **TOLERANCE[np.dtype(np.float64)])
    _core.cache_clear()
    assert _core.cache_info()[:2] == (0, 0)


def test_large_outputs_start_on_a_cache_line():
    """Blocks from the cache start on a 64-byte line (the kernels stream the
    saved gates with full-width vector loads): reused ones and fresh ones."""
    if _core.cache_info()[2] == 0:
        pytest.skip("the cache is turned off (FASTLSTM_CACHE_BYTES=0)")
    a = _problem()
    for _ in range(3):
        y, _h, _c, cache = fastlstm.lstm_forward(**a, training=True)
        gates = cache.saved[1][0]  # (T*B, 4H) float64: 655 kB * 4
        assert gates.shape == (40 * 16, 4 * 128)
        assert y.ctypes.data % 64 == 0 and gates.ctypes.data % 64 == 0
        del y, cache, gates
    _core.cache_clear()
    y = fastlstm.lstm_forward(**a, training=False)[0]
    assert y.ctypes.data % 64 == 0


def test_outputs_from_the_cache_are_ordinary_arrays():
    y = fastlstm.lstm_forward(**_problem(), training=False)[0]
    assert y.flags.c_contiguous and y.flags.writeable and y.flags.aligned
    y[...] = 1.0  # the caller may write its outputs
    assert y.dtype == np.float64 and y.shape == (40, 16, 128)


def test_threads_share_the_cache_safely():
    problems = [_problem(s) for s in range(4)]
    want = [reference.lstm_forward(**p, training=False)[0] for p in problems]
    errors = []

    def work(i):
        try:
            for _ in range(10):
                y, _, _, cache = fastlstm.lstm_forward(**problems[i])
                fastlstm.lstm_backward(cache, dy=np.ones_like(y))
                np.testing.assert_allclose(y, want[i], **TOLERANCE[np.dtype(np.float64)])
        except Exception as e:  # pragma: no cover - reported below
            errors.append(e)

    threads = [threading.Thread(target=work, args=(i,)) for i in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors, errors


@pytest.mark.parametrize("value", ["-1", "abc", "1.5", ""])
def test_cache_size_must_be_a_byte_count(value):
    with pytest.raises(ValueError, match="FASTLSTM_CACHE_BYTES"):
        _core._parse_cache_bytes(value)


def test_cache_can_be_turned_off():
    code = ("import numpy as np, fastlstm\n"
            "from fastlstm import _core, reference\n"
            "from fastlstm.selfcheck import make_problem\n"
            "fwd, _ = make_problem('lstm', T=40, B=16, I=8, H=128, dtype=np.float64)\n"
            "y = fastlstm.lstm_forward(**fwd, training=False)[0]\n"
            "del y\n"
            "y = fastlstm.lstm_forward(**fwd, training=False)[0]\n"
            "r = reference.lstm_forward(**fwd, training=False)[0]\n"
            "assert np.allclose(y, r, rtol=1e-12, atol=1e-12)\n"
            "print(_core.cache_info())\n")
    env = dict(os.environ, FASTLSTM_CACHE_BYTES="0")
    out = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True,
                         text=True, check=True)
    assert out.stdout.strip() == "(0, 0, 0)"


def test_empty_cache_gives_the_blocks_back_and_spares_live_arrays():
    a = _problem()
    y = fastlstm.lstm_forward(**a, training=False)[0]
    keep = y.copy()
    z = fastlstm.lstm_forward(**a, training=False)[0]
    del z  # its block goes to the cache (unless the cache is off)
    fastlstm.empty_cache()
    assert _core.cache_info()[:2] == (0, 0)
    np.testing.assert_array_equal(y, keep)  # a live array keeps its memory
    del y  # and gives it back afterwards without trouble
    y = fastlstm.lstm_forward(**a, training=False)[0]
    np.testing.assert_array_equal(y, keep)
