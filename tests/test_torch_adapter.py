"""fastlstm.torch against torch.nn: the adapter modules must be drop-in replacements.

Each parity case builds a torch.nn module (float64), loads its state dict into
the fastlstm.torch twin and compares, on the loss ``sum_k (out_k * R_k).sum()``
over the output and the final states with fixed random R_k: outputs, h_n
(c_n), and the gradients of the input, the initial states and every
parameter, to 1e-9. Then PackedSequence, unbatched input, cells, dropout,
gradcheck, state dicts both ways, and bad input.
"""

import subprocess
import sys

import numpy as np
import pytest

torch = pytest.importorskip("torch")
nn = torch.nn
from torch.nn.utils.rnn import (PackedSequence, pack_padded_sequence,  # noqa: E402
                                pad_packed_sequence)

import fastlstm.torch as flt  # noqa: E402

F64 = torch.float64
RTOL, ATOL = 1e-9, 1e-10
KINDS = ["lstm", "gru", "rnn_tanh", "rnn_relu"]
TORCH_NETS = {"lstm": nn.LSTM, "gru": nn.GRU, "rnn": nn.RNN}
FL_NETS = {"lstm": flt.LSTM, "gru": flt.GRU, "rnn": flt.RNN}
TORCH_CELLS = {"lstm": nn.LSTMCell, "gru": nn.GRUCell, "rnn": nn.RNNCell}
FL_CELLS = {"lstm": flt.LSTMCell, "gru": flt.GRUCell, "rnn": flt.RNNCell}


# ---------------------------------------------------------------------------
# helpers
# ---------------------------------------------------------------------------

def _split(kind, kw):
    mode = kind[:3] if kind.startswith("rnn") else kind
    if mode == "rnn":
        kw = dict(kw, nonlinearity=kind[4:])
    return mode, kw


def make_nets(kind, I, H, dtype=F64, seed=0, **kw):
    """(torch.nn module, fastlstm.torch module with the torch module's state dict)."""
    mode, kw = _split(kind, kw)
    torch.manual_seed(seed)
    ref = TORCH_NETS[mode](I, H, dtype=dtype, **kw)
    torch.manual_seed(seed + 100)  # different init, then overwritten
    ours = FL_NETS[mode](I, H, dtype=dtype, **kw)
    ours.load_state_dict(ref.state_dict())
    return ref, ours


def make_cells(kind, I, H, dtype=F64, seed=0, **kw):
    mode, kw = _split(kind, kw)
    torch.manual_seed(seed)
    ref = TORCH_CELLS[mode](I, H, dtype=dtype, **kw)
    torch.manual_seed(seed + 100)
    ours = FL_CELLS[mode](I, H, dtype=dtype, **kw)
    ours.load_state_dict(ref.state_dict())
    return ref, ours


def randn(*shape, dtype=F64, seed=0, grad=True):
    g = torch.Generator().manual_seed(seed)
    return torch.randn(*shape, generator=g, dtype=dtype).requires_grad_(grad)


def flat_outputs(out, hidden):
    out = out.data if isinstance(out, PackedSequence) else out
    return [out] + (list(hidden) if isinstance(hidden, tuple) else [hidden])


def loss_and_grads(outs, leaves, seed=7):
    g = torch.Generator().manual_seed(seed)
    loss = sum((o * torch.randn(o.shape, generator=g, dtype=o.dtype)).sum() for o in outs)
    return torch.autograd.grad(loss, leaves)


def compare(ref, ours, call_ref, call_ours, leaves, rtol=RTOL, atol=ATOL):
    """Run both modules (call_*(module) -> (out, hidden)); compare outputs and all grads."""
    res_ref, res_ours = call_ref(ref), call_ours(ours)
    if isinstance(res_ref[0], PackedSequence):
        assert isinstance(res_ours[0], PackedSequence)
        for a, b in zip(res_ref[0][1:], res_ours[0][1:]):
            assert (a is None and b is None) or torch.equal(a, b)
    o_ref, o_ours = flat_outputs(*res_ref), flat_outputs(*res_ours)
    assert len(o_ref) == len(o_ours)
    for a, b in zip(o_ref, o_ours):
        assert a.shape == b.shape and a.dtype == b.dtype
        torch.testing.assert_close(b, a, rtol=rtol, atol=atol)
    g_ref = loss_and_grads(o_ref, list(leaves) + list(ref.parameters()))
    g_ours = loss_and_grads(o_ours, list(leaves) + list(ours.parameters()))
    for a, b in zip(g_ref, g_ours):
        torch.testing.assert_close(b, a, rtol=rtol, atol=atol)


