"""The reference's gradients against central finite differences (float64).

For a scalar loss L = sum(y * Ry) + sum(h_n * Rh) (+ sum(c_n * Rc) for the
LSTM) with fixed random R, backward(cache, dy=Ry, dh_n=Rh, dc_n=Rc) must be
dL/d(every argument): x, w_ih, w_hh, b_ih, b_hh, h0 and c0. The same check is
then run once per cell on the fast path.
"""

import numpy as np
import pytest
from numpy.testing import assert_allclose

import fastlstm
from fastlstm import reference

GATES = {"lstm": 4, "gru": 3, "rnn": 1}
CELLS = [
    pytest.param(("lstm", None), id="lstm"),
    pytest.param(("gru", None), id="gru"),
    pytest.param(("rnn", "tanh"), id="rnn_tanh"),
    pytest.param(("rnn", "relu"), id="rnn_relu"),
]
EPS = 1e-6
GRAD_OF = {"x": "dx", "w_ih": "dw_ih", "w_hh": "dw_hh", "b_ih": "db_ih", "b_hh": "db_hh",
           "h0": "dh0", "c0": "dc0"}


def make(cellnl, T=3, B=3, I=3, H=2, seed=0):
    cell, nl = cellnl
    rng = np.random.default_rng(seed)
    G = GATES[cell]
    params = dict(x=rng.standard_normal((T, B, I)),
                  w_ih=rng.uniform(-0.8, 0.8, (G * H, I)),
                  w_hh=rng.uniform(-0.8, 0.8, (G * H, H)),
                  b_ih=rng.uniform(-0.5, 0.5, G * H), b_hh=rng.uniform(-0.5, 0.5, G * H),
                  h0=0.5 * rng.standard_normal((B, H)))
    R = dict(dy=rng.standard_normal((T, B, H)), dh_n=rng.standard_normal((B, H)))
    if cell == "lstm":
        params["c0"] = 0.5 * rng.standard_normal((B, H))
        R["dc_n"] = rng.standard_normal((B, H))
    return params, R


def _call(mod, cellnl, params, lengths, reverse, training):
    cell, nl = cellnl
    kw = dict(params, lengths=lengths, reverse=reverse, training=training)
    if nl is not None:
        kw["nonlinearity"] = nl
    out = getattr(mod, cell + "_forward")(**kw)
    return out[:-1], out[-1]


def loss(mod, cellnl, params, R, lengths, reverse):
    outs, _ = _call(mod, cellnl, params, lengths, reverse, training=False)
    total = np.sum(outs[0] * R["dy"]) + np.sum(outs[1] * R["dh_n"])
    if cellnl[0] == "lstm":
        total += np.sum(outs[2] * R["dc_n"])
    return total


def analytic(mod, cellnl, params, R, lengths, reverse):
    _, cache = _call(mod, cellnl, params, lengths, reverse, training=True)
    g = getattr(mod, cellnl[0] + "_backward")(cache, **R)
    return {name: getattr(g, gname) for name, gname in GRAD_OF.items() if name in params}


def finite_differences(mod, cellnl, params, R, lengths, reverse, name):
    p = params[name]
    fd = np.zeros_like(p)
    for idx in np.ndindex(p.shape):
        orig = p[idx]
        p[idx] = orig + EPS
        lp = loss(mod, cellnl, params, R, lengths, reverse)
        p[idx] = orig - EPS
        lm = loss(mod, cellnl, params, R, lengths, reverse)
        p[idx] = orig
        fd[idx] = (lp - lm) / (2 * EPS)
    return fd


def relu_preactivations(params, lengths, reverse):
    """Every pre-activation a relu RNN evaluates (to keep the check off the kink)."""
    x, w_ih, w_hh = params["x"], params["w_ih"], params["w_hh"]
    T, B, _ = x.shape
    lens = [T] * B if lengths is None else list(lengths)
    out = []
    for b in range(B):
        h = params["h0"][b]
        steps = range(lens[b] - 1, -1, -1) if reverse else range(lens[b])
        for t in steps:
            a = x[t, b] @ w_ih.T + params["b_ih"] + h @ w_hh.T + params["b_hh"]
            out.append(a)
            h = np.maximum(a, 0)
    return np.concatenate(out)


def gradcheck(mod, cellnl, lengths, reverse, seed):
    params, R = make(cellnl, seed=seed)
    if cellnl[1] == "relu":
        a = relu_preactivations(params, lengths, reverse)
        # the finite differences must not straddle the kink of relu at 0, and
        # both sides of it must be exercised
        assert np.min(np.abs(a)) > 1e-3, "pick another seed: a pre-activation is near 0"
        assert np.any(a < 0) and np.any(a > 0)
    grads = analytic(mod, cellnl, params, R, lengths, reverse)
    assert set(grads) == set(params)
    for name in params:
        fd = finite_differences(mod, cellnl, params, R, lengths, reverse, name)
        assert grads[name].shape == fd.shape
        assert np.any(fd != 0), name  # not vacuous
        assert_allclose(grads[name], fd, rtol=1e-6, atol=1e-8, err_msg=name)
        if name == "x" and lengths is not None:
            # padded steps have no influence at all
            pad = np.arange(params["x"].shape[0])[:, None] >= np.asarray(lengths)[None, :]
            assert np.all(fd[pad] == 0) and np.all(grads[name][pad] == 0)


@pytest.mark.parametrize("cellnl", CELLS)
@pytest.mark.parametrize("lengths", [None, [3, 0, 2]], ids=["full", "ragged"])
@pytest.mark.parametrize("reverse", [False, True], ids=["fwd", "rev"])
def test_reference_gradients_match_finite_differences(cellnl, lengths, reverse):
    gradcheck(reference, cellnl, lengths, reverse, seed=2)


@pytest.mark.parametrize("cellnl", CELLS)
def test_reference_gradients_longer_ragged(cellnl):
    """A longer ragged batch (T=5) with unsorted lengths, reverse direction."""
    params, R = make(cellnl, T=5, B=4, I=2, H=2, seed=3)
    lengths = [2, 5, 0, 4]
    if cellnl[1] == "relu":
        assert np.min(np.abs(relu_preactivations(params, lengths, True))) > 1e-3
    grads = analytic(reference, cellnl, params, R, lengths, True)
    for name in ("x", "w_hh", "h0"):
        fd = finite_differences(reference, cellnl, params, R, lengths, True, name)
        assert_allclose(grads[name], fd, rtol=1e-6, atol=1e-8, err_msg=name)


@pytest.mark.parametrize("cellnl", CELLS)
def test_fast_gradients_match_finite_differences(cellnl):
    gradcheck(fastlstm, cellnl, [3, 0, 2], True, seed=3)


def test_finite_difference_check_detects_a_wrong_gradient():
    """The harness itself: a gradient that is off by a little fails the check."""
    cellnl = ("gru", None)
    params, R = make(cellnl, seed=1)
    g = analytic(reference, cellnl, params, R, None, False)["w_hh"]
    fd = finite_differences(reference, cellnl, params, R, None, False, "w_hh")
    assert_allclose(g, fd, rtol=1e-6, atol=1e-8)
    wrong = g.copy()
    wrong.flat[3] *= 1.001
    with pytest.raises(AssertionError):
        assert_allclose(wrong, fd, rtol=1e-6, atol=1e-8)
