"""Bad input to the fastlstm.nn modules, cells and the stack core: clear errors."""

import numpy as np
import pytest

from fastlstm import _layers
from fastlstm.nn import GRU, LSTM, RNN, GRUCell, LSTMCell, RNNCell

F32, F64 = np.float32, np.float64


def _x(*shape, dtype=F32):
    return np.random.default_rng(0).standard_normal(shape).astype(dtype)


# ------------------------------------------------------------ constructors ---

@pytest.mark.parametrize("kwargs, exc, match", [
    (dict(input_size=0, hidden_size=4), ValueError, "input_size: expected an integer >= 1"),
    (dict(input_size=3, hidden_size=2.5), ValueError, "hidden_size: expected an integer"),
    (dict(input_size=3, hidden_size=4, num_layers=0), ValueError, "num_layers"),
    (dict(input_size=3, hidden_size=4, dropout=1.5), ValueError, r"dropout: .*\[0, 1\]"),
    (dict(input_size=3, hidden_size=4, bias="yes"), TypeError, "bias: expected True or False"),
    (dict(input_size=3, hidden_size=4, dtype=np.int32), TypeError, "dtype: expected"),
    (dict(input_size=3, hidden_size=4, dtype=np.float16), TypeError, "dtype: expected"),
])
def test_bad_constructor_args(kwargs, exc, match):
    with pytest.raises(exc, match=match):
        GRU(**kwargs)


def test_bad_nonlinearity():
    with pytest.raises(ValueError, match="nonlinearity: expected 'tanh' or 'relu'"):
        RNN(3, 4, nonlinearity="sigmoid")
    with pytest.raises(ValueError, match="nonlinearity"):
        RNNCell(3, 4, nonlinearity="gelu")


# ------------------------------------------------------------------ input ---

@pytest.mark.parametrize("cls", [LSTM, GRU, RNN])
def test_wrong_input_size(cls):
    m = cls(3, 4)
    with pytest.raises(ValueError, match=r"x: expected input size 3 .* got shape \(5, 2, 4\)"):
        m(_x(5, 2, 4))
    with pytest.raises(ValueError, match="x: expected a 3-D input"):
        m(_x(5, 2, 3, 1))


@pytest.mark.parametrize("cls", [LSTM, GRU, RNN])
def test_wrong_dtype(cls):
    m = cls(3, 4)  # float32
    with pytest.raises(TypeError, match=r"x: expected dtype float32 .* got float64.*astype"):
        m(_x(5, 2, 3, dtype=F64))
    with pytest.raises(TypeError, match="x: expected a numpy.ndarray"):
        m([[[1.0, 2.0, 3.0]]])
    m64 = cls(3, 4, dtype=F64)
    with pytest.raises(TypeError, match="x: expected dtype float64"):
        m64(_x(5, 2, 3).astype(np.int64))
    h0 = np.zeros((1, 2, 4), F64)
    hx = (h0, h0) if cls is LSTM else h0
    with pytest.raises(TypeError, match=r"hx.*expected dtype float32"):
        m(_x(5, 2, 3), hx)


def test_wrong_hx_shape():
    m = GRU(3, 4, num_layers=2, bidirectional=True, batch_first=True)
    x = _x(2, 5, 3)  # B=2, T=5
    with pytest.raises(ValueError, match=r"hx: expected shape \(num_layers\*num_directions, B, "
                                         r"H\).*= \(4, 2, 4\), got \(2, 4, 4\)"):
        m(x, np.zeros((2, 4, 4), F32))
    with pytest.raises(TypeError, match="hx: expected None or an array h_0 for a GRU"):
        m(x, (np.zeros((4, 2, 4), F32),))
    lstm = LSTM(3, 4)
    with pytest.raises(TypeError, match=r"hx: expected None or a pair \(h_0, c_0\)"):
        lstm(_x(5, 2, 3), np.zeros((1, 2, 4), F32))
    with pytest.raises(ValueError, match=r"hx\[1\] \(c_0\): expected shape .* = \(1, 2, 4\)"):
        lstm(_x(5, 2, 3), (np.zeros((1, 2, 4), F32), np.zeros((1, 2, 5), F32)))
    with pytest.raises(ValueError, match=r"hx: expected shape \(num_layers\*num_directions, H\) "
                                         r"for unbatched input"):
        RNN(3, 4)(_x(5, 3), np.zeros((1, 1, 4), F32))


