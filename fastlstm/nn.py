"""NumPy recurrent modules with torch.nn's interface, on the fastlstm kernels.

``LSTM``, ``GRU`` and ``RNN`` mirror torch.nn.LSTM / GRU / RNN (multi-layer,
bidirectional, batch_first, dropout between layers, unbatched input) and add
``lengths`` for PackedSequence semantics; ``LSTMCell``, ``GRUCell`` and
``RNNCell`` mirror the torch cells. Parameters are NumPy arrays under torch's
names, so state dicts move between the two unchanged. Gradients come from an
explicit ``backward`` call instead of autograd:

    m = LSTM(8, 16, num_layers=2, dtype=np.float64, seed=0)
    out, (h_n, c_n) = m(x)                  # training mode keeps a cache
    dx, dh0, dc0 = m.backward(d_out)        # adds parameter grads to m.grads
    for k, p in m.parameters().items():
        p -= 0.1 * m.grads[k]
    m.zero_grad()

The multi-layer logic is the functional ``fastlstm._layers`` core.
"""

import numbers
import warnings

import numpy as np

from . import _checks, _core, _layers
from . import _fast as _default_impl

__all__ = ["LSTM", "GRU", "RNN", "LSTMCell", "GRUCell", "RNNCell"]

_FLOATS = (np.dtype(np.float32), np.dtype(np.float64))


# ---------------------------------------------------------------- helpers ---

def _int_arg(name, v, minimum):
    if isinstance(v, bool) or not isinstance(v, numbers.Integral) or v < minimum:
        raise ValueError(f"{name}: expected an integer >= {minimum}, got {v!r}")
    return int(v)


def _dtype_arg(dtype):
    try:
        dt = np.dtype(dtype)
    except TypeError:
        dt = None
    if dt not in _FLOATS:
        raise TypeError(f"dtype: expected numpy.float32 or numpy.float64, got {dtype!r}")
    return dt


def _nonlinearity_arg(v):
    if v not in ("tanh", "relu"):
        raise ValueError(f"nonlinearity: expected 'tanh' or 'relu', got {v!r}")
    return v


def _array_arg(name, v, dtype):
    """v must be an ndarray of exactly `dtype` (no silent casts)."""
    if not isinstance(v, np.ndarray):
        raise TypeError(f"{name}: expected a numpy.ndarray of dtype {dtype}, got "
                        f"{_checks._type_name(v)}")
    if v.dtype != dtype:
        hint = ""
        if v.dtype in _FLOATS:
            hint = f"; convert it with .astype(numpy.{dtype})"
            if name == "x":
                hint += f" or build the module with dtype=numpy.{v.dtype}"
        raise TypeError(f"{name}: expected dtype {dtype} (the module's dtype), got "
                        f"{v.dtype}{hint}")
    return v


def _shape_arg(name, v, shape, what):
    if v.shape != shape:
        raise ValueError(f"{name}: expected shape {what} = {shape}, got {v.shape}")
    return v


# ------------------------------------------------------------ common base ---