def states(kind, LD, B, H, dtype=F64, seed=3, batched=True):
    shape = (LD, B, H) if batched else (LD, H)
    h0 = randn(*shape, dtype=dtype, seed=seed)
    if kind == "lstm":
        c0 = randn(*shape, dtype=dtype, seed=seed + 1)
        return (h0, c0), [h0, c0]
    return h0, [h0]


# ---------------------------------------------------------------------------
# parity with torch.nn
# ---------------------------------------------------------------------------

# (batch_first, bias, pass hx)
VARIANTS = [pytest.param(False, True, True, id="tm-bias-hx"),
            pytest.param(True, True, False, id="bf-bias-nohx"),
            pytest.param(True, False, True, id="bf-nobias-hx")]


@pytest.mark.parametrize("bf,bias,with_hx", VARIANTS)
@pytest.mark.parametrize("bidirectional", [False, True], ids=["uni", "bi"])
@pytest.mark.parametrize("num_layers", [1, 2, 3])
@pytest.mark.parametrize("kind", KINDS)
def test_parity(kind, num_layers, bidirectional, bf, bias, with_hx):
    T, B, I, H = 5, 3, 4, 6
    ref, ours = make_nets(kind, I, H, num_layers=num_layers, bidirectional=bidirectional,
                          batch_first=bf, bias=bias)
    x = randn(*((B, T, I) if bf else (T, B, I)))
    leaves = [x]
    hx = None
    if with_hx:
        hx, hl = states(kind[:4].rstrip("_"), num_layers * (2 if bidirectional else 1), B, H)
        leaves += hl
    compare(ref, ours, lambda m: m(x, hx), lambda m: m(x, hx), leaves)


@pytest.mark.parametrize("num_layers,bidirectional", [(1, False), (2, True)])
@pytest.mark.parametrize("with_hx", [False, True], ids=["nohx", "hx"])
@pytest.mark.parametrize("kind", KINDS)
def test_parity_unbatched(kind, num_layers, bidirectional, with_hx):
    T, I, H = 6, 3, 5
    for bf in (False, True):  # batch_first makes no difference to unbatched input
        ref, ours = make_nets(kind, I, H, num_layers=num_layers, bidirectional=bidirectional,
                              batch_first=bf)
        x = randn(T, I)
        leaves, hx = [x], None
        if with_hx:
            hx, hl = states(kind[:4].rstrip("_"), num_layers * (1 + bidirectional), None, H,
                            batched=False)
            leaves += hl
        compare(ref, ours, lambda m: m(x, hx), lambda m: m(x, hx), leaves)
        out, hidden = ours(x, hx)
        assert out.shape == (T, (1 + bidirectional) * H)


@pytest.mark.parametrize("enforce_sorted", [False, True], ids=["unsorted", "sorted"])
@pytest.mark.parametrize("num_layers,bidirectional", [(1, False), (1, True), (2, True)])
@pytest.mark.parametrize("kind", KINDS)
def test_parity_packed(kind, num_layers, bidirectional, enforce_sorted):
    """PackedSequence in and out: data, batch_sizes, indices, h_n in the caller's order."""
    I, H = 3, 4
    lengths = [7, 5, 5, 2, 1] if enforce_sorted else [3, 7, 1, 5, 2]
    T, B = max(lengths), len(lengths)
    kind_mode = kind[:4].rstrip("_")
    for bf in (False, True):  # the module's batch_first does not apply to packed input
        ref, ours = make_nets(kind, I, H, num_layers=num_layers, bidirectional=bidirectional,
                              batch_first=bf)
        x = randn(T, B, I)
        hx, hl = states(kind_mode, num_layers * (1 + bidirectional), B, H)

        def pack():  # a fresh graph for each run
            return pack_padded_sequence(x, torch.tensor(lengths), enforce_sorted=enforce_sorted)

        compare(ref, ours, lambda m: m(pack(), hx), lambda m: m(pack(), hx), [x] + hl)
        compare(ref, ours, lambda m: m(pack()), lambda m: m(pack()), [x])
    out, _ = ours(pack(), hx)
    padded, out_lengths = pad_packed_sequence(out)
    assert out_lengths.tolist() == lengths
    assert padded.shape == (T, B, (1 + bidirectional) * H)


