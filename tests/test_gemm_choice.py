"""Where the large products run: the BLAS, or fastlstm's own kernel.

By default ('auto') the kernels leave the large products (whole-sequence
products above about four million multiply-adds, per-step products of
batches above 64) to the BLAS, unless the BLAS is an OpenBLAS without AVX-512
kernels on a CPU with AVX-512, where they do every product themselves.
FASTLSTM_GEMM or _core.set_gemm picks 'own' or 'blas' explicitly. Both ways
are checked here, whatever this machine picks by default, on sizes that
cross every threshold: B = 80 > 64, and products of 6 * 80 rows by 4 * 64
columns by 64 (7.9 million multiply-adds).
"""

import os
import subprocess
import sys

import numpy as np
import pytest

import fastlstm
from fastlstm import _core
from fastlstm.selfcheck import make_problem, run

from _compare import assert_fast_matches_reference, assert_inference_agrees


@pytest.mark.parametrize("mode", ["own", "blas"])
@pytest.mark.parametrize("n", [1, 2])
@pytest.mark.parametrize("cell", ["lstm", "gru", "rnn"])
@pytest.mark.parametrize("ragged", [False, True])
@pytest.mark.parametrize("dtype", [np.float64, np.float32])
def test_large_products_match_reference_either_way(gemm, mode, n, cell, ragged, dtype):
    gemm(mode)
    fastlstm.set_num_threads(n)
    B = 80
    lengths = [(b * 7) % 7 for b in range(B)] if ragged else None
    fwd, bwd = make_problem(cell, T=6, B=B, I=64, H=64, dtype=dtype, lengths=lengths)
    if dtype == np.float32:
        # upstream gradients scaled so that the weight and bias gradients,
        # sums over 480 rows, are of order 1 as in the smaller problems: at
        # order 50 float32's rounding of them (2-4e-5 against float64, in the
        # reference too) exceeds the tolerance's atol on elements near 0
        for k in bwd:
            bwd[k] = bwd[k] / np.float32(np.sqrt(6 * B))
    for reverse in (False, True):
        fwd["reverse"] = reverse
        out = assert_fast_matches_reference(cell, fwd, bwd)
        inf = getattr(fastlstm, cell + "_forward")(**fwd, training=False)
        assert_inference_agrees(inf[:-1], out)


@pytest.mark.parametrize("n", [1, 2])
def test_threaded_backward_loop_at_large_batch_either_way(gemm, n):
    # H = 256: the backward's time loop itself is split between threads
    # (B * G*H * H above FL_BWD_THREAD_MIN_WORK) when every product is own
    for mode in ("own", "blas"):
        gemm(mode)
        fastlstm.set_num_threads(n)
        fwd, bwd = make_problem("lstm", T=3, B=72, I=16, H=256)
        assert_fast_matches_reference("lstm", fwd, bwd)


def test_the_choice_takes_effect(gemm):
    # float32 sums in another order in the two kernels: some output differs
    # in its last bits, so the switch reaches the kernels (except in the
    # generic copy, FASTLSTM_ISA=generic, where 'own' changes nothing)
    fwd, bwd = make_problem("lstm", T=6, B=80, I=64, H=64, dtype=np.float32)
    results = []
    for mode in ("own", "blas"):
        gemm(mode)
        out, grads = run(fastlstm, "lstm", fwd, bwd)
        results.append([a for a in list(out) + list(grads) if a is not None])
    differ = any(not np.array_equal(a, b) for a, b in zip(*results))
    assert differ == (_core.isa() != "generic")


def test_set_gemm_reports_and_rejects(gemm):
    assert gemm("own") == "auto"
    assert _core.gemm_choice() == ("own", True)
    assert gemm("blas") == "own"
    assert _core.gemm_choice() == ("blas", False)
    gemm("auto")
    assert _core.gemm_choice()[0] == "auto"
    for bad in ("OWN", "", "mkl"):
        with pytest.raises(ValueError, match="expected 'auto', 'own' or 'blas'"):
            gemm(bad)
    assert _core.gemm_choice()[0] == "auto"  # a rejected mode changes nothing


def test_auto_follows_the_blas_core(gemm):
    core = _core.blas_core()
    assert core is None or isinstance(core, str) and core
    # own exactly when an OpenBLAS without AVX-512 kernels runs on AVX-512
    want = (core is not None and core.lower() not in ("skylakex", "cooperlake", "sapphirerapids")
            and _core.isa() == "avx512")
    gemm("auto")
    assert _core.gemm_choice() == ("auto", want)


@pytest.mark.parametrize("value,own", [("own", True), ("blas", False)])
def test_fastlstm_gemm_environment_variable(value, own):
    code = "from fastlstm import _core; print(_core.gemm_choice())"
    env = dict(os.environ, FASTLSTM_GEMM=value)
    res = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True,
                         check=True)
    assert res.stdout.strip() == repr((value, own))


def test_fastlstm_gemm_environment_variable_rejects_nonsense():
    env = dict(os.environ, FASTLSTM_GEMM="fast")
    res = subprocess.run([sys.executable, "-c", "import fastlstm"], env=env,
                         capture_output=True, text=True)
    assert res.returncode != 0
    assert "FASTLSTM_GEMM: expected 'auto', 'own' or 'blas', got 'fast'" in res.stderr