def test_lengths_batch_first_mismatch():
    x = _x(2, 5, 3)  # meant as (B=2, T=5, I) but the module is not batch_first
    m = LSTM(3, 4)
    with pytest.raises(ValueError, match=r"lengths: expected shape \(B,\) = \(5,\), got \(2,\)"
                                         r".*batch_first=False, so the batch size B = 5"):
        m(x, lengths=[5, 3])
    mbf = LSTM(3, 4, batch_first=True)
    with pytest.raises(ValueError, match=r"lengths: expected shape \(B,\) = \(5,\), got \(2,\)"
                                         r".*batch_first=True, so the batch size B = 5"):
        mbf(_x(5, 2, 3), lengths=[2, 2])  # time-major data given to a batch_first module
    with pytest.raises(ValueError, match=r"lengths: every length must lie in \[0, T\] = \[0, 5\]"):
        mbf(x, lengths=[6, 2])
    with pytest.raises(TypeError, match="lengths: expected integers"):
        mbf(x, lengths=[2.5, 1.0])
    with pytest.raises(ValueError, match="unbatched input takes a single length"):
        m(_x(5, 3), lengths=[2, 3])


# --------------------------------------------------------------- backward ---

@pytest.mark.parametrize("cls", [LSTM, GRU, RNN])
def test_backward_before_forward_twice_and_in_eval(cls):
    m = cls(3, 4)
    x = _x(5, 2, 3)
    with pytest.raises(RuntimeError, match=rf"{cls.__name__}.backward: no forward pass"):
        m.backward(np.zeros((5, 2, 4), F32))
    out = m(x)[0]
    m.backward(out)
    with pytest.raises(RuntimeError, match="each forward supports one backward"):
        m.backward(out)
    m.eval()
    m(x)
    with pytest.raises(RuntimeError, match="eval mode"):
        m.backward(out)


def test_backward_bad_grads_keep_the_cache():
    m = LSTM(3, 4, num_layers=2, batch_first=True)
    out, (h_n, c_n) = m(_x(2, 5, 3))
    with pytest.raises(ValueError, match=r"d_output: expected the shape of the forward's "
                                         r"output \(2, 5, 4\), got \(5, 2, 4\)"):
        m.backward(np.zeros((5, 2, 4), F32))
    with pytest.raises(TypeError, match="d_output: expected dtype float32"):
        m.backward(out.astype(F64))
    with pytest.raises(ValueError, match=r"d_c_n: expected the shape of the forward's c_n"):
        m.backward(out, h_n, c_n[:1])
    dx, dh0, dc0 = m.backward(out, h_n, c_n)  # the cache survived the bad calls
    assert dx.shape == (2, 5, 3) and dh0.shape == dc0.shape == (2, 2, 4)


# ---------------------------------------------------------------- state dicts ---

def test_load_state_dict_rejects_bad_entries():
    m = GRU(3, 4, num_layers=2)
    good = m.state_dict()
    before = {k: v.copy() for k, v in good.items()}
    bad = dict(good)
    del bad["bias_hh_l1"]
    with pytest.raises(ValueError, match="missing keys: bias_hh_l1"):
        m.load_state_dict(bad)
    with pytest.raises(ValueError, match="unexpected keys: weight_ih_l2"):
        m.load_state_dict(dict(good, weight_ih_l2=np.zeros((12, 4))))
    shaped = dict(good, weight_hh_l1=np.zeros((12, 3)))
    shaped["weight_ih_l0"] = np.ones((12, 3))
    with pytest.raises(ValueError, match=r"state_dict\['weight_hh_l1'\]: expected shape "
                                         r"\(12, 4\), got \(12, 3\)"):
        m.load_state_dict(shaped)
    for k, v in m.state_dict().items():  # nothing changed on error
        np.testing.assert_array_equal(v, before[k])
    with pytest.raises(TypeError, match="expected real numbers"):
        m.load_state_dict(dict(good, bias_ih_l0=np.array(["a"] * 12)))
    with pytest.raises(TypeError, match="state_dict: expected a mapping"):
        m.load_state_dict([1, 2])
    # lists and other array-likes are converted and cast to the module's dtype
    m.load_state_dict({k: v.astype(F64).tolist() for k, v in good.items()})
    assert all(p.dtype == F32 for p in m.parameters().values())