def test_parity_float32():
    ref, ours = make_nets("lstm", 4, 8, dtype=torch.float32, num_layers=2,
                          bidirectional=True)
    x = randn(6, 3, 4, dtype=torch.float32)
    compare(ref, ours, lambda m: m(x), lambda m: m(x), [x], rtol=1e-4, atol=1e-5)
    out, (h, c) = ours(x)
    assert out.dtype == h.dtype == c.dtype == torch.float32


def test_parity_eval_and_no_grad():
    ref, ours = make_nets("gru", 3, 4, num_layers=2, dropout=0.5)
    ref.eval()
    ours.eval()
    x = randn(5, 2, 3)
    compare(ref, ours, lambda m: m(x), lambda m: m(x), [x])
    with torch.no_grad():
        out, h = ours(x)
        out_ref, h_ref = ref(x)
    assert out.grad_fn is None and not out.requires_grad
    torch.testing.assert_close(out, out_ref, rtol=RTOL, atol=ATOL)
    torch.testing.assert_close(h, h_ref, rtol=RTOL, atol=ATOL)


def test_dropout_one_matches_torch():
    """dropout=1 zeroes every layer output but the last, deterministically, in both."""
    ref, ours = make_nets("lstm", 3, 4, num_layers=3, dropout=1.0, bidirectional=True)
    x = randn(5, 2, 3)
    compare(ref, ours, lambda m: m(x), lambda m: m(x), [x])


def test_dropout_reproducible_with_manual_seed():
    _, ours = make_nets("lstm", 3, 8, num_layers=3, dropout=0.5)
    x = randn(6, 4, 3)

    def run(seed):
        torch.manual_seed(seed)
        out, (h, c) = ours(x)
        return [out, h, c] + list(loss_and_grads([out, h, c], [x] + list(ours.parameters())))

    a, b, c = run(1), run(1), run(2)
    for u, v in zip(a, b):
        assert torch.equal(u, v)
    assert not torch.equal(a[0], c[0])
    ours.eval()
    out_eval, _ = ours(x)
    assert not torch.allclose(a[0], out_eval)
    ours.train()
    torch.manual_seed(1)
    with torch.no_grad():  # training mode applies dropout with or without autograd
        out_ng, _ = ours(x)
    torch.testing.assert_close(out_ng, a[0], rtol=0, atol=0)


def test_same_init_as_torch_with_manual_seed():
    for mode, kw in [("lstm", dict(num_layers=2, bidirectional=True)), ("gru", {}),
                     ("rnn", dict(nonlinearity="relu", bias=False))]:
        torch.manual_seed(11)
        ref = TORCH_NETS[mode](3, 5, **kw)
        torch.manual_seed(11)
        ours = FL_NETS[mode](3, 5, **kw)
        for (n1, p1), (n2, p2) in zip(ref.named_parameters(), ours.named_parameters()):
            assert n1 == n2 and torch.equal(p1, p2)
        torch.manual_seed(12)
        ref = TORCH_CELLS[mode](3, 5)
        torch.manual_seed(12)
        ours = FL_CELLS[mode](3, 5)
        for p1, p2 in zip(ref.parameters(), ours.parameters()):
            assert torch.equal(p1, p2)


# ---------------------------------------------------------------------------
# cells
# ---------------------------------------------------------------------------