class _Module:
    """Parameters, gradients, train/eval mode and state dicts shared by all modules."""

    def __init__(self, dtype, seed):
        self.dtype = _dtype_arg(dtype)
        self.training = True
        self._rng = np.random.default_rng(seed)
        self._impl = _default_impl
        k = 1.0 / np.sqrt(self.hidden_size)
        self._params = {name: self._rng.uniform(-k, k, shape).astype(self.dtype)
                        for name, shape in self._param_shapes().items()}
        self.grads = {name: np.zeros_like(p) for name, p in self._params.items()}

    # subclasses provide
    def _param_shapes(self):  # pragma: no cover - abstract
        raise NotImplementedError

    def _config(self):  # pragma: no cover - abstract
        """The constructor arguments (without dtype and seed), as a dict."""
        raise NotImplementedError

    @staticmethod
    def _defaults():  # pragma: no cover - abstract
        """The constructor's default arguments, left out of repr()."""
        raise NotImplementedError

    # ---- mode ----
    def train(self, mode=True):
        """Set training mode (forward keeps a cache for backward); returns self."""
        self.training = _checks._bool("mode", mode)
        return self

    def eval(self):
        """Set evaluation mode (no cache, no dropout); returns self."""
        return self.train(False)

    # ---- parameters ----
    def parameters(self):
        """dict name -> parameter array, in torch's order.

        The arrays are the module's own: update them in place (``p -= lr *
        g``) to train. Assigning new arrays to the dict does not change the
        module; use ``load_state_dict`` for that.
        """
        return dict(self._params)

    def state_dict(self):
        """dict name -> copy of each parameter array, in torch's order."""
        return {k: v.copy() for k, v in self._params.items()}

    def load_state_dict(self, state_dict):
        """Copy parameters from a mapping of name -> array-like (e.g. a torch state dict).

        Every value goes through ``numpy.asarray`` and is cast to the module's
        dtype; the keys must be exactly the module's parameter names and the
        shapes must match. On any error nothing is changed. Returns None.
        """
        if not hasattr(state_dict, "keys") or not hasattr(state_dict, "__getitem__"):
            raise TypeError("state_dict: expected a mapping of parameter names to arrays, "
                            f"got {_checks._type_name(state_dict)}")
        mismatch = _checks.key_mismatch(self._params, list(state_dict.keys()),
                                        "missing keys:", "unexpected keys:")
        if mismatch:
            raise ValueError(f"state_dict: does not match {self!r} ({mismatch})")
        new = {}
        for k, target in self._params.items():
            try:
                v = np.asarray(state_dict[k])
            except Exception as e:  # e.g. a torch tensor that requires grad
                raise TypeError(f"state_dict[{k!r}]: cannot convert "
                                f"{_checks._type_name(state_dict[k])} to a numpy array "
                                f"({e})") from None
            if v.dtype.kind not in "fiu":
                raise TypeError(f"state_dict[{k!r}]: expected real numbers, got dtype {v.dtype}")
            if v.shape != target.shape:
                raise ValueError(f"state_dict[{k!r}]: expected shape {target.shape}, "
                                 f"got {v.shape}")
            new[k] = v
        for k, v in new.items():
            np.copyto(self._params[k], v, casting="unsafe")

    # ---- gradients ----
    def zero_grad(self):
        """Reset every accumulated parameter gradient in ``grads`` to zero."""
        for g in self.grads.values():
            g.fill(0)

    def _accumulate(self, grads):
        for k, g in grads.items():
            if g is not None:
                self.grads[k] += g

    def __repr__(self):
        cfg = self._config()
        args = [str(cfg.pop("input_size")), str(cfg.pop("hidden_size"))]
        defaults = self._defaults()
        args += [f"{k}={v!r}" for k, v in cfg.items() if defaults.get(k) != v]
        if self.dtype != np.float32:
            args.append(f"dtype={self.dtype.name}")
        return f"{type(self).__name__}({', '.join(args)})"


# ------------------------------------------------------- multi-layer nets ---

