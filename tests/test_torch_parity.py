"""Parity with PyTorch: both implementations against torch.nn.LSTM / GRU / RNN.

Every case builds a single-layer torch module (float64 unless stated), copies its
weights into ``fastlstm`` (C kernels) and ``fastlstm.reference`` (NumPy), and
compares the outputs y, h_n (c_n) and every gradient -- dx, dh0 (dc0), dw_ih,
dw_hh, db_ih, db_hh -- to torch autograd on the loss
``(y*Ry).sum() + (h_n*Rh).sum() (+ (c_n*Rc).sum())`` with random Ry, Rh, Rc,
which are passed to our backward as dy, dh_n (dc_n).

Bidirectional torch layers are compared direction by direction: the forward
half (``*_l0`` weights) against ``reverse=False``, the reverse half
(``*_l0_reverse`` weights) against ``reverse=True``; torch's y is the
concatenation of the two along the feature axis, its h_n[0] / h_n[1] the two
directions, and its dx the sum of the two directions' dx. Ragged batches go
through pack_padded_sequence(enforce_sorted=False) with unsorted lengths.
"""

import numpy as np
import pytest

import fastlstm
from fastlstm import reference

torch = pytest.importorskip("torch")
nn = torch.nn
pack_padded_sequence = torch.nn.utils.rnn.pack_padded_sequence
pad_packed_sequence = torch.nn.utils.rnn.pad_packed_sequence

RTOL64, ATOL64 = 1e-9, 1e-10
RTOL32, ATOL32 = 1e-4, 1e-5

IMPLS = [pytest.param(fastlstm, id="fast"), pytest.param(reference, id="reference")]
CELLS = ["lstm", "gru", "rnn_tanh", "rnn_relu"]

# (T, B, I, H, lengths for the ragged cases): unsorted lengths that include T and 1
SHAPES = [
    pytest.param((7, 5, 4, 6, [3, 7, 1, 5, 2]), id="T7B5I4H6"),
    pytest.param((5, 4, 3, 2, [2, 5, 5, 1]), id="T5B4I3H2"),
    pytest.param((1, 1, 3, 1, [1]), id="T1B1I3H1"),
]


# ---------------------------------------------------------------------------
# helpers
# ---------------------------------------------------------------------------

def make_module(cell, I, H, bias, bidirectional, dtype=torch.float64, seed=0):
    torch.manual_seed(seed)
    kw = dict(num_layers=1, bias=bias, bidirectional=bidirectional)
    if cell == "lstm":
        mod = nn.LSTM(I, H, **kw)
    elif cell == "gru":
        mod = nn.GRU(I, H, **kw)
    else:
        mod = nn.RNN(I, H, nonlinearity=cell[4:], **kw)
    return mod.to(dtype)


def make_data(cell, T, B, I, H, D, dtype=np.float64, seed=1):
    """x, h0, c0 (D, B, H) and upstream gradients Ry (T, B, D*H), Rh, Rc (D, B, H)."""
    rng = np.random.default_rng(seed)
    x = rng.standard_normal((T, B, I)).astype(dtype)
    h0 = (0.5 * rng.standard_normal((D, B, H))).astype(dtype)
    c0 = (0.5 * rng.standard_normal((D, B, H))).astype(dtype) if cell == "lstm" else None
    Ry = rng.standard_normal((T, B, D * H)).astype(dtype)
    Rh = rng.standard_normal((D, B, H)).astype(dtype)
    Rc = rng.standard_normal((D, B, H)).astype(dtype) if cell == "lstm" else None
    return x, h0, c0, Ry, Rh, Rc


def _suffixes(mod):
    return ["_l0", "_l0_reverse"] if mod.bidirectional else ["_l0"]


def torch_run(mod, cell, x, h0, c0, lengths, Ry, Rh, Rc):
    """Run torch with explicit initial states; returns outputs and all gradients.

    Without a given h0 (c0) our side gets None; torch then gets zeros, which is
    the same state, so that dh0 (dc0) can still be compared.
    """
    mod.zero_grad(set_to_none=True)
    xt = torch.tensor(x, requires_grad=True)
    h0t = torch.tensor(h0, requires_grad=True)
    c0t = torch.tensor(c0, requires_grad=True) if cell == "lstm" else None
    hx = (h0t, c0t) if cell == "lstm" else h0t
    T = x.shape[0]
    if lengths is None:
        y, hn = mod(xt, hx)
    else:
        packed = pack_padded_sequence(xt, torch.tensor(lengths), enforce_sorted=False)
        out, hn = mod(packed, hx)
        y, out_lengths = pad_packed_sequence(out, total_length=T)
        assert out_lengths.tolist() == list(lengths)
    h_n, c_n = hn if cell == "lstm" else (hn, None)
    loss = (y * torch.tensor(Ry)).sum() + (h_n * torch.tensor(Rh)).sum()
    if cell == "lstm":
        loss = loss + (c_n * torch.tensor(Rc)).sum()
    loss.backward()

    def g(name):
        p = getattr(mod, name, None)
        return None if p is None else p.grad.detach().numpy().copy()

    res = dict(y=y.detach().numpy(), h_n=h_n.detach().numpy(),
               dx=xt.grad.numpy(), dh0=h0t.grad.numpy())
    if cell == "lstm":
        res.update(c_n=c_n.detach().numpy(), dc0=c0t.grad.numpy())
    for sfx in _suffixes(mod):
        for w in ("weight_ih", "weight_hh", "bias_ih", "bias_hh"):
            res[f"{w}{sfx}"] = g(w + sfx)
    return res