@pytest.mark.parametrize("batched", [True, False], ids=["batched", "unbatched"])
@pytest.mark.parametrize("bias", [True, False], ids=["bias", "nobias"])
@pytest.mark.parametrize("kind", KINDS)
def test_cell_parity(kind, bias, batched):
    """Three steps of a cell unrolled by hand, from a given state and from None."""
    I, H, B = 4, 5, 3
    ref, ours = make_cells(kind, I, H, bias=bias)
    mode = kind[:4].rstrip("_")
    xs = [randn(*((B, I) if batched else (I,)), seed=s) for s in range(3)]
    hshape = (B, H) if batched else (H,)
    h0 = randn(*hshape, seed=10)
    c0 = randn(*hshape, seed=11)

    def unroll(cell, start):
        hx, outs = start, []
        for x in xs:
            hx = cell(x, hx)
            outs += list(hx) if mode == "lstm" else [hx]
        return outs

    for start, leaves in [((h0, c0) if mode == "lstm" else h0, [h0, c0][:1 + (mode == "lstm")]),
                          (None, [])]:
        o_ref, o_ours = unroll(ref, start), unroll(ours, start)
        for a, b in zip(o_ref, o_ours):
            assert a.shape == b.shape
            torch.testing.assert_close(b, a, rtol=RTOL, atol=ATOL)
        g_ref = loss_and_grads(o_ref, xs + leaves + list(ref.parameters()))
        g_ours = loss_and_grads(o_ours, xs + leaves + list(ours.parameters()))
        for a, b in zip(g_ref, g_ours):
            torch.testing.assert_close(b, a, rtol=RTOL, atol=ATOL)


# ---------------------------------------------------------------------------
# gradcheck (float64)
# ---------------------------------------------------------------------------

def _gradcheck_net(mod, x, hx_leaves, packed_lengths=None, seed=None):
    names = [n for n, _ in mod.named_parameters()]
    params = [p.detach().clone().requires_grad_(True) for p in mod.parameters()]
    lstm = isinstance(mod, nn.LSTM)

    def f(x, *rest):
        hs, ps = rest[:len(hx_leaves)], rest[len(hx_leaves):]
        hx = (tuple(hs) if lstm else hs[0]) if hs else None
        inp = x if packed_lengths is None else pack_padded_sequence(
            x, packed_lengths, enforce_sorted=False)
        if seed is not None:
            torch.manual_seed(seed)
        out, hidden = torch.func.functional_call(mod, dict(zip(names, ps)), (inp, hx))
        return tuple(flat_outputs(out, hidden))

    assert torch.autograd.gradcheck(f, (x, *hx_leaves, *params), eps=1e-6, atol=1e-7)


@pytest.mark.parametrize("kind", KINDS)
def test_gradcheck_one_layer(kind):
    _, ours = make_nets(kind, 2, 3, seed=1)
    _, hl = states(kind[:4].rstrip("_"), 1, 2, 3)
    _gradcheck_net(ours, randn(3, 2, 2), hl)


@pytest.mark.parametrize("kind", ["lstm", "gru", "rnn_tanh"])
def test_gradcheck_two_layer_bidirectional(kind):
    _, ours = make_nets(kind, 2, 2, seed=2, num_layers=2, bidirectional=True,
                        batch_first=True)
    _, hl = states(kind[:4].rstrip("_"), 4, 3, 2)
    _gradcheck_net(ours, randn(3, 3, 2), hl)


def test_gradcheck_packed_and_dropout():
    _, ours = make_nets("lstm", 2, 2, seed=3, num_layers=2, bidirectional=True)
    _, hl = states("lstm", 4, 3, 2)
    _gradcheck_net(ours, randn(4, 3, 2), hl, packed_lengths=torch.tensor([2, 4, 1]))
    _, ours = make_nets("gru", 2, 3, seed=4, num_layers=3, dropout=0.4)
    _gradcheck_net(ours, randn(3, 2, 2), [], seed=5)


@pytest.mark.parametrize("kind", KINDS)
def test_gradcheck_cells(kind):
    _, cell = make_cells(kind, 3, 2, seed=5)
    mode = kind[:4].rstrip("_")
    names = [n for n, _ in cell.named_parameters()]
    params = [p.detach().clone().requires_grad_(True) for p in cell.parameters()]
    states_ = [randn(2, 2, seed=20 + i) for i in range(1 + (mode == "lstm"))]

    def f(x, *rest):
        hs, ps = rest[:len(states_)], rest[len(states_):]
        hx = tuple(hs) if mode == "lstm" else hs[0]
        out = torch.func.functional_call(cell, dict(zip(names, ps)), (x, hx))
        return out

    assert torch.autograd.gradcheck(f, (randn(2, 3), *states_, *params), eps=1e-6,
                                    atol=1e-7)


# ---------------------------------------------------------------------------
# modules, parameters and state dicts
# ---------------------------------------------------------------------------

