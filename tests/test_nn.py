"""fastlstm.nn modules and cells, and the functional stack core, against torch.nn.

Everything runs in float64 and must agree with torch (outputs, final states,
input, initial-state and parameter gradients) to about 1e-9.
"""

import numpy as np
import pytest

import fastlstm
from fastlstm import _layers, reference
from fastlstm.nn import GRU, LSTM, RNN, GRUCell, LSTMCell, RNNCell

F64 = np.float64
TOL = dict(rtol=1e-9, atol=1e-11)

# (class, torch class name, extra constructor kwargs, stack mode)
NETS = {
    "lstm": (LSTM, "LSTM", {}, "lstm"),
    "gru": (GRU, "GRU", {}, "gru"),
    "rnn_tanh": (RNN, "RNN", {"nonlinearity": "tanh"}, "rnn"),
    "rnn_relu": (RNN, "RNN", {"nonlinearity": "relu"}, "rnn"),
}
CELLS = {
    "lstm": (LSTMCell, "LSTMCell", {}),
    "gru": (GRUCell, "GRUCell", {}),
    "rnn_tanh": (RNNCell, "RNNCell", {"nonlinearity": "tanh"}),
    "rnn_relu": (RNNCell, "RNNCell", {"nonlinearity": "relu"}),
}


def _torch():
    return pytest.importorskip("torch")


def _to_torch(m, torch_cls):
    """A float64 torch module with m's configuration (and nonlinearity) and parameters."""
    torch = _torch()
    tm = getattr(torch.nn, torch_cls)(**m._config(), dtype=torch.float64)
    tm.load_state_dict({k: torch.from_numpy(v) for k, v in m.state_dict().items()})
    return tm


def _t(a, grad=True):
    torch = _torch()
    return torch.tensor(a, dtype=torch.float64, requires_grad=grad)


def _close(a, b, what):
    b = b.detach().numpy() if hasattr(b, "detach") else b
    np.testing.assert_allclose(a, b, **TOL, err_msg=what)


# --------------------------------------------------------- full networks ---

# (batch_first, bias, with lengths)
VARIANTS = [(False, True, False), (True, True, True), (False, False, True),
            (True, False, False)]


def _run_torch_net(tm, lstm, x, h0, c0, lengths, batch_first, d_out, d_hn, d_cn):
    """torch forward + backward of sum(out*d_out) + sum(h_n*d_hn) (+ c_n)."""
    torch = _torch()
    from torch.nn.utils.rnn import pack_padded_sequence, pad_packed_sequence
    xt, h0t = _t(x), _t(h0)
    c0t = _t(c0) if lstm else None
    hx = (h0t, c0t) if lstm else h0t
    inp = xt
    if lengths is not None:
        inp = pack_padded_sequence(xt, torch.tensor(lengths), batch_first=batch_first,
                                   enforce_sorted=False)
    out, hn = tm(inp, hx)
    if lengths is not None:
        out, _ = pad_packed_sequence(out, batch_first=batch_first,
                                     total_length=x.shape[1 if batch_first else 0])
    hn, cn = hn if lstm else (hn, None)
    loss = (out * _t(d_out, False)).sum() + (hn * _t(d_hn, False)).sum()
    if lstm:
        loss = loss + (cn * _t(d_cn, False)).sum()
    loss.backward()
    return out, hn, cn, xt.grad, h0t.grad, (c0t.grad if lstm else None)