def _forward(impl, cell, x, w, h0, c0, lengths, reverse, training):
    kw = dict(h0=h0, lengths=lengths, reverse=reverse, training=training)
    if cell == "lstm":
        return impl.lstm_forward(x, *w, c0=c0, **kw)
    if cell == "gru":
        y, h_n, cache = impl.gru_forward(x, *w, **kw)
    else:
        y, h_n, cache = impl.rnn_forward(x, *w, nonlinearity=cell[4:], **kw)
    return y, h_n, None, cache


def _backward(impl, cell, cache, dy, dh_n, dc_n):
    if cell == "lstm":
        g = impl.lstm_backward(cache, dy=dy, dh_n=dh_n, dc_n=dc_n)
        return g._asdict()
    if cell == "gru":
        g = impl.gru_backward(cache, dy=dy, dh_n=dh_n)
    else:
        g = impl.rnn_backward(cache, dy=dy, dh_n=dh_n)
    return dict(g._asdict(), dc0=None)


def ours_run(impl, mod, cell, x, h0, c0, lengths, Ry, Rh, Rc, check_inference=True):
    """Our side, direction by direction, assembled into torch's layout.

    h0 / c0: (D, B, H) arrays or None (passed as None to every direction).
    """
    T, B, _ = x.shape
    H = mod.hidden_size
    lens = np.full(B, T) if lengths is None else np.asarray(lengths)
    pad = np.arange(T)[:, None] >= lens[None, :]          # (T, B): padded steps
    ys, hs, cs, dhs, dcs = [], [], [], [], []
    dx = np.zeros_like(x)
    res = {}
    for d, sfx in enumerate(_suffixes(mod)):
        params = [getattr(mod, n + sfx, None) for n in ("weight_ih", "weight_hh", "bias_ih", "bias_hh")]
        w = [None if p is None else p.detach().numpy().copy() for p in params]
        h0_d = None if h0 is None else h0[d]
        c0_d = None if c0 is None else c0[d]
        reverse = d == 1
        y, h_n, c_n, cache = _forward(impl, cell, x, w, h0_d, c0_d, lengths, reverse, True)
        assert y.dtype == x.dtype and h_n.dtype == x.dtype
        assert np.all(y[pad] == 0), "y must be exactly zero at padded steps"
        if check_inference:
            y2, h2, c2, cache2 = _forward(impl, cell, x, w, h0_d, c0_d, lengths, reverse, False)
            assert cache2 is None
            np.testing.assert_array_equal(y2, y)
            np.testing.assert_array_equal(h2, h_n)
            if cell == "lstm":
                np.testing.assert_array_equal(c2, c_n)
        dy = np.ascontiguousarray(Ry[..., d * H:(d + 1) * H])
        g = _backward(impl, cell, cache, dy, Rh[d], None if Rc is None else Rc[d])
        assert np.all(g["dx"][pad] == 0), "dx must be exactly zero at padded steps"
        if w[2] is None:
            assert g["db_ih"] is None and g["db_hh"] is None
        ys.append(y)
        hs.append(h_n)
        cs.append(c_n)
        dhs.append(g["dh0"])
        dcs.append(g["dc0"])
        dx = dx + g["dx"]
        res[f"weight_ih{sfx}"] = g["dw_ih"]
        res[f"weight_hh{sfx}"] = g["dw_hh"]
        res[f"bias_ih{sfx}"] = g["db_ih"]
        res[f"bias_hh{sfx}"] = g["db_hh"]
    res.update(y=np.concatenate(ys, axis=-1), h_n=np.stack(hs), dx=dx, dh0=np.stack(dhs))
    if cell == "lstm":
        res.update(c_n=np.stack(cs), dc0=np.stack(dcs))
    return res


def assert_same(ours, ref, rtol, atol):
    assert sorted(ours) == sorted(ref)
    for key in sorted(ref):
        a, b = ours[key], ref[key]
        if b is None:
            assert a is None, f"{key}: expected None"
            continue
        assert a is not None, f"{key}: got None"
        assert a.shape == b.shape, f"{key}: shape {a.shape} != torch's {b.shape}"
        assert a.dtype == b.dtype, f"{key}: dtype {a.dtype} != torch's {b.dtype}"
        np.testing.assert_allclose(a, b, rtol=rtol, atol=atol, err_msg=key)


# ---------------------------------------------------------------------------
# float64: dense and ragged, one and two directions
# ---------------------------------------------------------------------------