def test_modules_are_torch_modules():
    m = flt.LSTM(3, 4, num_layers=2, bidirectional=True, bias=False)
    ref = nn.LSTM(3, 4, num_layers=2, bidirectional=True, bias=False)
    assert isinstance(m, nn.Module) and isinstance(m, nn.LSTM)
    assert [n for n, _ in m.named_parameters()] == [n for n, _ in ref.named_parameters()]
    assert all(isinstance(p, nn.Parameter) for p in m.parameters())
    assert isinstance(m.weight_ih_l1_reverse, nn.Parameter)
    assert m.weight_ih_l1_reverse.shape == (16, 8)
    assert list(m.state_dict()) == list(ref.state_dict())
    assert repr(m) == repr(ref)
    assert m.weight_ih_l0.dtype == torch.float32
    assert flt.GRU(2, 3, dtype=torch.float64).weight_hh_l0.dtype == torch.float64
    c = flt.RNNCell(3, 4, bias=False, nonlinearity="relu")
    assert isinstance(c, nn.RNNCell) and c.bias_ih is None and c.nonlinearity == "relu"
    assert repr(c) == repr(nn.RNNCell(3, 4, bias=False, nonlinearity="relu"))
    # positional arguments in torch's order
    r = flt.RNN(3, 4, 2, "relu", False, True, 0.0, True)
    assert (r.num_layers, r.nonlinearity, r.bias, r.batch_first, r.bidirectional) == \
        (2, "relu", False, True, True)


@pytest.mark.parametrize("mode", ["lstm", "gru", "rnn"])
def test_state_dict_both_ways(mode):
    kw = dict(num_layers=2, bidirectional=True)
    x = randn(4, 2, 3, grad=False)
    # fastlstm -> torch
    torch.manual_seed(0)
    ours = FL_NETS[mode](3, 5, dtype=F64, **kw)
    ref = TORCH_NETS[mode](3, 5, dtype=F64, **kw)
    ref.load_state_dict(ours.state_dict())
    torch.testing.assert_close(ours(x)[0], ref(x)[0], rtol=RTOL, atol=ATOL)
    # torch -> fastlstm
    ref2 = TORCH_NETS[mode](3, 5, dtype=F64, **kw)
    ours.load_state_dict(ref2.state_dict())
    torch.testing.assert_close(ours(x)[0], ref2(x)[0], rtol=RTOL, atol=ATOL)
    # cells
    cell, cref = FL_CELLS[mode](3, 5), TORCH_CELLS[mode](3, 5)
    cref.load_state_dict(cell.state_dict())
    cell.load_state_dict(cref.state_dict())
    assert list(cell.state_dict()) == list(cref.state_dict())


def test_drop_in_replacement_in_a_model():
    """A model written for nn.LSTM trains identically with the adapter swapped in."""

    class Model(nn.Module):
        def __init__(self, rnn_cls):
            super().__init__()
            self.rnn = rnn_cls(3, 6, num_layers=2, batch_first=True, bidirectional=True)
            self.head = nn.Linear(12, 1)

        def forward(self, x):
            out, (h, c) = self.rnn(x)
            return self.head(out[:, -1]).squeeze(-1)

    x, y = randn(8, 5, 3, grad=False).float(), randn(8, seed=1, grad=False).float()
    models = []
    for cls in (nn.LSTM, flt.LSTM):
        torch.manual_seed(0)
        m = Model(cls)
        for _ in range(3):  # plain SGD (torch.optim would import torch._dynamo: slow)
            m.zero_grad()
            torch.nn.functional.mse_loss(m(x), y).backward()
            with torch.no_grad():
                for p in m.parameters():
                    p -= 0.1 * p.grad
        models.append(m)
    for p, q in zip(models[0].parameters(), models[1].parameters()):
        torch.testing.assert_close(q, p, rtol=1e-4, atol=1e-5)


def test_zero_copy(monkeypatch):
    """Contiguous tensors reach the kernels as NumPy views of their own memory."""
    from fastlstm import _layers
    seen = {}
    real = _layers.stack_forward

    def spy(mode, params, x, *a, **kw):
        seen.update(params=params, x=x)
        return real(mode, params, x, *a, **kw)

    monkeypatch.setattr(_layers, "stack_forward", spy)
    m = flt.LSTM(3, 4, num_layers=2)
    x = torch.randn(5, 2, 3)
    m(x)
    assert np.shares_memory(seen["x"], x.numpy())
    for n, p in m.named_parameters():
        assert np.shares_memory(seen["params"][n], p.detach().numpy()), n