def test_load_state_dict_torch_tensor_requiring_grad():
    torch = pytest.importorskip("torch")
    tc = torch.nn.GRUCell(3, 4)
    c = GRUCell(3, 4)
    with pytest.raises(TypeError, match=r"state_dict\['weight_ih'\]: cannot convert"):
        c.load_state_dict(dict(tc.named_parameters()))
    c.load_state_dict(tc.state_dict())


# ------------------------------------------------------------------ cells ---

def test_cell_bad_input():
    c = LSTMCell(3, 4)
    with pytest.raises(ValueError, match=r"x: expected input size 3 .* got shape \(2, 5\)"):
        c(_x(2, 5))
    with pytest.raises(ValueError, match=r"x: expected a 2-D input \(B, I\) or a 1-D"):
        c(_x(1, 2, 3))
    with pytest.raises(TypeError, match="x: expected dtype float32"):
        c(_x(2, 3, dtype=F64))
    with pytest.raises(TypeError, match=r"hx: expected None or a pair \(h, c\)"):
        c(_x(2, 3), np.zeros((2, 4), F32))
    with pytest.raises(ValueError, match=r"hx\[0\] \(h\): expected shape \(B, H\) = \(2, 4\)"):
        c(_x(2, 3), (np.zeros((3, 4), F32), np.zeros((2, 4), F32)))
    with pytest.raises(ValueError, match=r"hx\[1\] \(c\): expected shape \(H,\) for unbatched"):
        c(_x(3), (np.zeros(4, F32), np.zeros((1, 4), F32)))
    g = GRUCell(3, 4)
    with pytest.raises(ValueError, match=r"hx: expected shape \(B, H\) = \(2, 4\), got \(2, 5\)"):
        g(_x(2, 3), np.zeros((2, 5), F32))
    with pytest.raises(TypeError, match="hx: expected dtype float32"):
        g(_x(2, 3), np.zeros((2, 4), F64))
    with pytest.raises(TypeError, match="hx: expected None or an array h for an RNNCell"):
        RNNCell(3, 4)(_x(2, 3), (np.zeros((2, 4), F32),))


@pytest.mark.parametrize("cls", [LSTMCell, GRUCell, RNNCell])
def test_cell_backward_errors(cls):
    c = cls(3, 4)
    with pytest.raises(RuntimeError, match=rf"{cls.__name__}.backward: no forward step left"):
        c.backward(np.zeros((2, 4), F32))
    c(_x(2, 3))
    with pytest.raises(ValueError, match=r"d_h: expected shape \(B, H\) = \(2, 4\)"):
        c.backward(np.zeros((3, 4), F32))
    c.backward(np.zeros((2, 4), F32))  # the step survived the bad call
    with pytest.raises(RuntimeError, match="no forward step left"):
        c.backward(np.zeros((2, 4), F32))
    c(_x(2, 3))
    c.eval()
    with pytest.raises(RuntimeError, match="eval mode"):
        c.backward(np.zeros((2, 4), F32))


# ------------------------------------------------------ functional stack core ---