class _RNNBase(_Module):
    """Multi-layer (bidirectional) recurrent network; see LSTM, GRU and RNN."""

    mode = None  # "lstm", "gru" or "rnn"

    def __init__(self, input_size, hidden_size, num_layers=1, bias=True, batch_first=False,
                 dropout=0.0, bidirectional=False, *, nonlinearity="tanh", dtype=np.float32,
                 seed=None):
        self.input_size = _int_arg("input_size", input_size, 1)
        self.hidden_size = _int_arg("hidden_size", hidden_size, 1)
        self.num_layers = _int_arg("num_layers", num_layers, 1)
        self.bias = _checks._bool("bias", bias)
        self.batch_first = _checks._bool("batch_first", batch_first)
        if isinstance(dropout, bool) or not isinstance(dropout, numbers.Real) \
                or not 0.0 <= dropout <= 1.0:
            raise ValueError(f"dropout: expected a probability in [0, 1], got {dropout!r}")
        self.dropout = float(dropout)
        self.bidirectional = _checks._bool("bidirectional", bidirectional)
        self.nonlinearity = _nonlinearity_arg(nonlinearity)
        if self.dropout > 0 and self.num_layers == 1:
            warnings.warn("dropout is applied between recurrent layers only (not after the "
                          f"last), so dropout={self.dropout} with num_layers=1 has no effect",
                          UserWarning, stacklevel=3)
        self._cache = None
        super().__init__(dtype, seed)

    @property
    def num_directions(self):
        return 2 if self.bidirectional else 1

    def _param_shapes(self):
        return _layers.param_shapes(self.mode, self.input_size, self.hidden_size,
                                    self.num_layers, self.bidirectional, self.bias)

    def _config(self):
        return dict(input_size=self.input_size, hidden_size=self.hidden_size,
                    num_layers=self.num_layers, bias=self.bias, batch_first=self.batch_first,
                    dropout=self.dropout, bidirectional=self.bidirectional)

    @staticmethod
    def _defaults():
        return dict(num_layers=1, bias=True, batch_first=False, dropout=0.0,
                    bidirectional=False, nonlinearity="tanh")

    # ---- forward ----
    def _check_state(self, name, v, B, unbatched):
        """A (L*D, B, H) state, or (L*D, H) for unbatched input -> 3-D view."""
        if v is None:
            return None
        LD, H = self.num_layers * self.num_directions, self.hidden_size
        _array_arg(name, v, self.dtype)
        if unbatched:
            _shape_arg(name, v, (LD, H), "(num_layers*num_directions, H) for unbatched input")
            return v[:, None, :]
        what = "(num_layers*num_directions, B, H)"
        if self.batch_first:
            what += " (states are not batch-first, as in torch)"
        return _shape_arg(name, v, (LD, B, H), what)

    def __call__(self, x, hx=None, lengths=None):
        """Run the network; see the class docstring. Same as ``forward``."""
        return self.forward(x, hx, lengths)

    def forward(self, x, hx=None, lengths=None):
        """Run the network over a whole sequence (see the class docstring)."""
        _array_arg("x", x, self.dtype)
        bf = self.batch_first
        if x.ndim not in (2, 3):
            raise ValueError(f"x: expected a 3-D input {'(B, T, I)' if bf else '(T, B, I)'} "
                             f"or a 2-D unbatched input (T, I), got shape {x.shape}")
        if x.shape[-1] != self.input_size:
            raise ValueError(f"x: expected input size {self.input_size} on the last axis, "
                             f"got shape {x.shape}")
        unbatched = x.ndim == 2
        if unbatched:
            xt = x[:, None, :]
        else:
            xt = x.transpose(1, 0, 2) if bf else x
        T, B = xt.shape[:2]

        if self.mode == "lstm":
            if hx is not None:
                if not isinstance(hx, (tuple, list)) or len(hx) != 2:
                    raise TypeError("hx: expected None or a pair (h_0, c_0) for an LSTM, got "
                                    f"{_checks._type_name(hx)}")
                hx = (self._check_state("hx[0] (h_0)", hx[0], B, unbatched),
                      self._check_state("hx[1] (c_0)", hx[1], B, unbatched))
        else:
            if isinstance(hx, (tuple, list)):
                raise TypeError(f"hx: expected None or an array h_0 for a {type(self).__name__}, "
                                f"got a {type(hx).__name__}")
            hx = self._check_state("hx", hx, B, unbatched)

        if lengths is not None:
            if unbatched:
                if np.ndim(lengths) == 0 and not isinstance(lengths, (str, bytes)):
                    lengths = [lengths]
                hint = " (unbatched input takes a single length)"
            else:
                hint = (f" (x has shape {x.shape} with batch_first={bf}, so the batch size "
                        f"B = {B} and the sequence length T = {T})")
            try:
                lengths = _checks.check_lengths(lengths, T, B)
            except ValueError as e:
                raise ValueError(str(e) + hint) from None

        out, h_n, c_n, cache = _layers.stack_forward(
            self.mode, self._params, xt, hx, lengths, num_layers=self.num_layers,
            bidirectional=self.bidirectional, dropout=self.dropout, training=self.training,
            rng=self._rng, nonlinearity=self.nonlinearity, impl=self._impl)

        if unbatched:
            out, h_n = out[:, 0, :], h_n[:, 0, :]
            c_n = None if c_n is None else c_n[:, 0, :]
        elif bf:
            out = np.ascontiguousarray(out.transpose(1, 0, 2))
        self._cache = None
        if self.training:
            self._cache = (cache, unbatched, bf, out.shape, h_n.shape)
        return (out, (h_n, c_n)) if self.mode == "lstm" else (out, h_n)

    # ---- backward ----
    def _backward(self, d_output, d_h_n, d_c_n):
        if not self.training:
            raise RuntimeError(f"{type(self).__name__}.backward: the module is in eval mode, "
                               "which keeps no cache; call .train() and run a forward first")
        if self._cache is None:
            raise RuntimeError(f"{type(self).__name__}.backward: no forward pass to "
                               "backpropagate through; run a training-mode forward first "
                               "(each forward supports one backward)")
        cache, unbatched, bf, out_shape, state_shape = self._cache
        if d_output is not None:
            _array_arg("d_output", d_output, self.dtype)
            if d_output.shape != out_shape:
                raise ValueError(f"d_output: expected the shape of the forward's output "
                                 f"{out_shape}, got {d_output.shape}")
            if unbatched:
                d_output = d_output[:, None, :]
            elif bf:
                d_output = d_output.transpose(1, 0, 2)
        states = []
        for name, v in (("d_h_n", d_h_n), ("d_c_n", d_c_n)):
            if v is not None:
                _array_arg(name, v, self.dtype)
                if v.shape != state_shape:
                    raise ValueError(f"{name}: expected the shape of the forward's "
                                     f"{name[2:]} {state_shape}, got {v.shape}")
                if unbatched:
                    v = v[:, None, :]
            states.append(v)
        self._cache = None
        dx, dh0, dc0, grads = _layers.stack_backward(cache, d_output, *states)
        self._accumulate(grads)
        if unbatched:
            dx, dh0 = dx[:, 0, :], dh0[:, 0, :]
            dc0 = None if dc0 is None else dc0[:, 0, :]
        elif bf:
            dx = np.ascontiguousarray(dx.transpose(1, 0, 2))
        return dx, dh0, dc0