def test_non_contiguous_weights_and_copies():
    """Strided parameters work; deepcopy and pickling keep the class and the weights."""
    import copy
    import io
    ref, ours = make_nets("gru", 3, 4, num_layers=2, bidirectional=True)
    for m in (ref, ours):
        w = m.weight_hh_l1_reverse.detach()
        m.weight_hh_l1_reverse = nn.Parameter(w.t().contiguous().t())  # Fortran order
        assert not m.weight_hh_l1_reverse.is_contiguous()
    x = randn(4, 2, 3)
    compare(ref, ours, lambda m: m(x), lambda m: m(x), [x])
    buf = io.BytesIO()
    torch.save(ours, buf)
    buf.seek(0)
    for clone in (copy.deepcopy(ours), torch.load(buf, weights_only=False)):
        assert type(clone) is flt.GRU
        torch.testing.assert_close(clone(x)[0], ours(x)[0], rtol=0, atol=0)


def test_inplace_change_before_backward_is_refused():
    m = flt.GRU(3, 4)
    x = torch.randn(5, 2, 3, requires_grad=True)
    out, _ = m(x)
    with torch.no_grad():
        m.weight_hh_l0.add_(1.0)
    with pytest.raises(RuntimeError, match="modified by an inplace operation"):
        out.sum().backward()


def test_double_backward_is_refused():
    m = flt.LSTM(2, 3)
    x = torch.randn(4, 2, 2, requires_grad=True)
    out, _ = m(x)
    (g,) = torch.autograd.grad((out ** 2).sum(), x, create_graph=True)
    with pytest.raises(RuntimeError, match="once_differentiable|differentiate twice"):
        g.sum().backward()


def test_partial_outputs_and_retain_graph():
    """Unused outputs get no gradient; the graph can be backpropagated twice."""
    ref, ours = make_nets("lstm", 3, 4, num_layers=2)
    x = randn(5, 2, 3)
    for m in (ref, ours):
        _, (h, _) = m(x)
        h.sum().backward(retain_graph=True)
        h.sum().backward()
    torch.testing.assert_close(ours.weight_ih_l0.grad, ref.weight_ih_l0.grad, rtol=RTOL,
                               atol=ATOL)


def test_import_fastlstm_does_not_import_torch():
    code = "import sys, fastlstm; assert 'torch' not in sys.modules, 'torch imported'"
    subprocess.run([sys.executable, "-c", code], check=True)


# ---------------------------------------------------------------------------
# bad input
# ---------------------------------------------------------------------------

def test_error_proj_size():
    with pytest.raises(NotImplementedError, match="proj_size"):
        flt.LSTM(4, 8, proj_size=2)
    m = flt.LSTM(4, 8)
    m.proj_size = 3
    with pytest.raises(NotImplementedError, match="proj_size"):
        m(torch.randn(2, 1, 4))


def test_error_cuda_and_half():
    with pytest.raises(NotImplementedError, match="CPU"):
        flt.LSTM(4, 8, device="cuda")
    with pytest.raises(NotImplementedError, match="CPU"):
        flt.GRUCell(4, 8, device="cuda:0")
    with pytest.raises(NotImplementedError, match="half precision"):
        flt.GRU(4, 8, dtype=torch.float16)
    with pytest.raises(NotImplementedError, match="half precision"):
        flt.RNNCell(4, 8, dtype=torch.bfloat16)
    # a tensor on another device (meta stands in for CUDA on a CPU-only machine)
    m = flt.LSTM(4, 8)
    with pytest.raises(NotImplementedError, match="CPU tensors only.*meta"):
        m(torch.empty(3, 2, 4, device="meta"))
    meta = flt.GRU(4, 8, device="meta")
    with pytest.raises(NotImplementedError, match="CPU tensors only"):
        meta(torch.randn(3, 2, 4))
    with pytest.raises(NotImplementedError, match="half precision"):
        m(torch.randn(3, 2, 4).half())
    with pytest.raises(NotImplementedError, match="half precision"):
        flt.LSTM(4, 8).bfloat16()(torch.randn(3, 2, 4).bfloat16())
    with pytest.raises(NotImplementedError, match="half precision"):
        flt.LSTMCell(4, 8).half()(torch.randn(2, 4).half())
    with pytest.raises(TypeError, match="float32 or float64"):
        flt.GRU(4, 8, dtype=torch.int32)


