"""The C kernels (``fastlstm``) against the NumPy reference (``fastlstm.reference``).

Every forward output and every gradient, for every cell (the plain RNN with
both nonlinearities), over many shapes and options, plus the exact properties
that hold by construction: zero padding, length-0 rows keeping their initial
state, reverse == forward on flipped input, the dtype of the results, and
repeatable backward passes.
"""

import numpy as np
import pytest
from numpy.testing import assert_allclose, assert_array_equal

import fastlstm
from fastlstm import reference
from fastlstm._checks import GATES

# (cell, nonlinearity); nonlinearity is None for the LSTM and the GRU
CELLS = [
    pytest.param(("lstm", None), id="lstm"),
    pytest.param(("gru", None), id="gru"),
    pytest.param(("rnn", "tanh"), id="rnn_tanh"),
    pytest.param(("rnn", "relu"), id="rnn_relu"),
]
MODS = [pytest.param(fastlstm, id="fast"), pytest.param(reference, id="ref")]
DTYPES = [pytest.param(np.float64, id="f64"), pytest.param(np.float32, id="f32")]


# ----------------------------------------------------------------- helpers

def mixed_lengths(T, B, seed=0):
    """B lengths in [0, T], unsorted, including 0 and T when B allows."""
    rng = np.random.default_rng(seed + 1000)
    lens = rng.integers(0, T + 1, B)
    if B >= 1:
        lens[B // 2] = T
    if B >= 2:
        lens[-1] = 0
    if B >= 3:
        lens[0] = max(T // 2, 1) if T else 0
    return lens


def make(cellnl, T, B, I, H, *, dtype=np.float64, seed=0, bias=True, init=True,
         lengths=None, reverse=False):
    """(fwd kwargs, upstream gradients) for one problem."""
    cell, nl = cellnl
    rng = np.random.default_rng(seed)
    G = GATES[cell]
    k = 1.0 / np.sqrt(H)

    def u(*shape):
        return rng.uniform(-k, k, shape).astype(dtype)

    fwd = dict(x=rng.standard_normal((T, B, I)).astype(dtype), w_ih=u(G * H, I),
               w_hh=u(G * H, H), lengths=lengths, reverse=reverse)
    if bias:
        fwd["b_ih"], fwd["b_hh"] = u(G * H), u(G * H)
        if nl == "relu":  # most units active, so that tiny relu problems are not all zero
            fwd["b_ih"] += dtype(2 * k)
    if init:
        fwd["h0"] = (0.5 * rng.standard_normal((B, H))).astype(dtype)
        if cell == "lstm":
            fwd["c0"] = (0.5 * rng.standard_normal((B, H))).astype(dtype)
    if nl is not None:
        fwd["nonlinearity"] = nl
    up = dict(dy=rng.standard_normal((T, B, H)).astype(dtype),
              dh_n=rng.standard_normal((B, H)).astype(dtype))
    if cell == "lstm":
        up["dc_n"] = rng.standard_normal((B, H)).astype(dtype)
    return fwd, up


def forward(mod, cellnl, fwd, **kw):
    """-> (outputs tuple (y, h_n[, c_n]), cache)"""
    out = getattr(mod, cellnl[0] + "_forward")(**fwd, **kw)
    return tuple(out[:-1]), out[-1]


def backward(mod, cellnl, cache, up):
    return getattr(mod, cellnl[0] + "_backward")(cache, **up)


def run(mod, cellnl, fwd, up):
    outs, cache = forward(mod, cellnl, fwd)
    return outs, backward(mod, cellnl, cache, up)


def tol(dtype):
    if np.dtype(dtype) == np.float64:
        return 1e-10, 1e-12
    return 1e-4, 1e-5


def assert_close(a, b, dtype, what=""):
    """a (fast) against b (reference): same None-ness, dtype, shape, values."""
    if b is None:
        assert a is None, what
        return
    assert a is not None, what
    assert a.dtype == np.dtype(dtype), what
    assert b.dtype == np.dtype(dtype), what
    assert a.shape == b.shape, what
    rtol, atol = tol(dtype)
    scale = max(1.0, float(np.max(np.abs(b)))) if b.size else 1.0
    assert_allclose(a, b, rtol=rtol, atol=atol * scale, err_msg=what)


def assert_all_close(fast_res, ref_res, dtype, names):
    assert len(fast_res) == len(ref_res) == len(names)
    for a, b, n in zip(fast_res, ref_res, names):
        assert_close(a, b, dtype, n)


def out_names(cellnl):
    return ("y", "h_n", "c_n") if cellnl[0] == "lstm" else ("y", "h_n")


def grad_names(cellnl):
    if cellnl[0] == "lstm":
        return ("dx", "dh0", "dc0", "dw_ih", "dw_hh", "db_ih", "db_hh")
    return ("dx", "dh0", "dw_ih", "dw_hh", "db_ih", "db_hh")


def check_fast_vs_ref(cellnl, fwd, up, dtype):
    o_f, g_f = run(fastlstm, cellnl, fwd, up)
    o_r, g_r = run(reference, cellnl, fwd, up)
    assert_all_close(o_f, o_r, dtype, out_names(cellnl))
    assert_all_close(tuple(g_f), tuple(g_r), dtype, grad_names(cellnl))
    return o_f, g_f, o_r, g_r


# ------------------------------------------------- fast path vs reference

SHAPES = [
    pytest.param((1, 1, 1, 1), id="T1B1I1H1"),
    pytest.param((1, 3, 4, 5), id="T1"),
    pytest.param((5, 1, 3, 2), id="B1"),
    pytest.param((4, 3, 1, 2), id="I1"),
    pytest.param((4, 3, 5, 1), id="H1"),
    pytest.param((6, 4, 3, 7), id="I<H"),
    pytest.param((5, 5, 9, 4), id="I>H"),
    # batches of at most 4 rows take a separate (non-BLAS) per-step product;
    # wide outputs (G*H >= 32 doubles / 64 floats) take its vectorised blocks
    pytest.param((7, 3, 20, 40), id="smallB-wide"),
    pytest.param((6, 2, 9, 70), id="smallB-wider"),
    pytest.param((5, 4, 6, 33), id="B4-wide"),
    pytest.param((30, 17, 40, 64), id="large"),
]


@pytest.mark.parametrize("cellnl", CELLS)
@pytest.mark.parametrize("shape", SHAPES)
@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("reverse", [False, True], ids=["fwd", "rev"])
@pytest.mark.parametrize("ragged", [False, True], ids=["full", "ragged"])
def test_shapes_match_reference(cellnl, shape, dtype, reverse, ragged):
    T, B, I, H = shape
    lengths = mixed_lengths(T, B, seed=T * B) if ragged else None
    fwd, up = make(cellnl, T, B, I, H, dtype=dtype, seed=sum(shape), lengths=lengths,
                   reverse=reverse)
    o_f, g_f, _, _ = check_fast_vs_ref(cellnl, fwd, up, dtype)
    # the comparison is not vacuous: the outputs and gradients are non-trivial
    assert np.any(o_f[0] != 0)
    assert np.any(g_f.dw_ih != 0)


LENGTH_KINDS = ["none", "mixed", "zeros", "full"]


def lengths_of(kind, T, B, seed=0):
    return {"none": None, "mixed": mixed_lengths(T, B, seed),
            "zeros": np.zeros(B, np.int64), "full": np.full(B, T)}[kind]


@pytest.mark.parametrize("cellnl", CELLS)
@pytest.mark.parametrize("bias", [True, False], ids=["bias", "nobias"])
@pytest.mark.parametrize("init", [True, False], ids=["h0", "noh0"])
@pytest.mark.parametrize("lkind", LENGTH_KINDS)
@pytest.mark.parametrize("reverse", [False, True], ids=["fwd", "rev"])
def test_options_match_reference(cellnl, bias, init, lkind, reverse):
    T, B, I, H = 5, 6, 3, 4
    fwd, up = make(cellnl, T, B, I, H, seed=7, bias=bias, init=init,
                   lengths=lengths_of(lkind, T, B, 3), reverse=reverse)
    o_f, g_f, o_r, g_r = check_fast_vs_ref(cellnl, fwd, up, np.float64)
    for g in (g_f, g_r):
        assert (g.db_ih is None) == (g.db_hh is None) == (not bias)


def _upstream_params():
    out = []
    for cellnl in CELLS:
        cell = cellnl.values[0][0]
        subsets = [(), ("dy",), ("dh_n",), ("dy", "dh_n")]
        if cell == "lstm":
            subsets += [("dc_n",), ("dh_n", "dc_n"), ("dy", "dh_n", "dc_n")]
        for s in subsets:
            out.append(pytest.param(cellnl.values[0], s, id=f"{cellnl.id}-{'+'.join(s) or 'none'}"))
    return out


@pytest.mark.parametrize("cellnl,given", _upstream_params())
@pytest.mark.parametrize("ragged", [False, True], ids=["full", "ragged"])
@pytest.mark.parametrize("reverse", [False, True], ids=["fwd", "rev"])
def test_upstream_grads_none_or_given(cellnl, given, ragged, reverse):
    T, B, I, H = 4, 5, 3, 3
    fwd, up = make(cellnl, T, B, I, H, seed=11, lengths=mixed_lengths(T, B, 2) if ragged else None,
                   reverse=reverse)
    up = {k: (v if k in given else None) for k, v in up.items()}
    _, g_f, _, g_r = check_fast_vs_ref(cellnl, fwd, up, np.float64)
    if not given:  # no upstream gradient at all: every gradient is exactly zero
        for g in (g_f, g_r):
            for a in g:
                assert_array_equal(a, 0)
    else:
        assert np.any(g_f.dw_ih != 0)
    # None means zeros
    full = make(cellnl, T, B, I, H, seed=11)[1]
    zeros = {k: (v if v is not None else np.zeros_like(full[k])) for k, v in up.items()}
    for mod in (fastlstm, reference):
        g_none = run(mod, cellnl, fwd, up)[1]
        g_zero = run(mod, cellnl, fwd, zeros)[1]
        for a, b in zip(g_none, g_zero):
            assert_allclose(a, b, rtol=1e-14, atol=1e-300)


# ------------------------------------------------------------ edge sizes

EDGE = [
    pytest.param((0, 3, None), id="T0"),
    pytest.param((0, 3, "zeros"), id="T0-lengths0"),
    pytest.param((0, 0, None), id="T0B0"),
    pytest.param((4, 0, None), id="B0"),
    pytest.param((4, 0, "empty"), id="B0-lengths[]"),
    pytest.param((4, 3, "zeros"), id="all-lengths-0"),
]


@pytest.mark.parametrize("mod", MODS)
@pytest.mark.parametrize("cellnl", CELLS)
@pytest.mark.parametrize("edge", EDGE)
@pytest.mark.parametrize("init", [True, False], ids=["h0", "noh0"])
@pytest.mark.parametrize("dtype", DTYPES)
def test_empty_sequences(mod, cellnl, edge, init, dtype):
    """Nothing to process: the final state is the initial one, dh0 is dh_n, dW is 0."""
    T, B, lk = edge
    I, H = 3, 2
    lengths = {None: None, "zeros": np.zeros(B, np.int64), "empty": np.zeros(0, np.int32)}[lk]
    fwd, up = make(cellnl, T, B, I, H, dtype=dtype, init=init, lengths=lengths, seed=5)
    outs, cache = forward(mod, cellnl, fwd)
    g = backward(mod, cellnl, cache, up)
    y, h_n = outs[0], outs[1]
    assert y.shape == (T, B, H) and y.dtype == dtype
    assert_array_equal(y, 0)
    assert_array_equal(h_n, fwd["h0"] if init else 0)
    assert h_n.shape == (B, H) and h_n.dtype == dtype
    if cellnl[0] == "lstm":
        assert_array_equal(outs[2], fwd["c0"] if init else 0)
        assert_array_equal(g.dc0, up["dc_n"])
        assert g.dc0.shape == (B, H) and g.dc0.dtype == dtype
    assert g.dx.shape == (T, B, I) and g.dx.dtype == dtype
    assert_array_equal(g.dx, 0)
    assert_array_equal(g.dh0, up["dh_n"])
    G = GATES[cellnl[0]]
    for name, shp in (("dw_ih", (G * H, I)), ("dw_hh", (G * H, H)), ("db_ih", (G * H,)),
                      ("db_hh", (G * H,))):
        a = getattr(g, name)
        assert a.shape == shp and a.dtype == dtype, name
        assert_array_equal(a, 0, err_msg=name)


# ----------------------------------------------------- exact properties

@pytest.mark.parametrize("mod", MODS)
@pytest.mark.parametrize("cellnl", CELLS)
@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("reverse", [False, True], ids=["fwd", "rev"])
def test_padding_is_exactly_zero(mod, cellnl, dtype, reverse):
    T, B, I, H = 6, 7, 3, 4
    lengths = np.array([3, 6, 0, 1, 6, 2, 5])
    fwd, up = make(cellnl, T, B, I, H, dtype=dtype, lengths=lengths, reverse=reverse, seed=3)
    pad = np.arange(T)[:, None] >= lengths[None, :]            # (T, B)
    for training in (False, True):
        outs, cache = forward(mod, cellnl, fwd, training=training)
        y = outs[0]
        assert np.all(y[pad] == 0)
        # valid steps are not zero (relu may give exact zeros, but not everywhere)
        assert (np.any if cellnl[1] == "relu" else np.all)(y[~pad] != 0)
    g = backward(mod, cellnl, cache, up)
    assert np.all(g.dx[pad] == 0)
    assert (np.any if cellnl[1] == "relu" else np.all)(g.dx[~pad] != 0)


@pytest.mark.parametrize("mod", MODS)
@pytest.mark.parametrize("cellnl", CELLS)
@pytest.mark.parametrize("reverse", [False, True], ids=["fwd", "rev"])
def test_length_zero_row_keeps_initial_state(mod, cellnl, reverse):
    T, B, I, H = 5, 4, 3, 3
    lengths = [5, 0, 2, 0]
    fwd, up = make(cellnl, T, B, I, H, lengths=lengths, reverse=reverse, seed=4)
    outs, cache = forward(mod, cellnl, fwd)
    g = backward(mod, cellnl, cache, up)
    for b in (1, 3):
        assert_array_equal(outs[1][b], fwd["h0"][b])
        assert_array_equal(g.dh0[b], up["dh_n"][b])
        assert_array_equal(g.dx[:, b], 0)
        if cellnl[0] == "lstm":
            assert_array_equal(outs[2][b], fwd["c0"][b])
            assert_array_equal(g.dc0[b], up["dc_n"][b])
    # and a row that did run has moved away from its initial state
    assert np.all(outs[1][0] != fwd["h0"][0])


def _flip_rows(a, lengths):
    """a (T, B, ...) with each row's valid prefix reversed in time; padding kept."""
    out = a.copy()
    for b, L in enumerate(lengths):
        out[:L, b] = a[:L, b][::-1]
    return out


@pytest.mark.parametrize("mod", MODS)
@pytest.mark.parametrize("cellnl", CELLS)
@pytest.mark.parametrize("lkind", ["none", "full", "mixed"])
def test_reverse_equals_forward_on_flipped_input(mod, cellnl, lkind):
    T, B, I, H = 6, 5, 3, 4
    lengths = lengths_of(lkind, T, B, 9)
    lens = np.full(B, T) if lengths is None else np.asarray(lengths)
    fwd, up = make(cellnl, T, B, I, H, lengths=lengths, reverse=True, seed=8)
    outs_r, cache_r = forward(mod, cellnl, fwd)
    g_r = backward(mod, cellnl, cache_r, up)

    fwd2 = dict(fwd, reverse=False, x=_flip_rows(fwd["x"], lens))
    up2 = dict(up, dy=_flip_rows(up["dy"], lens))
    if lkind == "none":  # the plain time flip
        assert_array_equal(fwd2["x"], fwd["x"][::-1])
    outs_f, cache_f = forward(mod, cellnl, fwd2)
    g_f = backward(mod, cellnl, cache_f, up2)

    kw = dict(rtol=1e-12, atol=1e-14)
    assert_allclose(outs_r[0], _flip_rows(outs_f[0], lens), **kw)
    for a, b in zip(outs_r[1:], outs_f[1:]):
        assert_allclose(a, b, **kw)
    assert_allclose(g_r.dx, _flip_rows(g_f.dx, lens), **kw)
    for a, b in zip(g_r[1:], g_f[1:]):
        assert_allclose(a, b, **kw)


@pytest.mark.parametrize("mod", MODS)
@pytest.mark.parametrize("cellnl", CELLS)
@pytest.mark.parametrize("reverse", [False, True], ids=["fwd", "rev"])
def test_lengths_any_integer_form(mod, cellnl, reverse):
    T, B = 5, 6
    base = np.array([5, 0, 3, 1, 5, 2])
    fwd, up = make(cellnl, T, B, 3, 4, lengths=base.astype(np.int64), reverse=reverse, seed=12)
    o0, g0 = run(mod, cellnl, fwd, up)
    strided = np.zeros(2 * B, np.int32)
    strided[::2] = base
    forms = [base.tolist(), tuple(base.tolist()), base.astype(np.int32), base.astype(np.uint8),
             base.astype(np.int16), base.astype(np.uint64), strided[::2],
             [np.int64(v) for v in base]]
    for lengths in forms:
        o, g = run(mod, cellnl, dict(fwd, lengths=lengths), up)
        for a, b in zip(o + tuple(g), o0 + tuple(g0)):
            if b is None:
                assert a is None
            else:
                assert_array_equal(a, b, err_msg=repr(lengths))


@pytest.mark.parametrize("mod", MODS)
@pytest.mark.parametrize("cellnl", CELLS)
@pytest.mark.parametrize("reverse", [False, True], ids=["fwd", "rev"])
def test_lengths_none_equals_all_full(mod, cellnl, reverse):
    T, B = 5, 4
    fwd, up = make(cellnl, T, B, 3, 4, reverse=reverse, seed=13)
    o0, g0 = run(mod, cellnl, fwd, up)
    o1, g1 = run(mod, cellnl, dict(fwd, lengths=[T] * B), up)
    for a, b in zip(o1 + tuple(g1), o0 + tuple(g0)):
        assert_allclose(a, b, rtol=1e-13, atol=1e-15)


@pytest.mark.parametrize("mod", MODS)
@pytest.mark.parametrize("cellnl", CELLS)
@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("ragged", [False, True], ids=["full", "ragged"])
def test_training_false_same_outputs_no_cache(mod, cellnl, dtype, ragged):
    T, B = 5, 4
    fwd, _ = make(cellnl, T, B, 3, 4, dtype=dtype, seed=14,
                  lengths=[5, 2, 0, 4] if ragged else None)
    o1, cache1 = forward(mod, cellnl, fwd, training=True)
    o0, cache0 = forward(mod, cellnl, fwd, training=False)
    assert cache0 is None
    assert cache1 is not None
    assert len(o0) == len(o1) == len(out_names(cellnl))
    for a, b in zip(o0, o1):
        assert a.dtype == b.dtype == dtype
        assert_array_equal(a, b)


@pytest.mark.parametrize("mod", MODS)
@pytest.mark.parametrize("cellnl", CELLS)
@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("bias", [True, False], ids=["bias", "nobias"])
def test_results_in_input_dtype(mod, cellnl, dtype, bias):
    T, B, I, H = 3, 2, 4, 5
    fwd, up = make(cellnl, T, B, I, H, dtype=dtype, bias=bias, seed=15)
    outs, g = run(mod, cellnl, fwd, up)
    G = GATES[cellnl[0]]
    for a, shp in zip(outs, [(T, B, H), (B, H), (B, H)]):
        assert isinstance(a, np.ndarray) and a.dtype == dtype and a.shape == shp
    shapes = dict(dx=(T, B, I), dh0=(B, H), dc0=(B, H), dw_ih=(G * H, I), dw_hh=(G * H, H),
                  db_ih=(G * H,), db_hh=(G * H,))
    assert type(g).__name__ == {"lstm": "LSTMGrads", "gru": "GRUGrads", "rnn": "RNNGrads"}[cellnl[0]]
    for name in g._fields:
        a = getattr(g, name)
        if name.startswith("db") and not bias:
            assert a is None
            continue
        assert isinstance(a, np.ndarray) and a.dtype == dtype and a.shape == shapes[name], name


@pytest.mark.parametrize("mod", MODS)
@pytest.mark.parametrize("cellnl", CELLS)
@pytest.mark.parametrize("ragged", [False, True], ids=["full", "ragged"])
def test_backward_twice_identical(mod, cellnl, ragged):
    T, B = 5, 4
    fwd, up = make(cellnl, T, B, 3, 4, seed=16, lengths=[5, 0, 3, 1] if ragged else None,
                   reverse=ragged)
    _, cache = forward(mod, cellnl, fwd)
    g1 = backward(mod, cellnl, cache, up)
    for a in g1:  # scribbling on the first result must not leak into the second
        a[...] = np.nan
    g2 = backward(mod, cellnl, cache, up)
    g3 = backward(mod, cellnl, cache, up)
    for a, b in zip(g2, g3):
        assert not np.shares_memory(a, b)
        assert_array_equal(a, b)
        assert np.all(np.isfinite(a))


@pytest.mark.parametrize("mod", MODS)
@pytest.mark.parametrize("cellnl", CELLS)
def test_outputs_do_not_alias_cache_or_inputs(mod, cellnl):
    """Overwriting y/h_n/c_n after forward does not change backward's result,
    and no output shares memory with an input (also when nothing is processed)."""
    for T, lengths in ((4, [4, 1, 0]), (0, None)):
        fwd, up = make(cellnl, T, 3, 3, 2, seed=17, lengths=lengths)
        outs, cache = forward(mod, cellnl, fwd)
        g_ref = backward(mod, cellnl, forward(mod, cellnl, fwd)[1], up)
        for a in outs:
            for v in list(fwd.values()) + list(up.values()):
                if isinstance(v, np.ndarray):
                    assert not np.shares_memory(a, v)
            a[...] = np.nan
        g = backward(mod, cellnl, cache, up)
        for a, b in zip(g, g_ref):
            for v in list(fwd.values()) + list(up.values()):
                if isinstance(v, np.ndarray):
                    assert not np.shares_memory(a, v)
            assert_array_equal(a, b)


@pytest.mark.parametrize("mod", MODS)
@pytest.mark.parametrize("cellnl", CELLS)
@pytest.mark.parametrize("reverse", [False, True], ids=["fwd", "rev"])
def test_batch_rows_are_independent(mod, cellnl, reverse):
    """Each row's results equal those of running that row alone (B=1)."""
    T, B, I, H = 5, 5, 3, 4
    lengths = np.array([2, 5, 0, 5, 3])
    fwd, up = make(cellnl, T, B, I, H, lengths=lengths, reverse=reverse, seed=18)
    outs, g = run(mod, cellnl, fwd, up)
    dw = np.zeros_like(g.dw_ih)
    for b in range(B):
        fb = {k: (v[:, b:b + 1] if k == "x" else v[b:b + 1] if k in ("h0", "c0", "lengths")
                  else v) for k, v in fwd.items()}
        ub = {k: (v[:, b:b + 1] if k == "dy" else v[b:b + 1]) for k, v in up.items()}
        ob, gb = run(mod, cellnl, fb, ub)
        assert_allclose(ob[0], outs[0][:, b:b + 1], rtol=1e-12, atol=1e-14)
        for a, full in zip(ob[1:], outs[1:]):
            assert_allclose(a, full[b:b + 1], rtol=1e-12, atol=1e-14)
        assert_allclose(gb.dx, g.dx[:, b:b + 1], rtol=1e-12, atol=1e-14)
        assert_allclose(gb.dh0, g.dh0[b:b + 1], rtol=1e-12, atol=1e-14)
        dw += gb.dw_ih
    # the weight gradient is the sum of the per-row ones
    assert_allclose(g.dw_ih, dw, rtol=1e-12, atol=1e-13)


@pytest.mark.parametrize("mod", MODS)
@pytest.mark.parametrize("cellnl", CELLS)
@pytest.mark.parametrize("reverse", [False, True], ids=["fwd", "rev"])
def test_padded_values_are_ignored(mod, cellnl, reverse):
    """Finite garbage in x and any garbage (even NaN) in dy at padded steps
    changes nothing."""
    T, B, I, H = 5, 4, 3, 3
    lengths = np.array([5, 2, 0, 3])
    pad = np.arange(T)[:, None] >= lengths[None, :]
    fwd, up = make(cellnl, T, B, I, H, lengths=lengths, reverse=reverse, seed=19)
    o0, g0 = run(mod, cellnl, fwd, up)
    x = fwd["x"].copy()
    x[pad] = 1e6 * np.random.default_rng(0).standard_normal((pad.sum(), I))
    dy = up["dy"].copy()
    dy[pad] = np.nan
    o1, g1 = run(mod, cellnl, dict(fwd, x=x), dict(up, dy=dy))
    for a, b in zip(o1 + tuple(g1), o0 + tuple(g0)):
        assert_allclose(a, b, rtol=1e-13, atol=1e-15)


@pytest.mark.parametrize("mod", MODS)
@pytest.mark.parametrize("cellnl", CELLS)
def test_nonfinite_x_at_padded_steps_is_ignored(mod, cellnl):
    """NaN / inf in x at padded steps changes nothing, dw_ih included (regression:
    the fast path once formed dw_ih = dgx^T x over all T*B rows, and 0 * NaN is NaN)."""
    T, B, I, H = 4, 3, 2, 3
    lengths = np.array([4, 2, 0])
    fwd, up = make(cellnl, T, B, I, H, lengths=lengths, seed=20)
    o0, g0 = run(mod, cellnl, fwd, up)
    x = fwd["x"].copy()
    x[3, 1] = np.nan
    x[1, 2] = np.inf
    with np.errstate(invalid="ignore"):  # the reference's input projection sees inf * w
        o1, g1 = run(mod, cellnl, dict(fwd, x=x), up)
    for a, b, n in zip(o1 + tuple(g1), o0 + tuple(g0), out_names(cellnl) + grad_names(cellnl)):
        assert_allclose(a, b, rtol=1e-13, atol=1e-15, err_msg=n)


@pytest.mark.parametrize("mod", MODS)
def test_lengths_empty_list_for_empty_batch(mod):
    """lengths=[] for B=0 (regression: np.asarray([]) is float64 and was rejected)."""
    fwd, _ = make(("lstm", None), 3, 0, 2, 2, lengths=[])
    y, h_n, c_n, _ = mod.lstm_forward(**fwd)
    assert y.shape == (3, 0, 2) and h_n.shape == c_n.shape == (0, 2)


@pytest.mark.parametrize("mod", MODS)
@pytest.mark.parametrize("cellnl", CELLS)
@pytest.mark.parametrize("ragged", [False, True], ids=["full", "ragged"])
def test_no_bias_equals_zero_bias(mod, cellnl, ragged):
    T, B = 4, 3
    fwd, up = make(cellnl, T, B, 3, 4, seed=21, bias=False,
                   lengths=[4, 0, 2] if ragged else None)
    o0, g0 = run(mod, cellnl, fwd, up)
    G, H = GATES[cellnl[0]], 4
    zb = dict(fwd, b_ih=np.zeros(G * H), b_hh=np.zeros(G * H))
    o1, g1 = run(mod, cellnl, zb, up)
    for a, b in zip(o0, o1):
        assert_allclose(a, b, rtol=1e-14, atol=1e-300)
    for name in g0._fields:
        a, b = getattr(g0, name), getattr(g1, name)
        if name.startswith("db"):
            assert a is None and b is not None and b.shape == (G * H,)
        else:
            assert_allclose(a, b, rtol=1e-14, atol=1e-300, err_msg=name)


@pytest.mark.parametrize("mod", MODS)
@pytest.mark.parametrize("which", ["h0", "c0"])
@pytest.mark.parametrize("reverse", [False, True], ids=["fwd", "rev"])
def test_lstm_one_initial_state_given(mod, which, reverse):
    """Only h0 or only c0: the missing one is zeros; fast == reference."""
    cellnl = ("lstm", None)
    fwd, up = make(cellnl, 4, 3, 3, 4, seed=22, lengths=[4, 0, 2], reverse=reverse)
    other = "c0" if which == "h0" else "h0"
    partial = dict(fwd)
    del partial[other]
    zeros = dict(fwd, **{other: np.zeros_like(fwd[other])})
    o0, g0 = run(mod, cellnl, partial, up)
    o1, g1 = run(mod, cellnl, zeros, up)
    for a, b in zip(o0 + tuple(g0), o1 + tuple(g1)):
        assert_allclose(a, b, rtol=1e-14, atol=1e-300)
    o2, g2 = run(fastlstm if mod is reference else reference, cellnl, partial, up)
    assert_all_close(o0, o2, np.float64, out_names(cellnl))
    assert_all_close(tuple(g0), tuple(g2), np.float64, grad_names(cellnl))
