"""The kernels' own sigmoid and tanh (``fastlstm._core.activation``) against
exact values, and the kernels' thread safety.

The activations are compiled into each instruction-set copy of the kernels
(generic, AVX2+FMA, AVX-512), and each copy rounds differently (fused
multiply-adds); ``activation`` runs the copy the kernels would run, so the
accuracy tests run once per copy this machine has (FASTLSTM_ISA caps it).

Exact values are computed in long double (x87 extended precision on x86-64,
at least float64 elsewhere) from the float32/float64 input; the error bound is
4 ulp, i.e. a relative error of at most 4 * finfo(dtype).eps, wherever the
exact value is a normal number of the dtype.
"""

import concurrent.futures
import warnings

import numpy as np
import pytest
from numpy.testing import assert_array_equal

import fastlstm
from fastlstm import _core

DTYPES = [pytest.param(np.float32, id="f32"), pytest.param(np.float64, id="f64")]
KINDS = ["sigmoid", "tanh"]
ULP = 4

LD = np.longdouble
# the reference computation must be more precise than float64 for the f64
# bound to mean anything; where long double is plain double we still test f32
EXTENDED = np.finfo(LD).eps < np.finfo(np.float64).eps


@pytest.fixture(params=["generic", "avx2", "avx512"])
def isa(request, monkeypatch):
    """Each instruction-set copy this machine runs (the others are skipped)."""
    monkeypatch.setenv("FASTLSTM_ISA", request.param)
    if _core.isa() != request.param:
        pytest.skip(f"this CPU has no {request.param} copy to run")
    return request.param


def exact(kind, v):
    """Exact (long double) sigmoid / tanh of the values of v."""
    v = np.asarray(v).astype(LD)
    with np.errstate(over="ignore", under="ignore"):
        if kind == "tanh":
            return np.tanh(v)
        e = np.exp(-np.abs(v))
        return np.where(v >= 0, 1 / (1 + e), e / (1 + e))


def act(kind, v):
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        with np.errstate(all="raise"):
            return _core.activation(kind, v)


def max_ulp_error(kind, v):
    """max relative error / eps over the points whose exact value is normal."""
    dtype = v.dtype
    got = act(kind, v)
    assert got.dtype == dtype and got.shape == v.shape
    ex = exact(kind, v)
    normal = np.abs(ex) >= np.finfo(dtype).tiny
    assert normal.any()
    rel = np.abs(got[normal].astype(LD) - ex[normal]) / np.abs(ex[normal])
    worst = int(np.argmax(rel))
    return float(rel[worst] / np.finfo(dtype).eps), v[normal][worst]


def _need_precision(dtype):
    if np.dtype(dtype) == np.float64 and not EXTENDED:
        pytest.skip("long double is float64 here: no exact float64 reference")


@pytest.mark.parametrize("kind", KINDS)
@pytest.mark.parametrize("dtype", DTYPES)
def test_dense_grid(isa, kind, dtype):
    _need_precision(dtype)
    v = np.linspace(-50, 50, 400_001).astype(dtype)
    err, where = max_ulp_error(kind, v)
    assert err <= ULP, f"{kind} {np.dtype(dtype)}: {err:.2f} ulp at {where!r}"


@pytest.mark.parametrize("kind", KINDS)
@pytest.mark.parametrize("dtype", DTYPES)
def test_tiny_magnitudes(isa, kind, dtype):
    _need_precision(dtype)
    g = np.geomspace(1e-30, 1, 20_001)
    v = np.concatenate([g, -g]).astype(dtype)
    err, where = max_ulp_error(kind, v)
    assert err <= ULP, f"{kind} {np.dtype(dtype)}: {err:.2f} ulp at {where!r}"
    if kind == "sigmoid":  # 1/2 + v/4 + O(v^3): exactly 1/2 for |v| below eps
        tiny = np.abs(v) < np.finfo(dtype).eps / 8
        assert_array_equal(act(kind, v[tiny]), 0.5)


@pytest.mark.parametrize("kind", KINDS)
@pytest.mark.parametrize("dtype", DTYPES)
def test_near_the_branch_points(isa, kind, dtype):
    """Dense sampling around the places the approximation switches: 0, and
    the Cody-Waite half steps where the reduction's n changes (tanh reduces
    -2|v|, so its first ones are at |v| = ln2/4 and 3 ln2/4). 1/8, where an
    earlier tanh switched to a separate expm1 polynomial, stays in."""
    _need_precision(dtype)
    h = np.log(2) / 2
    pts = [0.125, -0.125, 0.0, h, -h, 2 * h, -2 * h, h / 2, -h / 2, 1.5 * h, -1.5 * h]
    v = np.concatenate([p + np.linspace(-1e-3, 1e-3, 20_001) for p in pts]).astype(dtype)
    err, where = max_ulp_error(kind, v)
    assert err <= ULP, f"{kind} {np.dtype(dtype)}: {err:.2f} ulp at {where!r}"


# log(tiny): sigmoid's exact value is a normal number down to about here
LOG_TINY = {np.float32: float(np.log(np.finfo(np.float32).tiny)),   # -87.336...
            np.float64: float(np.log(np.finfo(np.float64).tiny))}   # -708.396...