@pytest.mark.parametrize("variant", VARIANTS, ids=["plain", "bf-len", "nobias-len", "bf-nobias"])
@pytest.mark.parametrize("bidirectional", [False, True], ids=["uni", "bi"])
@pytest.mark.parametrize("num_layers", [1, 2, 3])
@pytest.mark.parametrize("kind", list(NETS))
def test_net_matches_torch(kind, num_layers, bidirectional, variant):
    batch_first, bias, with_lengths = variant
    cls, tname, kw, _ = NETS[kind]
    T, B, I, H = 5, 3, 4, 3
    D = 2 if bidirectional else 1
    m = cls(I, H, num_layers, bias=bias, batch_first=batch_first,
            bidirectional=bidirectional, dtype=F64, seed=num_layers, **kw)
    tm = _to_torch(m, tname)
    rng = np.random.default_rng(100 + num_layers)
    x = rng.standard_normal((B, T, I) if batch_first else (T, B, I))
    h0 = rng.standard_normal((num_layers * D, B, H)) * 0.5
    c0 = rng.standard_normal((num_layers * D, B, H)) * 0.5
    lengths = [5, 2, 4] if with_lengths else None
    d_out = rng.standard_normal((B, T, D * H) if batch_first else (T, B, D * H))
    d_hn = rng.standard_normal(h0.shape)
    d_cn = rng.standard_normal(h0.shape)
    lstm = kind == "lstm"

    if lstm:
        out, (hn, cn) = m(x, (h0, c0), lengths=lengths)
        dx, dh0, dc0 = m.backward(d_out, d_hn, d_cn)
    else:
        out, hn = m(x, h0, lengths=lengths)
        dx, dh0 = m.backward(d_out, d_hn)
    ref = _run_torch_net(tm, lstm, x, h0, c0, lengths, batch_first, d_out, d_hn, d_cn)
    t_out, t_hn, t_cn, t_dx, t_dh0, t_dc0 = ref
    assert out.shape == tuple(t_out.shape) and hn.shape == tuple(t_hn.shape)
    _close(out, t_out, "output")
    _close(hn, t_hn, "h_n")
    _close(dx, t_dx, "dx")
    _close(dh0, t_dh0, "dh0")
    if lstm:
        _close(cn, t_cn, "c_n")
        _close(dc0, t_dc0, "dc0")
    params = dict(tm.named_parameters())
    assert list(m.grads) == list(params)
    for k, p in params.items():
        _close(m.grads[k], p.grad, f"grad of {k}")


@pytest.mark.parametrize("kind", list(NETS))
@pytest.mark.parametrize("batch_first", [False, True])
def test_net_unbatched_matches_torch(kind, batch_first):
    cls, tname, kw, _ = NETS[kind]
    T, I, H, L = 4, 3, 5, 2
    m = cls(I, H, L, batch_first=batch_first, bidirectional=True, dtype=F64, seed=3, **kw)
    tm = _to_torch(m, tname)
    rng = np.random.default_rng(5)
    x = rng.standard_normal((T, I))
    h0 = rng.standard_normal((2 * L, H))
    c0 = rng.standard_normal((2 * L, H))
    d_out = rng.standard_normal((T, 2 * H))
    d_hn = rng.standard_normal((2 * L, H))
    lstm = kind == "lstm"
    xt, h0t, c0t = _t(x), _t(h0), _t(c0)
    if lstm:
        out, (hn, cn) = m(x, (h0, c0))
        t_out, (t_hn, t_cn) = tm(xt, (h0t, c0t))
        dx, dh0, dc0 = m.backward(d_out, d_hn)
    else:
        out, hn = m(x, h0)
        t_out, t_hn = tm(xt, h0t)
        dx, dh0 = m.backward(d_out, d_hn)
    ((t_out * _t(d_out, False)).sum() + (t_hn * _t(d_hn, False)).sum()).backward()
    assert out.shape == (T, 2 * H) and hn.shape == (2 * L, H) and dx.shape == (T, I)
    _close(out, t_out, "output")
    _close(hn, t_hn, "h_n")
    _close(dx, xt.grad, "dx")
    _close(dh0, h0t.grad, "dh0")
    if lstm:
        assert cn.shape == (2 * L, H) and dc0.shape == (2 * L, H)
        _close(cn, t_cn, "c_n")
        _close(dc0, c0t.grad, "dc0")
    for k, p in tm.named_parameters():
        _close(m.grads[k], p.grad, f"grad of {k}")


def test_net_unbatched_lengths_match_batched():
    m = LSTM(3, 4, 2, bidirectional=True, dtype=F64, seed=0)
    x = np.random.default_rng(1).standard_normal((6, 3))
    d_out = np.random.default_rng(2).standard_normal((6, 8))
    out, (hn, cn) = m(x, lengths=4)
    g = m.backward(d_out)
    out_b, (hn_b, cn_b) = m(x[:, None], lengths=[4])
    g_b = m.backward(d_out[:, None])
    np.testing.assert_array_equal(out, out_b[:, 0])
    assert not out[4:].any()
    np.testing.assert_array_equal(cn, cn_b[:, 0])
    for a, b in zip(g, g_b):
        np.testing.assert_array_equal(a, b[:, 0])