def test_error_dtypes():
    m = flt.LSTM(4, 8)  # float32
    with pytest.raises(ValueError, match="does not match the parameters' dtype"):
        m(torch.randn(3, 2, 4, dtype=F64))
    with pytest.raises(TypeError, match="float32 or float64"):
        m(torch.ones(3, 2, 4, dtype=torch.int64))
    h = torch.zeros(1, 2, 8, dtype=F64)
    with pytest.raises(ValueError, match="dtype"):
        m(torch.randn(3, 2, 4), (h, h.float()))
    m.weight_hh_l0.data = m.weight_hh_l0.data.double()
    with pytest.raises(ValueError, match="mixed dtypes"):
        m(torch.randn(3, 2, 4))
    with pytest.raises(ValueError, match="does not match"):
        flt.GRUCell(4, 8)(torch.randn(2, 4, dtype=F64))


def test_error_shapes():
    m = flt.LSTM(4, 8, num_layers=2)
    x = torch.randn(3, 2, 4)
    with pytest.raises(RuntimeError, match="input_size. Expected 4, got 5"):
        m(torch.randn(3, 2, 5))
    with pytest.raises(ValueError, match="2D or 3D"):
        m(torch.randn(3, 2, 4, 1))
    h = torch.zeros(2, 2, 8)
    with pytest.raises(RuntimeError, match=r"hidden\[0\] size \(2, 2, 8\), got \[1, 2, 8\]"):
        m(x, (torch.zeros(1, 2, 8), h))
    with pytest.raises(RuntimeError, match=r"hidden\[1\] size \(2, 2, 8\), got \[2, 3, 8\]"):
        m(x, (h, torch.zeros(2, 3, 8)))
    with pytest.raises(TypeError, match="tuple"):
        m(x, h)
    with pytest.raises(RuntimeError, match="3-D"):
        m(x, (h[:, 0], h[:, 0]))
    with pytest.raises(RuntimeError, match="unbatched 2-D input"):
        m(x[:, 0], (h, h))
    with pytest.raises(TypeError, match="PackedSequence"):
        m(x.numpy())
    g = flt.GRU(4, 8)
    with pytest.raises(TypeError, match="tensor h_0"):
        g(x, (torch.zeros(1, 2, 8),))
    with pytest.raises(RuntimeError, match=r"hidden size \(1, 2, 8\), got \[1, 2, 7\]"):
        g(x, torch.zeros(1, 2, 7))
    with pytest.raises(RuntimeError, match=r"hidden size \(1, 5, 8\)"):
        g(pack_padded_sequence(torch.randn(3, 5, 4), [3, 3, 2, 1, 1]), torch.zeros(1, 2, 8))


def test_error_cells():
    c = flt.LSTMCell(4, 8)
    with pytest.raises(RuntimeError, match="input_size: got 5 expected 4"):
        c(torch.randn(2, 5))
    with pytest.raises(ValueError, match="1D or 2D"):
        c(torch.randn(1, 2, 4))
    with pytest.raises(TypeError, match="tuple"):
        c(torch.randn(2, 4), torch.zeros(2, 8))
    with pytest.raises(RuntimeError, match=r"size \(2, 8\), got \[3, 8\]"):
        c(torch.randn(2, 4), (torch.zeros(3, 8), torch.zeros(3, 8)))
    with pytest.raises(RuntimeError, match="unbatched"):
        c(torch.randn(4), (torch.zeros(2, 8), torch.zeros(2, 8)))
    g = flt.GRUCell(4, 8)
    with pytest.raises(ValueError, match="1D or 2D"):
        g(torch.randn(2, 4), torch.zeros(1, 2, 8))
    with pytest.raises(TypeError, match="tensor"):
        g(torch.randn(2, 4), (torch.zeros(2, 8),))
    with pytest.raises(ValueError, match="nonlinearity"):
        flt.RNNCell(4, 8, nonlinearity="sigmoid")
    with pytest.raises(ValueError, match="nonlinearity"):
        flt.RNN(4, 8, nonlinearity="sigmoid")