@pytest.mark.parametrize("kind", KINDS)
@pytest.mark.parametrize("dtype", DTYPES)
def test_whole_normal_range(isa, kind, dtype):
    """From below log(tiny) up to the positive saturation region: 4 ulp
    wherever the exact value is normal (points where it is subnormal are
    left out by max_ulp_error)."""
    _need_precision(dtype)
    lo = LOG_TINY[dtype]
    v = np.concatenate([np.linspace(1.05 * lo, -1.05 * lo, 400_001),
                        lo + np.linspace(-0.01, 0.5, 5001)]).astype(dtype)
    err, where = max_ulp_error(kind, v)
    assert err <= ULP, f"{kind} {np.dtype(dtype)}: {err:.2f} ulp at {where!r}"


@pytest.mark.parametrize("dtype", DTYPES)
def test_sigmoid_is_not_flushed_where_exact_is_normal(isa, dtype):
    """Regression: e^v was once flushed to 0 below -87 (f32) / -708 (f64), although
    it stays normal down to log(FLT_MIN) = -87.336 / log(DBL_MIN) = -708.396."""
    _need_precision(dtype)
    # from just above log(tiny) to the old clamp, all exact values normal
    v = np.linspace(LOG_TINY[dtype] + 1e-3, {np.float32: -87.0, np.float64: -708.0}[dtype],
                    101).astype(dtype)
    assert np.all(np.abs(exact("sigmoid", v)) >= np.finfo(dtype).tiny)
    got = act("sigmoid", v)
    assert np.all(got > 0)
    err, where = max_ulp_error("sigmoid", v)
    assert err <= ULP, f"sigmoid {np.dtype(dtype)}: {err:.2f} ulp at {where!r}"


@pytest.mark.parametrize("dtype", DTYPES)
def test_subnormal_sigmoid_is_tiny_and_nonnegative(isa, dtype):
    """Where the exact sigmoid is subnormal (or below), the kernel gives a
    value in [0, tiny): no negative or large garbage."""
    v = np.linspace(-2000, LOG_TINY[dtype] - 0.01, 10_001).astype(dtype)
    got = act("sigmoid", v)
    assert np.all(got >= 0) and np.all(got < np.finfo(dtype).tiny)


@pytest.mark.parametrize("kind", KINDS)
@pytest.mark.parametrize("dtype", DTYPES)
def test_tanh_is_odd_and_sigmoid_symmetric(isa, kind, dtype):
    v = np.random.default_rng(0).uniform(-30, 30, 100_001).astype(dtype)
    a, b = act(kind, v), act(kind, -v)
    if kind == "tanh":
        assert_array_equal(b, -a)  # computed on |v|, the sign applied last: exact
    else:  # sigmoid(-v) = 1 - sigmoid(v)
        np.testing.assert_allclose(a + b, 1, rtol=0, atol=2 * np.finfo(dtype).eps)


@pytest.mark.parametrize("kind", KINDS)
@pytest.mark.parametrize("dtype", DTYPES)
def test_monotone_and_bounded(isa, kind, dtype):
    """On a grid whose steps are well above the few-ulp error (adjacent floats
    may be out of order by an ulp, which the 4-ulp bound allows)."""
    v = np.linspace(-60, 60, 200_001).astype(dtype)
    got = act(kind, v)
    assert np.all(np.diff(got) >= 0)
    lo = 0 if kind == "sigmoid" else -1
    assert np.all(got >= lo) and np.all(got <= 1)


SPECIAL = [  # (value, sigmoid, tanh); a list, since 0.0 == -0.0 as dict keys
    (1000.0, 1.0, 1.0),
    (-1000.0, 0.0, -1.0),
    (np.inf, 1.0, 1.0),
    (-np.inf, 0.0, -1.0),
    (0.0, 0.5, 0.0),
    (-0.0, 0.5, -0.0),
    (1e30, 1.0, 1.0),
    (-1e30, 0.0, -1.0),
]


@pytest.mark.parametrize("kind", KINDS)
@pytest.mark.parametrize("dtype", DTYPES)
def test_special_values(isa, kind, dtype):
    vals = np.array([s[0] for s in SPECIAL], dtype)
    want = np.array([s[1 + KINDS.index(kind)] for s in SPECIAL], dtype)
    assert np.signbit(vals[5]) and not np.signbit(vals[4])
    got = act(kind, vals)
    assert got.dtype == dtype
    assert_array_equal(got, want)
    assert_array_equal(np.signbit(got), np.signbit(want))  # tanh(-0.0) is -0.0
    nan = act(kind, np.array([np.nan, -np.nan, 1.0], dtype))
    assert np.isnan(nan[0]) and np.isnan(nan[1]) and not np.isnan(nan[2])