@pytest.mark.parametrize("impl", IMPLS)
@pytest.mark.parametrize("cell", CELLS)
@pytest.mark.parametrize("bias", [True, False], ids=["bias", "nobias"])
@pytest.mark.parametrize("state", ["h0", "none"])
@pytest.mark.parametrize("bidirectional", [False, True], ids=["uni", "bi"])
@pytest.mark.parametrize("ragged", [False, True], ids=["dense", "packed"])
@pytest.mark.parametrize("shape", SHAPES)
def test_matches_torch_float64(impl, cell, bias, state, bidirectional, ragged, shape):
    T, B, I, H, lengths = shape
    D = 2 if bidirectional else 1
    mod = make_module(cell, I, H, bias, bidirectional)
    x, h0, c0, Ry, Rh, Rc = make_data(cell, T, B, I, H, D)
    if state == "none":
        h0 = np.zeros_like(h0)
        c0 = None if c0 is None else np.zeros_like(c0)
    lengths = lengths if ragged else None
    ref = torch_run(mod, cell, x, h0, c0, lengths, Ry, Rh, Rc)
    ours = ours_run(impl, mod, cell, x, None if state == "none" else h0,
                    None if state == "none" else c0, lengths, Ry, Rh, Rc)
    assert_same(ours, ref, RTOL64, ATOL64)


@pytest.mark.parametrize("impl", IMPLS)
@pytest.mark.parametrize("given", ["h0_only", "c0_only"])
@pytest.mark.parametrize("ragged", [False, True], ids=["dense", "packed"])
def test_lstm_one_initial_state_given(impl, given, ragged):
    """LSTM with only one of h0 / c0: the missing one is zeros."""
    T, B, I, H, lengths = 7, 5, 4, 6, [3, 7, 1, 5, 2]
    mod = make_module("lstm", I, H, True, True)
    x, h0, c0, Ry, Rh, Rc = make_data("lstm", T, B, I, H, 2)
    if given == "h0_only":
        c0 = np.zeros_like(c0)
    else:
        h0 = np.zeros_like(h0)
    lengths = lengths if ragged else None
    ref = torch_run(mod, "lstm", x, h0, c0, lengths, Ry, Rh, Rc)
    ours = ours_run(impl, mod, "lstm", x, h0 if given == "h0_only" else None,
                    c0 if given == "c0_only" else None, lengths, Ry, Rh, Rc)
    assert_same(ours, ref, RTOL64, ATOL64)


@pytest.mark.parametrize("impl", IMPLS)
@pytest.mark.parametrize("cell", CELLS)
@pytest.mark.parametrize("bidirectional", [False, True], ids=["uni", "bi"])
def test_zero_lengths_match_torch_on_the_rest(impl, cell, bidirectional):
    """Length-0 rows (which torch cannot pack) leave the other rows' results, and
    the weight gradients, exactly as torch computes them without those rows; the
    length-0 rows themselves give y = 0, h_n = h0, dx = 0 and dh0 = dh_n."""
    T, B, I, H = 6, 5, 3, 4
    lengths = [3, 0, 6, 1, 0]
    nz = np.array([n > 0 for n in lengths])
    D = 2 if bidirectional else 1
    mod = make_module(cell, I, H, True, bidirectional)
    x, h0, c0, Ry, Rh, Rc = make_data(cell, T, B, I, H, D)
    ours = ours_run(impl, mod, cell, x, h0, c0, lengths, Ry, Rh, Rc)

    def sub(a, axis):
        return None if a is None else np.ascontiguousarray(np.compress(nz, a, axis))

    ref = torch_run(mod, cell, sub(x, 1), sub(h0, 1), sub(c0, 1),
                    [n for n in lengths if n], sub(Ry, 1), sub(Rh, 1), sub(Rc, 1))
    ours_sub = {k: (sub(v, 1) if k in ("y", "h_n", "c_n", "dx", "dh0", "dc0") else v)
                for k, v in ours.items()}
    assert_same(ours_sub, ref, RTOL64, ATOL64)

    z = ~nz
    assert np.all(ours["y"][:, z] == 0)
    assert np.all(ours["dx"][:, z] == 0)
    np.testing.assert_array_equal(ours["h_n"][:, z], h0[:, z])
    np.testing.assert_array_equal(ours["dh0"][:, z], Rh[:, z])
    if cell == "lstm":
        np.testing.assert_array_equal(ours["c_n"][:, z], c0[:, z])
        np.testing.assert_array_equal(ours["dc0"][:, z], Rc[:, z])


# ---------------------------------------------------------------------------
# float32 sanity
# ---------------------------------------------------------------------------

@pytest.mark.parametrize("impl", IMPLS)
@pytest.mark.parametrize("cell", CELLS)
def test_matches_torch_float32(impl, cell):
    T, B, I, H, lengths = 7, 5, 4, 6, [3, 7, 1, 5, 2]
    mod = make_module(cell, I, H, True, True, dtype=torch.float32)
    x, h0, c0, Ry, Rh, Rc = make_data(cell, T, B, I, H, 2, dtype=np.float32)
    for lens in (None, lengths):
        ref = torch_run(mod, cell, x, h0, c0, lens, Ry, Rh, Rc)
        ours = ours_run(impl, mod, cell, x, h0, c0, lens, Ry, Rh, Rc)
        assert ours["y"].dtype == np.float32
        assert_same(ours, ref, RTOL32, ATOL32)