def test_stack_bad_arguments():
    params = {k: np.zeros(s, F64) for k, s in _layers.param_shapes("lstm", 3, 4, 2, True).items()}
    x = np.zeros((5, 2, 3), F64)
    kw = dict(num_layers=2, bidirectional=True, dropout=0.0, training=True, rng=None)
    with pytest.raises(ValueError, match="mode: expected one of"):
        _layers.stack_forward("elman", params, x, None, None, **kw)
    with pytest.raises(ValueError, match="missing weight_ih_l1_reverse"):
        _layers.stack_forward("lstm", {k: v for k, v in params.items()
                                       if k != "weight_ih_l1_reverse"}, x, None, None, **kw)
    with pytest.raises(TypeError, match=r"params\['bias_hh_l1'\]: expected dtype float64"):
        _layers.stack_forward("lstm", dict(params, bias_hh_l1=np.zeros(16, F32)), x, None,
                              None, **kw)
    with pytest.raises(ValueError, match=r"params\['weight_ih_l1'\]: expected shape \(16, 8\)"):
        _layers.stack_forward("lstm", dict(params, weight_ih_l1=np.zeros((16, 4))), x, None,
                              None, **kw)
    with pytest.raises(ValueError, match=r"x: expected a 3-D time-major array"):
        _layers.stack_forward("lstm", params, x[0], None, None, **kw)
    with pytest.raises(ValueError, match=r"hx\[0\] \(h0\): expected shape .* = \(4, 2, 4\)"):
        _layers.stack_forward("lstm", params, x, (np.zeros((2, 2, 4)), None), None, **kw)
    with pytest.raises(ValueError, match="rng: a numpy.random.Generator is needed"):
        _layers.stack_forward("lstm", params, x, None, None, **dict(kw, dropout=0.5))
    with pytest.raises(ValueError, match=r"dropout: expected a probability in \[0, 1\]"):
        _layers.stack_forward("lstm", params, x, None, None, **dict(kw, dropout=-0.1))
    with pytest.raises(TypeError, match="cache: expected the StackCache"):
        _layers.stack_backward(None)
    *_, cache = _layers.stack_forward("lstm", params, x, None, None, **kw)
    with pytest.raises(ValueError, match=r"d_h_n: expected shape \(num_layers\*num_directions"):
        _layers.stack_backward(cache, d_h_n=np.zeros((2, 2, 4)))
    gru = {k: np.zeros(s, F64) for k, s in _layers.param_shapes("gru", 3, 4, 1, False).items()}
    *_, cache = _layers.stack_forward("gru", gru, x, None, None, **dict(kw, num_layers=1,
                                                                        bidirectional=False))
    with pytest.raises(ValueError, match="d_c_n: only an LSTM has a cell state"):
        _layers.stack_backward(cache, d_c_n=np.zeros((1, 2, 4)))


def _error(fn):
    try:
        fn()
    except Exception as e:  # the exception type and message, to compare
        return type(e), str(e)
    raise AssertionError("no exception")


@pytest.mark.parametrize("cls", [LSTMCell, GRUCell, RNNCell])
def test_cell_bad_input_same_errors_in_eval_mode(cls):
    # eval mode runs steps through _core.cell_step, which leaves anything it
    # does not take to the checked path: the errors are those of training mode
    c = cls(3, 4)
    h, h64 = np.zeros((2, 4), F32), np.zeros((2, 4), F64)
    state = (lambda h: (h, h)) if cls is LSTMCell else (lambda h: h)
    calls = [
        lambda: c(_x(2, 5)),
        lambda: c(_x(1, 2, 3)),
        lambda: c(_x(2, 3, dtype=F64)),
        lambda: c(_x(2, 3).astype(">f4")),
        lambda: c([[0.0] * 3] * 2),
        lambda: c(_x(2, 3), state(h64)),
        lambda: c(_x(2, 3), state(np.zeros((3, 4), F32))),
        lambda: c(_x(2, 3), state(np.zeros((2, 5), F32))),
        lambda: c(_x(3), state(h)),
        lambda: c(_x(2, 3), state([[0.0] * 4] * 2)),
        lambda: c(_x(2, 3), (h,)),
        lambda: c(_x(2, 3), (h, h, h)),
    ]
    if cls is LSTMCell:
        calls += [lambda: c(_x(2, 3), h), lambda: c(_x(2, 3), (h, np.zeros((2, 4), F64)))]
    else:
        calls += [lambda: c(_x(2, 3), (h, h)), lambda: c(_x(2, 3), [h])]
    want = [_error(fn) for fn in calls]
    c.eval()
    assert [_error(fn) for fn in calls] == want