@pytest.mark.parametrize("kind", KINDS)
@pytest.mark.parametrize("dtype", DTYPES)
def test_saturation_is_exact(isa, kind, dtype):
    """Beyond the point where the exact value rounds to 0 / 1 / -1 the kernel
    gives exactly that value (no 1 - tiny, no overflow)."""
    big = np.concatenate([np.linspace(50, 1e4, 5001), np.geomspace(1e4, 1e30, 200)]).astype(dtype)
    hi, lo = act(kind, big), act(kind, -big)
    assert np.all(hi == 1)
    if kind == "sigmoid":
        assert np.all(lo[-big < -120] == 0) if dtype == np.float32 else np.all(lo[-big < -800] == 0)
    else:
        assert np.all(lo == -1)


@pytest.mark.parametrize("kind", KINDS)
@pytest.mark.parametrize("dtype", DTYPES)
def test_shapes_layouts_and_no_fp_warnings(isa, kind, dtype):
    """Any shape or layout in, the same shape and dtype out, the input
    untouched, and no NumPy floating-point warnings for extreme inputs."""
    rng = np.random.default_rng(1)
    v = (rng.standard_normal((7, 9)) * 300).astype(dtype)
    v[0, :4] = [np.inf, -np.inf, np.nan, 1e30]
    v.setflags(write=False)
    before = v.copy()
    flat = act(kind, np.ascontiguousarray(v).ravel()).reshape(v.shape)
    for arr in (v, np.asfortranarray(v), v[:, ::2], v.T, v[::-1]):
        got = act(kind, arr)
        assert got.shape == arr.shape and got.dtype == dtype
        assert_array_equal(got, act(kind, np.ascontiguousarray(arr)))
    assert_array_equal(act(kind, v), flat)
    assert_array_equal(v, before)
    assert act(kind, np.zeros(0, dtype)).shape == (0,)


# -------------------------------------------------------- thread safety

def _problem(seed, dtype=np.float64):
    rng = np.random.default_rng(seed)
    T, B, I, H = 20, (2 if seed % 3 == 0 else 8), 16, 32  # small and large batches
    kw = dict(x=rng.standard_normal((T, B, I)).astype(dtype),
              w_ih=rng.uniform(-0.2, 0.2, (4 * H, I)).astype(dtype),
              w_hh=rng.uniform(-0.2, 0.2, (4 * H, H)).astype(dtype),
              b_ih=rng.uniform(-0.2, 0.2, 4 * H).astype(dtype),
              b_hh=rng.uniform(-0.2, 0.2, 4 * H).astype(dtype),
              h0=rng.standard_normal((B, H)).astype(dtype),
              c0=rng.standard_normal((B, H)).astype(dtype),
              lengths=rng.integers(0, T + 1, B), reverse=bool(seed % 2))
    up = dict(dy=rng.standard_normal((T, B, H)).astype(dtype),
              dh_n=rng.standard_normal((B, H)).astype(dtype),
              dc_n=rng.standard_normal((B, H)).astype(dtype))
    return kw, up


def _work(kw, up):
    y, h_n, c_n, cache = fastlstm.lstm_forward(**kw)
    y2, h2, c2, _ = fastlstm.lstm_forward(**kw, training=False)
    g = fastlstm.lstm_backward(cache, **up)
    return [y, h_n, c_n, y2, h2, c2] + list(g)


@pytest.mark.parametrize("dtype", DTYPES)
def test_concurrent_threads_match_single_threaded(dtype):
    n_tasks = 24
    problems = [_problem(s, dtype) for s in range(n_tasks)]
    serial = [_work(*p) for p in problems]
    # the problems differ, so a mix-up between threads could not go unnoticed
    assert not np.array_equal(serial[0][0], serial[1][0])
    with concurrent.futures.ThreadPoolExecutor(max_workers=4) as ex:
        for _ in range(3):
            results = list(ex.map(lambda p: _work(*p), problems))
            for got, want in zip(results, serial):
                for a, b in zip(got, want):
                    assert_array_equal(a, b)


def _subnormals_work():
    """True when this thread's FP mode keeps subnormal results (no flush to zero)."""
    with np.errstate(all="ignore"):
        a = np.array([1e-300], np.float64) * np.array([1e-10])   # 1e-310, subnormal
        b = np.array([1e-30], np.float32) * np.array([1e-10], np.float32)  # 1e-40
    return bool(a[0] != 0 and b[0] != 0 and a[0] > 0)


@pytest.mark.parametrize("dtype", DTYPES)
def test_callers_floating_point_mode_is_restored(dtype):
    """The kernels may flush denormals inside (csrc/fastlstm.h), but the
    caller's mode must be restored: subnormal arithmetic still works after
    forward/backward (the single- and the small-batch path) and activation,
    in this thread and in worker threads."""
    assert _subnormals_work()
    for seed in (0, 3):  # B = 2 and B = 8
        kw, up = _problem(seed, dtype)
        _work(kw, up)
        assert _subnormals_work()
    act("tanh", np.linspace(-1, 1, 11).astype(dtype))
    assert _subnormals_work()

    def in_thread(seed):
        _work(*_problem(seed, dtype))
        return _subnormals_work()

    with concurrent.futures.ThreadPoolExecutor(max_workers=2) as ex:
        assert all(ex.map(in_thread, range(4)))