@pytest.mark.parametrize("kind", ["lstm", "gru"])
def test_net_default_state_and_partial_grads(kind):
    """hx=None means zeros; missing upstream grads mean zeros."""
    cls, tname, kw, _ = NETS[kind]
    m = cls(3, 4, 2, dtype=F64, seed=1)
    tm = _to_torch(m, tname)
    x = np.random.default_rng(2).standard_normal((6, 2, 3))
    xt = _t(x)
    out = m(x)[0]
    t_out = tm(xt)[0]
    _close(out, t_out, "output")
    g = m.backward(None)
    assert all(np.all(a == 0) for a in g)
    assert all(np.all(v == 0) for v in m.grads.values())
    out = m(x)[0]
    t_out.sum().backward()
    g = m.backward(np.ones_like(out))
    _close(g[0], xt.grad, "dx")
    for k, p in tm.named_parameters():
        _close(m.grads[k], p.grad, f"grad of {k}")


def test_net_float32_close_to_torch():
    torch = _torch()
    m = LSTM(4, 6, 2, bidirectional=True, seed=0)
    assert m.dtype == np.float32 and all(p.dtype == np.float32 for p in m.parameters().values())
    tm = torch.nn.LSTM(4, 6, 2, bidirectional=True)
    tm.load_state_dict({k: torch.from_numpy(v) for k, v in m.state_dict().items()})
    x = np.random.default_rng(0).standard_normal((7, 3, 4)).astype(np.float32)
    out, (hn, cn) = m(x)
    assert out.dtype == hn.dtype == cn.dtype == np.float32
    t_out, (t_hn, t_cn) = tm(torch.from_numpy(x))
    np.testing.assert_allclose(out, t_out.detach().numpy(), rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(cn, t_cn.detach().numpy(), rtol=1e-5, atol=1e-6)


def test_grads_accumulate_and_zero_grad():
    m = GRU(3, 4, 2, bidirectional=True, dtype=F64, seed=0)
    x = np.random.default_rng(1).standard_normal((5, 2, 3))
    out, _ = m(x)
    m.backward(np.ones_like(out))
    first = {k: v.copy() for k, v in m.grads.items()}
    m(x)
    m.backward(np.ones_like(out))
    for k in first:
        np.testing.assert_allclose(m.grads[k], 2 * first[k], rtol=1e-12, atol=1e-15)
    m.zero_grad()
    assert all(np.all(v == 0) for v in m.grads.values())


def test_eval_mode_matches_training_output_and_keeps_no_cache():
    m = LSTM(3, 4, 2, dtype=F64, seed=0)
    x = np.random.default_rng(1).standard_normal((5, 2, 3))
    out_train, _ = m(x)
    assert m.eval() is m and not m.training
    out_eval, _ = m(x)
    np.testing.assert_array_equal(out_train, out_eval)
    assert m._cache is None
    assert m.train() is m and m.training


def test_init_uniform_and_seeded():
    m = LSTM(7, 16, 2, bidirectional=True, seed=0)
    k = 1 / np.sqrt(16)
    names = list(m.parameters())
    assert names == ["weight_ih_l0", "weight_hh_l0", "bias_ih_l0", "bias_hh_l0",
                     "weight_ih_l0_reverse", "weight_hh_l0_reverse", "bias_ih_l0_reverse",
                     "bias_hh_l0_reverse", "weight_ih_l1", "weight_hh_l1", "bias_ih_l1",
                     "bias_hh_l1", "weight_ih_l1_reverse", "weight_hh_l1_reverse",
                     "bias_ih_l1_reverse", "bias_hh_l1_reverse"]
    assert m.parameters()["weight_ih_l1"].shape == (64, 32)
    for p in m.parameters().values():
        assert np.all(np.abs(p) <= k)
    allp = np.concatenate([p.ravel() for p in m.parameters().values()])
    assert allp.min() < -0.9 * k and allp.max() > 0.9 * k
    same = LSTM(7, 16, 2, bidirectional=True, seed=0)
    other = LSTM(7, 16, 2, bidirectional=True, seed=1)
    for name in names:
        np.testing.assert_array_equal(m.parameters()[name], same.parameters()[name])
        assert not np.array_equal(m.parameters()[name], other.parameters()[name])
    assert list(LSTM(3, 4, bias=False).parameters()) == ["weight_ih_l0", "weight_hh_l0"]


def test_parameters_are_live_and_state_dict_copies():
    m = RNN(3, 4, dtype=F64, seed=0)
    m.parameters()["weight_hh_l0"][...] = 0.5
    assert np.all(m.state_dict()["weight_hh_l0"] == 0.5)
    sd = m.state_dict()
    sd["weight_hh_l0"][...] = 1.0
    assert np.all(m.parameters()["weight_hh_l0"] == 0.5)


def test_rnn_positional_nonlinearity_and_repr():
    m = RNN(3, 4, 2, "relu", False)
    assert m.nonlinearity == "relu" and not m.bias and m.num_layers == 2
    assert repr(m) == "RNN(3, 4, num_layers=2, bias=False, nonlinearity='relu')"
    assert repr(LSTM(3, 4, dtype=F64)) == "LSTM(3, 4, dtype=float64)"
    assert repr(GRUCell(3, 4)) == "GRUCell(3, 4)"
    with pytest.warns(UserWarning, match="num_layers=1"):
        LSTM(3, 4, dropout=0.5)


# ------------------------------------------------------------ state dicts ---

@pytest.mark.parametrize("kind", list(NETS))
def test_state_dict_both_ways(kind):
    torch = _torch()
    cls, tname, kw, _ = NETS[kind]
    tm = getattr(torch.nn, tname)(4, 5, 2, bidirectional=True, **kw)  # float32 torch
    m = cls(4, 5, 2, bidirectional=True, dtype=F64, seed=9, **kw)
    m.load_state_dict(tm.state_dict())  # torch CPU tensors, as they are
    for k, v in tm.state_dict().items():
        assert m.parameters()[k].dtype == F64
        np.testing.assert_array_equal(m.parameters()[k], v.numpy().astype(F64))
    m2 = cls(4, 5, 2, bidirectional=True, seed=10, **kw)
    tm.load_state_dict({k: torch.from_numpy(v) for k, v in m2.state_dict().items()})
    for k, v in tm.state_dict().items():
        np.testing.assert_array_equal(v.numpy(), m2.parameters()[k])


@pytest.mark.parametrize("kind", list(CELLS))
def test_cell_state_dict_both_ways(kind):
    torch = _torch()
    cls, tname, kw = CELLS[kind]
    tc = getattr(torch.nn, tname)(3, 4, **kw)
    c = cls(3, 4, dtype=F64, **kw)
    c.load_state_dict(tc.state_dict())
    assert list(c.state_dict()) == list(tc.state_dict())
    for k, v in tc.state_dict().items():
        np.testing.assert_array_equal(c.parameters()[k], v.numpy().astype(F64))
    c32 = cls(3, 4, seed=2, **kw)
    tc.load_state_dict({k: torch.from_numpy(v) for k, v in c32.state_dict().items()})
    for k, v in tc.state_dict().items():
        np.testing.assert_array_equal(v.numpy(), c32.parameters()[k])


# ------------------------------------------------------------------ cells ---

@pytest.mark.parametrize("unbatched", [False, True], ids=["batched", "unbatched"])
@pytest.mark.parametrize("bias", [True, False], ids=["bias", "nobias"])
@pytest.mark.parametrize("kind", list(CELLS))
def test_cell_unrolled_matches_torch(kind, bias, unbatched):
    torch = _torch()
    cls, tname, kw = CELLS[kind]
    lstm = kind == "lstm"
    T, B, I, H = 4, 3, 5, 4
    c = cls(I, H, bias=bias, dtype=F64, seed=4, **kw)
    tc = getattr(torch.nn, tname)(I, H, bias=bias, dtype=torch.float64, **kw)
    tc.load_state_dict({k: torch.from_numpy(v) for k, v in c.state_dict().items()})
    rng = np.random.default_rng(6)
    bshape = () if unbatched else (B,)
    xs = [rng.standard_normal(bshape + (I,)) for _ in range(T)]
    h0 = rng.standard_normal(bshape + (H,))
    c0 = rng.standard_normal(bshape + (H,))
    dhs = [rng.standard_normal(bshape + (H,)) for _ in range(T)]
    dc_last = rng.standard_normal(bshape + (H,))

    # ours: forward T steps, then backward in reverse order
    h, cc, hs = h0, c0, []
    for x in xs:
        if lstm:
            h, cc = c(x, (h, cc))
        else:
            h = c(x, h)
        hs.append(h)
    assert len(c._stack) == T
    dh, dc = dhs[-1], dc_last
    dxs = [None] * T
    for t in reversed(range(T)):
        if lstm:
            dxs[t], dh, dc = c.backward(dh, dc)
        else:
            dxs[t], dh = c.backward(dh)
        if t:
            dh = dh + dhs[t - 1]
    assert not c._stack

    # torch
    xts = [_t(x) for x in xs]
    h0t, c0t = _t(h0), _t(c0)
    th, tcc, loss = h0t, c0t, 0
    for t, xt in enumerate(xts):
        if lstm:
            th, tcc = tc(xt, (th, tcc))
        else:
            th = tc(xt, th)
        loss = loss + (th * _t(dhs[t], False)).sum()
        _close(hs[t], th, f"h at step {t}")
    if lstm:
        _close(cc, tcc, "final c")
        loss = loss + (tcc * _t(dc_last, False)).sum()
    loss.backward()
    for t in range(T):
        assert dxs[t].shape == xs[t].shape
        _close(dxs[t], xts[t].grad, f"dx at step {t}")
    _close(dh, h0t.grad, "dh0")
    if lstm:
        _close(dc, c0t.grad, "dc0")
    for k, p in tc.named_parameters():
        _close(c.grads[k], p.grad, f"grad of {k}")


@pytest.mark.parametrize("kind", list(CELLS))
def test_cell_default_state_and_eval(kind):
    torch = _torch()
    cls, tname, kw = CELLS[kind]
    c = cls(3, 4, dtype=F64, seed=1, **kw)
    tc = getattr(torch.nn, tname)(3, 4, dtype=torch.float64, **kw)
    tc.load_state_dict({k: torch.from_numpy(v) for k, v in c.state_dict().items()})
    x = np.random.default_rng(0).standard_normal((2, 3))
    out = c.eval()(x)
    assert not c._stack
    t_out = tc(torch.from_numpy(x))
    if kind == "lstm":
        _close(out[0], t_out[0], "h")
        _close(out[1], t_out[1], "c")
    else:
        _close(out, t_out, "h")
    c.train()
    c(x)
    c(x)
    c.clear_cache()
    assert not c._stack


# ------------------------------------------------- functional stack core ---

def _stack_problem(mode, L, bidir, T=5, B=3, I=4, H=3, bias=True, seed=0):
    D = 2 if bidir else 1
    rng = np.random.default_rng(seed)
    shapes = _layers.param_shapes(mode, I, H, L, bidir, bias)
    params = {k: rng.uniform(-0.5, 0.5, s) for k, s in shapes.items()}
    x = rng.standard_normal((T, B, I))
    h0 = rng.standard_normal((L * D, B, H)) * 0.5
    hx = (h0, rng.standard_normal(h0.shape) * 0.5) if mode == "lstm" else h0
    grads = dict(d_output=rng.standard_normal((T, B, D * H)),
                 d_h_n=rng.standard_normal(h0.shape))
    if mode == "lstm":
        grads["d_c_n"] = rng.standard_normal(h0.shape)
    return params, x, hx, grads


@pytest.mark.parametrize("mode", ["lstm", "gru", "rnn"])
def test_stack_fast_matches_reference(mode):
    params, x, hx, grads = _stack_problem(mode, 2, True)
    kw = dict(num_layers=2, bidirectional=True, dropout=0.0, training=True, rng=None,
              nonlinearity="relu")
    lengths = [5, 0, 3]
    fast = _layers.stack_forward(mode, params, x, hx, lengths, **kw)
    ref = _layers.stack_forward(mode, params, x, hx, lengths, impl=reference, **kw)
    for a, b in zip(fast[:3], ref[:3]):
        if b is None:
            assert a is None
        else:
            np.testing.assert_allclose(a, b, rtol=1e-10, atol=1e-12)
    gf = _layers.stack_backward(fast[3], **grads)
    gr = _layers.stack_backward(ref[3], **grads)
    again = _layers.stack_backward(fast[3], **grads)  # the cache can be reused
    for a, b, c in zip(gf[:3], gr[:3], again[:3]):
        if b is not None:
            np.testing.assert_allclose(a, b, rtol=1e-10, atol=1e-12)
            np.testing.assert_array_equal(a, c)
    assert list(gf[3]) == list(params)
    for k in params:
        np.testing.assert_allclose(gf[3][k], gr[3][k], rtol=1e-10, atol=1e-12)
    # a sequence of length 0 keeps its initial state in every layer/direction
    h0 = hx[0] if mode == "lstm" else hx
    np.testing.assert_array_equal(fast[1][:, 1], h0[:, 1])
    assert np.all(fast[0][:, 1] == 0)


def test_stack_eval_has_no_cache_and_zero_grads_when_no_upstream():
    params, x, hx, _ = _stack_problem("gru", 2, False)
    kw = dict(num_layers=2, bidirectional=False, dropout=0.5, rng=None)
    out, h_n, c_n, cache = _layers.stack_forward("gru", params, x, hx, None, training=False,
                                                 **kw)
    assert cache is None and c_n is None and out.shape == (5, 3, 3) and h_n.shape == (2, 3, 3)
    out2, _, _, cache = _layers.stack_forward("gru", params, x, hx, None, training=True,
                                              **dict(kw, dropout=0.0))
    np.testing.assert_array_equal(out, out2)
    dx, dh0, dc0, grads = _layers.stack_backward(cache)
    assert dc0 is None and not dx.any() and not dh0.any()
    assert not any(g.any() for g in grads.values())


# ---------------------------------------------------------------- dropout ---

def test_dropout_seeded_and_off_in_eval():
    x = np.random.default_rng(0).standard_normal((6, 4, 3))

    def run(seed, train=True, dropout=0.5):
        m = LSTM(3, 8, 3, dropout=dropout, dtype=F64, seed=seed)
        m.load_state_dict(LSTM(3, 8, 3, dtype=F64, seed=99).state_dict())  # same weights
        return m.train(train)(x)[0]

    a, b, c = run(1), run(1), run(2)
    np.testing.assert_array_equal(a, b)
    assert not np.allclose(a, c)
    no_dropout = run(1, dropout=0.0)
    assert not np.allclose(a, no_dropout)
    np.testing.assert_array_equal(run(1, train=False), no_dropout)
    np.testing.assert_array_equal(run(2, train=False), no_dropout)


def test_dropout_mask_statistics():
    """Inverted dropout: a fraction p of features zeroed, the rest scaled by 1/(1-p)."""
    mask = _layers._dropout_mask(np.random.default_rng(0), (200, 50), 0.3, np.dtype(F64))
    assert set(np.unique(mask)) == {0.0, 1 / 0.7}
    assert abs((mask == 0).mean() - 0.3) < 0.02
    assert not _layers._dropout_mask(np.random.default_rng(0), (3, 4), 1.0, np.dtype(F64)).any()


@pytest.mark.parametrize("mode", ["lstm", "gru", "rnn"])
def test_dropout_backward_fast_vs_reference(mode):
    params, x, hx, grads = _stack_problem(mode, 3, True, seed=1)
    kw = dict(num_layers=3, bidirectional=True, dropout=0.4, training=True)
    fast = _layers.stack_forward(mode, params, x, hx, [5, 3, 1],
                                 rng=np.random.default_rng(7), **kw)
    ref = _layers.stack_forward(mode, params, x, hx, [5, 3, 1], impl=reference,
                                rng=np.random.default_rng(7), **kw)
    assert all(m is not None for m in fast[3].masks[:2]) and fast[3].masks[2] is None
    np.testing.assert_allclose(fast[0], ref[0], rtol=1e-10, atol=1e-12)
    gf = _layers.stack_backward(fast[3], **grads)
    gr = _layers.stack_backward(ref[3], **grads)
    for a, b in zip(gf[:3], gr[:3]):
        if b is not None:
            np.testing.assert_allclose(a, b, rtol=1e-10, atol=1e-12)
    for k in params:
        np.testing.assert_allclose(gf[3][k], gr[3][k], rtol=1e-10, atol=1e-12)


@pytest.mark.parametrize("mode", ["lstm", "gru"])
def test_dropout_backward_finite_differences(mode):
    """With the mask fixed (same rng seed), backward matches central differences."""
    params, x, hx, grads = _stack_problem(mode, 2, True, T=4, B=2, I=3, H=3, seed=2)
    kw = dict(num_layers=2, bidirectional=True, dropout=0.5, training=True)

    def loss(params, x):
        out, h_n, c_n, cache = _layers.stack_forward(mode, params, x, hx, None,
                                                     rng=np.random.default_rng(3), **kw)
        val = (out * grads["d_output"]).sum() + (h_n * grads["d_h_n"]).sum()
        if c_n is not None:
            val += (c_n * grads["d_c_n"]).sum()
        return val, cache

    _, cache = loss(params, x)
    assert cache.masks[0] is not None and (cache.masks[0] == 0).any()
    dx, _, _, g = _layers.stack_backward(cache, **grads)
    eps = 1e-6
    rng = np.random.default_rng(4)
    checks = [("x", tuple(rng.integers(0, n) for n in x.shape)) for _ in range(4)]
    for name in ("weight_ih_l0", "weight_hh_l0_reverse", "bias_hh_l1", "weight_ih_l1_reverse"):
        checks.append((name, tuple(rng.integers(0, n) for n in params[name].shape)))
    for name, idx in checks:
        def shifted(delta):
            p = {k: v.copy() for k, v in params.items()}
            xx = x.copy()
            (xx if name == "x" else p[name])[idx] += delta
            return loss(p, xx)[0]
        num = (shifted(eps) - shifted(-eps)) / (2 * eps)
        ana = (dx if name == "x" else g[name])[idx]
        assert abs(num - ana) <= 1e-6 * max(1.0, abs(num)), (name, idx, num, ana)


def test_module_dropout_backward_matches_reference_impl():
    x = np.random.default_rng(0).standard_normal((5, 3, 4))
    d_out = np.random.default_rng(1).standard_normal((5, 3, 12))
    res = []
    for impl in (fastlstm, reference):
        m = GRU(4, 6, 3, dropout=0.3, bidirectional=True, dtype=F64, seed=11)
        m._impl = impl
        out, _ = m(x, lengths=[5, 4, 2])
        res.append((out, m.backward(d_out), m.grads))
    (o1, g1, p1), (o2, g2, p2) = res
    np.testing.assert_allclose(o1, o2, rtol=1e-10, atol=1e-12)
    for a, b in zip(g1, g2):
        np.testing.assert_allclose(a, b, rtol=1e-10, atol=1e-12)
    for k in p1:
        np.testing.assert_allclose(p1[k], p2[k], rtol=1e-10, atol=1e-12)


def test_public_exports():
    for name in ("LSTM", "GRU", "RNN", "LSTMCell", "GRUCell", "RNNCell", "save", "load"):
        assert hasattr(fastlstm, name) and name in fastlstm.__all__


@pytest.mark.parametrize("cls,kw", [(fastlstm.LSTMCell, {}), (fastlstm.GRUCell, {}),
                                    (fastlstm.RNNCell, {"nonlinearity": "relu"})])
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_cell_inference_fast_path_matches_training_step(cls, kw, dtype):
    # eval-mode steps take a shorter route into C; same numbers as the checked one
    rng = np.random.default_rng(3)
    cell = cls(5, 7, dtype=dtype, seed=1, **kw)
    x = rng.standard_normal((3, 5)).astype(dtype)
    h = rng.standard_normal((3, 7)).astype(dtype)
    hx = (h, h * 0.5) if cls is fastlstm.LSTMCell else h
    want = cell.train()(x, hx)
    got = cell.eval()(x, hx)
    hx0 = tuple(v[0] for v in hx) if isinstance(hx, tuple) else hx[0]
    got_unbatched = cell(x[0], hx0)

    def as_tuple(r):
        return r if isinstance(r, tuple) else (r,)

    for a, b, c in zip(as_tuple(got), as_tuple(want), as_tuple(got_unbatched)):
        np.testing.assert_array_equal(a, b)
        np.testing.assert_array_equal(c, b[0])


def _cell_pair(cls, kw, dtype, bias=True):
    """A cell in training mode and a copy of it in eval mode."""
    a = cls(5, 7, bias=bias, dtype=dtype, seed=1, **kw)
    b = cls(5, 7, bias=bias, dtype=dtype, seed=2, **kw).eval()
    b.load_state_dict(a.state_dict())
    return a, b


def _assert_same_step(a, b, x, hx):
    want, got = a(x, hx), b(x, hx)
    for u, v in zip(want if isinstance(want, tuple) else (want,),
                    got if isinstance(got, tuple) else (got,)):
        assert type(v) is np.ndarray and v.flags.c_contiguous and v.dtype == u.dtype
        np.testing.assert_array_equal(v, u)


@pytest.mark.parametrize("cls,kw", [(fastlstm.LSTMCell, {}), (fastlstm.GRUCell, {}),
                                    (fastlstm.RNNCell, {"nonlinearity": "tanh"}),
                                    (fastlstm.RNNCell, {"nonlinearity": "relu"})])
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("bias", [True, False])
def test_cell_inference_odd_but_valid_input(cls, kw, dtype, bias):
    # whatever layout the arguments come in, an eval step gives the training step's numbers
    a, b = _cell_pair(cls, kw, dtype, bias)
    rng = np.random.default_rng(4)
    x = rng.standard_normal((3, 10)).astype(dtype)[:, ::2]  # not contiguous
    h = np.asfortranarray(rng.standard_normal((3, 7)).astype(dtype))
    ro = rng.standard_normal((3, 7)).astype(dtype)
    ro.flags.writeable = False
    lstm = cls is fastlstm.LSTMCell
    states = [None, (h, ro), [ro, h], (None, h), (h, None)] if lstm else [None, h, ro]
    for hx in states:
        _assert_same_step(a, b, x, hx)
        _assert_same_step(a, b, np.ascontiguousarray(x), hx)
        hx0 = None if hx is None else (type(hx)(None if v is None else v[1] for v in hx)
                                       if lstm else hx[1])
        _assert_same_step(a, b, np.ascontiguousarray(x[1]), hx0)  # unbatched
    _assert_same_step(a, b, np.zeros((0, 5), dtype), None)  # an empty batch
    _assert_same_step(a, b, x.view(np.matrix), None)  # a subclass


@pytest.mark.parametrize("cls,kw", [(fastlstm.LSTMCell, {}), (fastlstm.GRUCell, {}),
                                    (fastlstm.RNNCell, {"nonlinearity": "relu"})])
def test_cell_inference_sees_parameter_changes(cls, kw):
    # eval steps read the parameters on every call: new values (in place or by
    # load_state_dict), arrays assigned to the parameter dict and a changed
    # nonlinearity all count from the next step on
    a, b = _cell_pair(cls, kw, np.float32)
    rng = np.random.default_rng(5)
    x = rng.standard_normal((2, 5)).astype(np.float32)
    h = rng.standard_normal((2, 7)).astype(np.float32)
    hx = (h, h) if cls is fastlstm.LSTMCell else h
    _assert_same_step(a, b, x, hx)
    for p in (a, b):
        p.parameters()["weight_hh"] *= 2  # in place
        p.parameters()["bias_ih"][3] = 1.5
    _assert_same_step(a, b, x, hx)
    state = {k: rng.standard_normal(v.shape) for k, v in a.state_dict().items()}
    for p in (a, b):
        p.load_state_dict(state)
    _assert_same_step(a, b, x, hx)
    w = rng.standard_normal(a._params["weight_ih"].shape).astype(np.float32)
    before = b(x, hx)
    for p in (a, b):
        p._params["weight_ih"] = w.copy()
    _assert_same_step(a, b, x, hx)
    after = b(x, hx)
    assert not np.array_equal(before if cls is not fastlstm.LSTMCell else before[0],
                              after if cls is not fastlstm.LSTMCell else after[0])
    if cls is fastlstm.RNNCell:
        for p in (a, b):
            p.nonlinearity = "tanh"
        # training and eval steps both follow the attribute
        want = fastlstm.rnn_forward(x[None], *(b._params[k] for k in
                                    ("weight_ih", "weight_hh", "bias_ih", "bias_hh")),
                                    h0=h, nonlinearity="tanh")[1]
        np.testing.assert_array_equal(b(x, hx), want)
        _assert_same_step(a, b, x, hx)


def test_cell_inference_from_several_threads():
    import threading
    cell = fastlstm.LSTMCell(16, 32, seed=0).eval()
    rng = np.random.default_rng(6)
    xs = rng.standard_normal((8, 4, 16)).astype(np.float32)
    want = [cell(x) for x in xs]
    got = [None] * len(xs)

    def run(i):
        for _ in range(200):
            got[i] = cell(xs[i])
    threads = [threading.Thread(target=run, args=(i,)) for i in range(len(xs))]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    for w, g in zip(want, got):
        np.testing.assert_array_equal(g[0], w[0])
        np.testing.assert_array_equal(g[1], w[1])


def test_cell_inference_while_another_thread_replaces_parameters():
    # an eval step holds the parameter arrays it runs on: replacing them in the
    # dict from another thread while the kernel runs (without the GIL) must not
    # free them under it (arrays of 1 MB, which the allocator returns to the OS)
    import threading
    cell = fastlstm.GRUCell(256, 256, seed=0).eval()
    x = np.ones((1, 256), np.float32)
    shapes = {k: v.shape for k, v in cell._params.items()}
    stop = threading.Event()

    def replace():
        rng = np.random.default_rng(7)
        while not stop.is_set():
            for k, s in shapes.items():
                cell._params[k] = rng.uniform(-0.1, 0.1, s).astype(np.float32)
    t = threading.Thread(target=replace)
    t.start()
    try:
        for _ in range(2000):
            h = cell(x)
            assert h.shape == (1, 256) and np.isfinite(h).all()
    finally:
        stop.set()
        t.join()