_NET_DOC = """{title}, with torch.nn.{name}'s constructor, call and parameters.

    {name}(input_size, hidden_size, num_layers=1, {nl}bias=True, batch_first=False,
    dropout=0.0, bidirectional=False, *, dtype=numpy.float32, seed=None)

    Parameters are initialised U(-1/sqrt(hidden_size), 1/sqrt(hidden_size))
    from ``numpy.random.default_rng(seed)``, which then draws the dropout
    masks. ``dropout`` zeroes features of every layer's output but the last
    in training mode (inverted dropout, as in torch).

    ``m(x, hx=None, lengths=None)`` returns {returns}.
    x: (T, B, I), or (B, T, I) with batch_first, or unbatched (T, I); of the
    module's dtype (no implicit casts). hx: {hx} (L*D, B, H), or (L*D, H) for
    unbatched input; None for zeros. lengths: None or B integers in [0, T]
    (a single one for unbatched input): PackedSequence semantics in every
    layer and direction (output is zero at padded steps and keeps all T
    steps, as ``pad_packed_sequence(..., total_length=T)``; h_n is each
    sequence's state after its last valid step). output: (T, B, D*H), or (B, T, D*H) with
    batch_first, or (T, D*H) unbatched; h_n{cn}: (L*D, B, H), or (L*D, H).

    In training mode (the default; ``train()`` / ``eval()``) the forward keeps
    a cache for one ``backward({bargs})``, which returns {bret} (the gradients
    of the input and initial state{s}, in the shapes of x and hx) and adds the
    parameter gradients to ``grads``; None upstream gradients mean zeros.
    ``backward`` must follow the forward it differentiates, with the
    parameters unchanged in between.
"""


class LSTM(_RNNBase):
    mode = "lstm"

    def __init__(self, input_size, hidden_size, num_layers=1, bias=True, batch_first=False,
                 dropout=0.0, bidirectional=False, *, dtype=np.float32, seed=None):
        super().__init__(input_size, hidden_size, num_layers, bias, batch_first, dropout,
                         bidirectional, dtype=dtype, seed=seed)

    def backward(self, d_output, d_h_n=None, d_c_n=None):
        """Backpropagate the last training-mode forward; returns (dx, dh0, dc0)."""
        return self._backward(d_output, d_h_n, d_c_n)


class GRU(_RNNBase):
    mode = "gru"

    def __init__(self, input_size, hidden_size, num_layers=1, bias=True, batch_first=False,
                 dropout=0.0, bidirectional=False, *, dtype=np.float32, seed=None):
        super().__init__(input_size, hidden_size, num_layers, bias, batch_first, dropout,
                         bidirectional, dtype=dtype, seed=seed)

    def backward(self, d_output, d_h_n=None):
        """Backpropagate the last training-mode forward; returns (dx, dh0)."""
        dx, dh0, _ = self._backward(d_output, d_h_n, None)
        return dx, dh0


class RNN(_RNNBase):
    mode = "rnn"

    def __init__(self, input_size, hidden_size, num_layers=1, nonlinearity="tanh", bias=True,
                 batch_first=False, dropout=0.0, bidirectional=False, *, dtype=np.float32,
                 seed=None):
        super().__init__(input_size, hidden_size, num_layers, bias, batch_first, dropout,
                         bidirectional, nonlinearity=nonlinearity, dtype=dtype, seed=seed)

    def _config(self):
        cfg = super()._config()
        cfg["nonlinearity"] = self.nonlinearity
        return cfg

    def backward(self, d_output, d_h_n=None):
        """Backpropagate the last training-mode forward; returns (dx, dh0)."""
        dx, dh0, _ = self._backward(d_output, d_h_n, None)
        return dx, dh0


LSTM.__doc__ = _NET_DOC.format(
    title="Multi-layer LSTM", name="LSTM", nl="", cn=", c_n",
    returns="(output, (h_n, c_n))", hx="a pair (h_0, c_0), each",
    bargs="d_output, d_h_n=None, d_c_n=None", bret="(dx, dh0, dc0)", s="s")
GRU.__doc__ = _NET_DOC.format(
    title="Multi-layer GRU", name="GRU", nl="", cn="",
    returns="(output, h_n)", hx="h_0", bargs="d_output, d_h_n=None", bret="(dx, dh0)", s="")
RNN.__doc__ = _NET_DOC.format(
    title="Multi-layer Elman RNN (tanh or relu)", name="RNN", nl='nonlinearity="tanh", ',
    cn="", returns="(output, h_n)", hx="h_0", bargs="d_output, d_h_n=None",
    bret="(dx, dh0)", s="")


# ------------------------------------------------------------------ cells ---

class _CellBase(_Module):
    """One time step of a recurrent cell; see LSTMCell, GRUCell and RNNCell."""

    mode = None
    _GATES = _layers.MODES

    def __init__(self, input_size, hidden_size, bias=True, *, nonlinearity="tanh",
                 dtype=np.float32, seed=None):
        self.input_size = _int_arg("input_size", input_size, 1)
        self.hidden_size = _int_arg("hidden_size", hidden_size, 1)
        self.bias = _checks._bool("bias", bias)
        self.nonlinearity = _nonlinearity_arg(nonlinearity)
        self._stack = []
        super().__init__(dtype, seed)
        self._bind_impl(self._impl)
        # for _core.cell_step (an RNN's code is picked by its nonlinearity there)
        self._code = _core.CELLS["rnn_tanh" if self.mode == "rnn" else self.mode]
        self._typenum = self.dtype.num

    def _bind_impl(self, impl):
        """Use the kernel functions of `impl` (a module like fastlstm or fastlstm.reference)."""
        self._impl = impl
        self._kfwd = getattr(impl, f"{self.mode}_forward")
        self._kbwd = getattr(impl, f"{self.mode}_backward")

    def _param_shapes(self):
        G, H = self._GATES[self.mode], self.hidden_size
        shapes = {"weight_ih": (G * H, self.input_size), "weight_hh": (G * H, H)}
        if self.bias:
            shapes.update(bias_ih=(G * H,), bias_hh=(G * H,))
        return shapes

    def _config(self):
        return dict(input_size=self.input_size, hidden_size=self.hidden_size, bias=self.bias)

    @staticmethod
    def _defaults():
        return dict(bias=True, nonlinearity="tanh")

    def __call__(self, x, hx=None):
        """One step; see the class docstring. Same as ``forward``."""
        if not self.training and self._impl is _default_impl:
            # inference on the C kernels: cell_step checks every array at C level
            # (the parameters too, on each call) and runs the step if all are
            # as it needs them; anything else (bad input included) it leaves to
            # the checked path below, which gives the errors
            out = _core.cell_step(self._code, self.nonlinearity, self._typenum,
                                  self.input_size, self.hidden_size, x, hx, self._params)
            if out is not None:
                return out
        return self._call(x, hx)

    forward = __call__

    def clear_cache(self):
        """Drop the stack of training-mode steps not yet backpropagated."""
        self._stack.clear()

    def _input(self, x):
        """x (B, I) or unbatched (I,) -> ((1, B, I) view, unbatched)."""
        if type(x) is not np.ndarray or x.dtype != self.dtype:
            _array_arg("x", x, self.dtype)
        if x.ndim == 2 and x.shape[1] == self.input_size:
            return x[None], False
        if x.ndim == 1 and x.shape[0] == self.input_size:
            return x[None, None], True
        if x.ndim not in (1, 2):
            raise ValueError(f"x: expected a 2-D input (B, I) or a 1-D unbatched input (I,), "
                             f"got shape {x.shape}")
        raise ValueError(f"x: expected input size {self.input_size} on the last axis, "
                         f"got shape {x.shape}")

    def _state(self, name, v, B, unbatched):
        """A (B, H) state, or (H,) when unbatched -> (B, H)."""
        if type(v) is not np.ndarray or v.dtype != self.dtype:
            _array_arg(name, v, self.dtype)
        if unbatched:
            if v.shape != (self.hidden_size,):
                _shape_arg(name, v, (self.hidden_size,), "(H,) for unbatched input")
            return v[None]
        if v.shape != (B, self.hidden_size):
            _shape_arg(name, v, (B, self.hidden_size), "(B, H)")
        return v

    def _step(self, x, h0, c0):
        """Run the kernel for one step; returns (h', c' or None) of x's layout."""
        x3, unbatched = self._input(x)
        B = x3.shape[1]
        if h0 is not None:
            h0 = self._state(self._hname, h0, B, unbatched)
        if c0 is not None:
            c0 = self._state("hx[1] (c)", c0, B, unbatched)
        p = self._params
        if self.mode == "lstm":
            _, h, c, cache = self._kfwd(x3, p["weight_ih"], p["weight_hh"], p.get("bias_ih"),
                                        p.get("bias_hh"), h0=h0, c0=c0,
                                        training=self.training)
        else:
            _, h, cache = self._kfwd(x3, p["weight_ih"], p["weight_hh"], p.get("bias_ih"),
                                     p.get("bias_hh"), h0=h0, training=self.training,
                                     **({"nonlinearity": self.nonlinearity}
                                        if self.mode == "rnn" else {}))
            c = None
        if cache is not None:
            self._stack.append((cache, unbatched, B))
        if unbatched:
            h = h[0]
            c = None if c is None else c[0]
        return h, c

    def _backward(self, d_h, d_c):
        name = type(self).__name__
        if not self.training:
            raise RuntimeError(f"{name}.backward: the cell is in eval mode, which keeps no "
                               "cache; call .train() and run the forward steps first")
        if not self._stack:
            raise RuntimeError(f"{name}.backward: no forward step left to backpropagate "
                               "through; each training-mode call supports one backward, "
                               "in reverse order")
        cache, unbatched, B = self._stack[-1]
        if d_h is not None:
            d_h = self._state("d_h", d_h, B, unbatched)
        if d_c is not None:
            d_c = self._state("d_c", d_c, B, unbatched)
        self._stack.pop()
        if self.mode == "lstm":
            g = self._kbwd(cache, dh_n=d_h, dc_n=d_c)
            dx, dh0, dc0 = g.dx[0], g.dh0, g.dc0
        else:
            g = self._kbwd(cache, dh_n=d_h)
            dx, dh0, dc0 = g.dx[0], g.dh0, None
        grads = self.grads
        grads["weight_ih"] += g.dw_ih
        grads["weight_hh"] += g.dw_hh
        if g.db_ih is not None:
            grads["bias_ih"] += g.db_ih
            grads["bias_hh"] += g.db_hh
        if unbatched:
            dx, dh0 = dx[0], dh0[0]
            dc0 = None if dc0 is None else dc0[0]
        return dx, dh0, dc0


_CELL_DOC = """{title}, with torch.nn.{name}'s constructor, call and parameters.

    {name}(input_size, hidden_size, bias=True, {nl}*, dtype=numpy.float32, seed=None)

    Parameters ``weight_ih`` ({g}, I), ``weight_hh`` ({g}, H), ``bias_ih``,
    ``bias_hh`` ({g},), initialised U(-1/sqrt(H), 1/sqrt(H)) from
    ``numpy.random.default_rng(seed)``.

    ``cell(x, hx=None)`` returns {returns}: x (B, I) or unbatched (I,), of the
    module's dtype; hx: {hx} of shape (B, H) (or (H,)), None for zeros. One
    call is one trip into the C kernels (T = 1).

    In training mode each call pushes its cache on a stack and
    ``backward({bargs})`` pops the most recent one, so a cell unrolled over
    steps is backpropagated step by step in reverse order. It returns
    {bret} (the gradients of x and of the step's incoming state{s}) and adds
    the parameter gradients to ``grads``; a None upstream gradient means
    zeros. ``clear_cache()`` drops steps that will not be backpropagated.
"""


class LSTMCell(_CellBase):
    mode = "lstm"
    _hname = "hx[0] (h)"

    def __init__(self, input_size, hidden_size, bias=True, *, dtype=np.float32, seed=None):
        super().__init__(input_size, hidden_size, bias, dtype=dtype, seed=seed)

    def _call(self, x, hx):
        """One LSTM step: returns (h', c')."""
        if hx is None:
            return self._step(x, None, None)
        if not isinstance(hx, (tuple, list)) or len(hx) != 2:
            raise TypeError("hx: expected None or a pair (h, c) for an LSTMCell, got "
                            f"{_checks._type_name(hx)}")
        return self._step(x, hx[0], hx[1])

    def backward(self, d_h, d_c=None):
        """Backpropagate the most recent step; returns (dx, dh_prev, dc_prev)."""
        return self._backward(d_h, d_c)


class GRUCell(_CellBase):
    mode = "gru"
    _hname = "hx"

    def __init__(self, input_size, hidden_size, bias=True, *, dtype=np.float32, seed=None):
        super().__init__(input_size, hidden_size, bias, dtype=dtype, seed=seed)

    def _call(self, x, hx):
        """One GRU step: returns h'."""
        if isinstance(hx, (tuple, list)):
            raise TypeError(f"hx: expected None or an array h for a GRUCell, got a "
                            f"{type(hx).__name__}")
        return self._step(x, hx, None)[0]

    def backward(self, d_h):
        """Backpropagate the most recent step; returns (dx, dh_prev)."""
        return self._backward(d_h, None)[:2]


class RNNCell(_CellBase):
    mode = "rnn"
    _hname = "hx"

    def __init__(self, input_size, hidden_size, bias=True, nonlinearity="tanh", *,
                 dtype=np.float32, seed=None):
        super().__init__(input_size, hidden_size, bias, nonlinearity=nonlinearity,
                         dtype=dtype, seed=seed)

    def _config(self):
        cfg = super()._config()
        cfg["nonlinearity"] = self.nonlinearity
        return cfg

    def _call(self, x, hx):
        """One RNN step: returns h'."""
        if isinstance(hx, (tuple, list)):
            raise TypeError(f"hx: expected None or an array h for an RNNCell, got a "
                            f"{type(hx).__name__}")
        return self._step(x, hx, None)[0]

    def backward(self, d_h):
        """Backpropagate the most recent step; returns (dx, dh_prev)."""
        return self._backward(d_h, None)[:2]


LSTMCell.__doc__ = _CELL_DOC.format(
    title="LSTM cell", name="LSTMCell", nl="", g="4*H", returns="(h', c')",
    hx="a pair (h, c), each", bargs="d_h, d_c=None", bret="(dx, dh_prev, dc_prev)", s="s")
GRUCell.__doc__ = _CELL_DOC.format(
    title="GRU cell", name="GRUCell", nl="", g="3*H", returns="h'", hx="h",
    bargs="d_h", bret="(dx, dh_prev)", s="")
RNNCell.__doc__ = _CELL_DOC.format(
    title="Elman RNN cell (tanh or relu)", name="RNNCell", nl='nonlinearity="tanh", ',
    g="H", returns="h'", hx="h", bargs="d_h", bret="(dx, dh_prev)", s="")
