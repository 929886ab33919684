"""PyTorch adapter: drop-in torch.nn recurrent modules running the fastlstm kernels.

``LSTM``, ``GRU``, ``RNN``, ``LSTMCell``, ``GRUCell`` and ``RNNCell`` subclass
their torch.nn namesakes, so they take the same constructor arguments, register
the same ``nn.Parameter``s under the same names (state dicts move both ways
unchanged), initialise them the same way (``torch.manual_seed(s)`` gives the
weights torch.nn would), and accept and return the same things: tensors or
PackedSequence, ``batch_first``, ``bidirectional``, ``num_layers``,
``dropout``, initial states and unbatched input. Only ``forward`` differs: it
runs the fastlstm C kernels inside a ``torch.autograd.Function`` (one for the
whole multi-layer stack, one per step for the cells), so autograd, optimizers
and ``DistributedDataParallel`` work as usual::

    import fastlstm.torch as flt
    model.rnn = flt.LSTM(64, 128, num_layers=2, batch_first=True)   # was nn.LSTM

Tensors are handed to the kernels without copies when they are contiguous CPU
float32 / float64 tensors. What the kernels cannot run -- CUDA (any non-CPU)
tensors, half precision, ``proj_size > 0`` -- raises ``NotImplementedError``
saying so. Gradients are first order only (no double backward), and the
modules cannot be compiled by TorchScript. Dropout masks come from a NumPy
generator seeded from torch's global RNG, so ``torch.manual_seed`` makes
training runs reproducible (the masks differ from torch.nn's own).

This module needs PyTorch (``pip install fastlstm[torch]``); ``import
fastlstm`` alone never imports it.
"""

import numbers

import numpy as np
import torch
from torch import nn
from torch.autograd.function import once_differentiable
from torch.nn.utils.rnn import PackedSequence, pack_padded_sequence, pad_packed_sequence

from . import _fast, _layers

__all__ = ["LSTM", "GRU", "RNN", "LSTMCell", "GRUCell", "RNNCell"]

_FLOATS = (torch.float32, torch.float64)
_HALF = (torch.float16, torch.bfloat16)


# ---------------------------------------------------------------- helpers ---

def _np(t):
    """The NumPy view of a CPU tensor (no copy); None stays None."""
    return None if t is None else t.detach().numpy()


def _autocast_on():
    f = getattr(torch._C, "_is_any_autocast_enabled", None)
    return bool(f()) if f is not None else False


def _check_factory(owner, device, dtype):
    """Constructor device / dtype: the kernels run CPU float32 / float64 only."""
    if device is not None and torch.device(device).type not in ("cpu", "meta"):
        raise NotImplementedError(
            f"{owner}: fastlstm runs on CPU tensors only, got device={device!r}; use "
            f"torch.nn.{owner} for {torch.device(device).type} tensors")
    if dtype is not None:
        if dtype in _HALF:
            raise NotImplementedError(
                f"{owner}: fastlstm supports float32 and float64 only, not half precision "
                f"(got dtype={dtype})")
        if dtype not in _FLOATS:
            raise TypeError(f"{owner}: dtype must be float32 or float64, "
                            f"got {dtype!r}")


def _check_tensor(owner, name, t, dtype=None):
    """t must be a strided CPU float32/float64 tensor (of `dtype` when given)."""
    if not isinstance(t, torch.Tensor):
        raise TypeError(f"{owner}: {name} must be a torch.Tensor, got {type(t).__name__}")
    if t.device.type != "cpu":
        raise NotImplementedError(
            f"{owner}: fastlstm runs on CPU tensors only, but {name} is on device "
            f"{t.device}; move it with .cpu(), or use torch.nn.{owner} for "
            f"{t.device.type} tensors")
    if t.layout != torch.strided:
        raise TypeError(f"{owner}: {name} must be a dense (strided) tensor, got layout "
                        f"{t.layout}")
    if t.dtype in _HALF:
        raise NotImplementedError(
            f"{owner}: fastlstm supports float32 and float64 only, not half precision; "
            f"{name} has dtype {t.dtype} (convert with .float())")
    if t.dtype not in _FLOATS:
        raise TypeError(f"{owner}: {name} must be a float32 or float64 tensor, got dtype "
                        f"{t.dtype}")
    if dtype is not None and t.dtype != dtype:
        raise ValueError(f"{owner}: {name} has dtype {t.dtype} but the input has dtype "
                         f"{dtype}; all tensors of one call must share one dtype")
    return t


def _check_weights(owner, names, weights):
    """All parameters on CPU with one supported dtype; returns that dtype."""
    dtype = None
    for n, w in zip(names, weights):
        _check_tensor(owner, f"parameter {n}", w)
        if dtype is None:
            dtype = w.dtype
        elif w.dtype != dtype:
            raise ValueError(f"{owner}: parameters of mixed dtypes ({names[0]} is {dtype}, "
                             f"{n} is {w.dtype}); convert the module with .float() or "
                             ".double()")
    return dtype


def _input_dtype(owner, x, wdtype, what="input"):
    """Check the input against the parameters' dtype (cast under autocast, as torch)."""
    if isinstance(x, torch.Tensor) and x.dtype != wdtype and x.is_floating_point() \
            and x.device.type == "cpu" and _autocast_on():
        x = x.to(wdtype)
    _check_tensor(owner, what, x)
    if x.dtype != wdtype:
        raise ValueError(f"{owner}: {what} dtype ({x.dtype}) does not match the parameters' "
                         f"dtype ({wdtype}); convert the input with .to({wdtype}) or the "
                         f"module with .to({x.dtype})")
    return x


def _state(owner, name, v, dtype, shape):
    """A state tensor of `dtype` and exactly `shape`."""
    if isinstance(v, torch.Tensor) and v.dtype != dtype and v.is_floating_point() \
            and v.device.type == "cpu" and _autocast_on():
        v = v.to(dtype)
    _check_tensor(owner, name, v, dtype)
    if tuple(v.shape) != tuple(shape):
        raise RuntimeError(f"{owner}: Expected {name} size {tuple(shape)}, got "
                           f"{list(v.shape)}")
    return v


def _tensors(arrays, needed):
    return [torch.from_numpy(a) if (n and a is not None) else None
            for a, n in zip(arrays, needed)]


# ------------------------------------------------- the stack's autograd op ---

class _Spec:
    """Non-tensor arguments of one stack call."""

    __slots__ = ("mode", "names", "num_layers", "bidirectional", "dropout", "seed",
                 "nonlinearity", "grad_enabled")

    def __init__(self, **kw):
        for k, v in kw.items():
            setattr(self, k, v)


class _StackFunction(torch.autograd.Function):
    """(output, h_n[, c_n]) of a time-major stack; inputs spec, lengths, x, h0, c0, *weights."""

    @staticmethod
    def forward(ctx, spec, lengths, x, h0, c0, *weights):
        ctx.set_materialize_grads(False)
        need_grad = spec.grad_enabled and any(ctx.needs_input_grad[2:])
        use_dropout = spec.seed is not None
        params = dict(zip(spec.names, map(_np, weights)))
        xn = _np(x)
        if not xn.flags.c_contiguous:   # e.g. batch_first: copy once, not once per direction
            xn = np.ascontiguousarray(xn)
        h0n, c0n = _np(h0), _np(c0)
        hx = (h0n, c0n) if spec.mode == "lstm" else h0n
        rng = np.random.default_rng(spec.seed) if use_dropout else None
        out, h_n, c_n, cache = _layers.stack_forward(
            spec.mode, params, xn, hx, lengths, num_layers=spec.num_layers,
            bidirectional=spec.bidirectional, dropout=spec.dropout if use_dropout else 0.0,
            training=need_grad or use_dropout, rng=rng, nonlinearity=spec.nonlinearity,
            impl=_fast)
        ctx.spec = spec
        ctx.cache = cache if need_grad else None
        if need_grad:
            # autograd then refuses the backward if any of these changed in place,
            # since the cache reads their memory
            ctx.save_for_backward(x, h0, c0, *weights)
        if spec.mode == "lstm":
            return torch.from_numpy(out), torch.from_numpy(h_n), torch.from_numpy(c_n)
        return torch.from_numpy(out), torch.from_numpy(h_n)

    @staticmethod
    @once_differentiable
    def backward(ctx, d_out, d_h_n, d_c_n=None):
        ctx.saved_tensors  # noqa: B018 -- raises if an input was modified in place
        spec = ctx.spec
        dx, dh0, dc0, grads = _layers.stack_backward(ctx.cache, _np(d_out), _np(d_h_n),
                                                     _np(d_c_n))
        need = ctx.needs_input_grad
        return (None, None, *_tensors([dx, dh0, dc0], need[2:5]),
                *_tensors([grads[n] for n in spec.names], need[5:]))


# ------------------------------------------------------- multi-layer nets ---

class _StackMixin:
    """forward() of fastlstm's LSTM / GRU / RNN; the rest is torch.nn.RNNBase's."""

    _fl_mode = None

    def forward(self, input, hx=None):  # noqa: A002 -- torch's argument name
        owner = type(self).__name__
        mode = self._fl_mode
        lstm = mode == "lstm"
        if getattr(self, "proj_size", 0):
            raise NotImplementedError(f"{owner}: fastlstm does not implement proj_size > 0 "
                                      f"(got proj_size={self.proj_size})")
        names = list(self._flat_weights_names)
        weights = [getattr(self, n) for n in names]
        wdtype = _check_weights(owner, names, weights)
        D = 2 if self.bidirectional else 1
        LD, H = self.num_layers * D, self.hidden_size

        packed = isinstance(input, PackedSequence)
        unbatched = False
        if packed:
            data, batch_sizes, sorted_indices, unsorted_indices = input
            data = _input_dtype(owner, data, wdtype, "input.data")
            if data.dim() != 2:
                raise RuntimeError(f"{owner}: a PackedSequence's data must have 2 dimensions, "
                                   f"got {data.dim()}")
            # padded, time-major, in the packed (length-sorted) batch order
            x, lengths_t = pad_packed_sequence(PackedSequence(data, batch_sizes))
            B = x.shape[1]
            lengths = lengths_t.numpy()
        else:
            if not isinstance(input, torch.Tensor):
                raise TypeError(f"{owner}: input must be a torch.Tensor or a PackedSequence, "
                                f"got {type(input).__name__}")
            input = _input_dtype(owner, input, wdtype)
            if input.dim() not in (2, 3):
                raise ValueError(f"{owner}: Expected input to be 2D or 3D, got "
                                 f"{input.dim()}D instead")
            unbatched = input.dim() == 2
            if unbatched:
                x = input.unsqueeze(1)
            else:
                x = input.transpose(0, 1) if self.batch_first else input
            B = x.shape[1]
            lengths = None
        if x.shape[2] != self.input_size:
            raise RuntimeError(f"{owner}: input.size(-1) must be equal to input_size. "
                               f"Expected {self.input_size}, got {x.shape[2]}")

        h0 = c0 = None
        if hx is not None:
            if lstm:
                if not isinstance(hx, (tuple, list)) or len(hx) != 2:
                    raise TypeError(f"{owner}: hx must be None or a tuple (h_0, c_0) of "
                                    f"tensors, got {type(hx).__name__}")
                h0, c0 = hx
                states = [("hidden[0]", h0), ("hidden[1]", c0)]
            else:
                if not isinstance(hx, torch.Tensor):
                    raise TypeError(f"{owner}: hx must be None or a tensor h_0, got "
                                    f"{type(hx).__name__}")
                states = [("hidden", hx)]
            checked = []
            for name, v in states:
                if not isinstance(v, torch.Tensor):
                    raise TypeError(f"{owner}: {name} must be a torch.Tensor, got "
                                    f"{type(v).__name__}")
                if unbatched:
                    if v.dim() != 2:
                        raise RuntimeError(f"{owner}: For unbatched 2-D input, {name} should "
                                           f"also be 2-D but got {v.dim()}-D tensor")
                    v = v.unsqueeze(1)
                elif v.dim() != 3:
                    raise RuntimeError(f"{owner}: For batched 3-D input, {name} should also "
                                       f"be 3-D but got {v.dim()}-D tensor")
                v = _state(owner, name, v, wdtype, (LD, B, H))
                if packed and sorted_indices is not None:
                    v = v.index_select(1, sorted_indices)
                checked.append(v)
            h0 = checked[0]
            c0 = checked[1] if lstm else None

        seed = None
        if self.training and self.dropout > 0 and self.num_layers > 1:
            seed = int(torch.randint(0, 2 ** 63 - 1, ()).item())
        spec = _Spec(mode=mode, names=names, num_layers=self.num_layers,
                     bidirectional=bool(self.bidirectional), dropout=float(self.dropout),
                     seed=seed, nonlinearity=getattr(self, "nonlinearity", "tanh"),
                     grad_enabled=torch.is_grad_enabled())
        res = _StackFunction.apply(spec, lengths, x, h0, c0, *weights)
        out, hidden = res[0], ((res[1], res[2]) if lstm else res[1])

        if packed:
            out = PackedSequence(pack_padded_sequence(out, lengths_t).data, batch_sizes,
                                 sorted_indices, unsorted_indices)
            if unsorted_indices is not None:
                hidden = (tuple(h.index_select(1, unsorted_indices) for h in hidden) if lstm
                          else hidden.index_select(1, unsorted_indices))
            return out, hidden
        if unbatched:
            out = out.squeeze(1)
            hidden = tuple(h.squeeze(1) for h in hidden) if lstm else hidden.squeeze(1)
        elif self.batch_first:
            out = out.transpose(0, 1)
        return out, hidden


class LSTM(_StackMixin, nn.LSTM):
    """torch.nn.LSTM on the fastlstm kernels (no proj_size; CPU float32/float64).

    Same constructor, parameters, state dict and ``forward(input, hx=None) ->
    (output, (h_n, c_n))`` as torch.nn.LSTM; see the module docstring.
    """

    _fl_mode = "lstm"

    def __init__(self, input_size, hidden_size, num_layers=1, bias=True, batch_first=False,
                 dropout=0.0, bidirectional=False, proj_size=0, device=None, dtype=None):
        _check_factory(type(self).__name__, device, dtype)
        if isinstance(proj_size, numbers.Integral) and proj_size > 0:
            raise NotImplementedError(
                f"{type(self).__name__}: fastlstm does not implement LSTMs with projections "
                f"(proj_size={proj_size}); use torch.nn.LSTM for proj_size > 0")
        super().__init__(input_size, hidden_size, num_layers=num_layers, bias=bias,
                         batch_first=batch_first, dropout=dropout,
                         bidirectional=bidirectional, proj_size=proj_size, device=device,
                         dtype=dtype)


class GRU(_StackMixin, nn.GRU):
    """torch.nn.GRU on the fastlstm kernels (CPU float32/float64).

    Same constructor, parameters, state dict and ``forward(input, hx=None) ->
    (output, h_n)`` as torch.nn.GRU; see the module docstring.
    """

    _fl_mode = "gru"

    def __init__(self, input_size, hidden_size, num_layers=1, bias=True, batch_first=False,
                 dropout=0.0, bidirectional=False, device=None, dtype=None):
        _check_factory(type(self).__name__, device, dtype)
        super().__init__(input_size, hidden_size, num_layers=num_layers, bias=bias,
                         batch_first=batch_first, dropout=dropout,
                         bidirectional=bidirectional, device=device, dtype=dtype)


class RNN(_StackMixin, nn.RNN):
    """torch.nn.RNN (tanh or relu) on the fastlstm kernels (CPU float32/float64).

    Same constructor, parameters, state dict and ``forward(input, hx=None) ->
    (output, h_n)`` as torch.nn.RNN; see the module docstring.
    """

    _fl_mode = "rnn"

    def __init__(self, input_size, hidden_size, num_layers=1, nonlinearity="tanh", bias=True,
                 batch_first=False, dropout=0.0, bidirectional=False, device=None,
                 dtype=None):
        _check_factory(type(self).__name__, device, dtype)
        super().__init__(input_size, hidden_size, num_layers=num_layers,
                         nonlinearity=nonlinearity, bias=bias, batch_first=batch_first,
                         dropout=dropout, bidirectional=bidirectional, device=device,
                         dtype=dtype)


# ------------------------------------------------------------------ cells ---

_CELL_FWD = {"lstm": _fast.lstm_forward, "gru": _fast.gru_forward, "rnn": _fast.rnn_forward}
_CELL_BWD = {"lstm": _fast.lstm_backward, "gru": _fast.gru_backward, "rnn": _fast.rnn_backward}


class _CellFunction(torch.autograd.Function):
    """One step (T = 1): inputs (mode, nonlinearity, grad_enabled, x (B, I), h, c, w_ih,
    w_hh, b_ih, b_hh) -> h' (and c' for the LSTM)."""

    @staticmethod
    def forward(ctx, mode, nonlinearity, grad_enabled, x, h, c, w_ih, w_hh, b_ih, b_hh):
        ctx.set_materialize_grads(False)
        need_grad = grad_enabled and any(ctx.needs_input_grad[3:])
        args = (_np(x)[None], _np(w_ih), _np(w_hh), _np(b_ih), _np(b_hh))
        if mode == "lstm":
            _, h1, c1, cache = _fast.lstm_forward(*args, h0=_np(h), c0=_np(c),
                                                  training=need_grad)
        else:
            extra = {"nonlinearity": nonlinearity} if mode == "rnn" else {}
            _, h1, cache = _CELL_FWD[mode](*args, h0=_np(h), training=need_grad, **extra)
        ctx.mode = mode
        ctx.cache = cache
        if need_grad:
            ctx.save_for_backward(x, h, c, w_ih, w_hh, b_ih, b_hh)
        if mode == "lstm":
            return torch.from_numpy(h1), torch.from_numpy(c1)
        return torch.from_numpy(h1)

    @staticmethod
    @once_differentiable
    def backward(ctx, d_h, d_c=None):
        ctx.saved_tensors  # noqa: B018 -- raises if an input was modified in place
        if ctx.mode == "lstm":
            g = _fast.lstm_backward(ctx.cache, dh_n=_np(d_h), dc_n=_np(d_c))
            dc0 = g.dc0
        else:
            g = _CELL_BWD[ctx.mode](ctx.cache, dh_n=_np(d_h))
            dc0 = None
        return (None, None, None,
                *_tensors([g.dx[0], g.dh0, dc0, g.dw_ih, g.dw_hh, g.db_ih, g.db_hh],
                          ctx.needs_input_grad[3:]))


class _CellMixin:
    """forward() of fastlstm's cells; the rest is torch.nn.RNNCellBase's."""

    _fl_mode = None

    def forward(self, input, hx=None):  # noqa: A002 -- torch's argument name
        owner = type(self).__name__
        mode = self._fl_mode
        names = ["weight_ih", "weight_hh"] + (["bias_ih", "bias_hh"] if self.bias else [])
        weights = [getattr(self, n) for n in names]
        wdtype = _check_weights(owner, names, weights)
        if not isinstance(input, torch.Tensor):
            raise TypeError(f"{owner}: input must be a torch.Tensor, got "
                            f"{type(input).__name__}")
        x = _input_dtype(owner, input, wdtype)
        if x.dim() not in (1, 2):
            raise ValueError(f"{owner}: Expected input to be 1D or 2D, got {x.dim()}D instead")
        batched = x.dim() == 2
        if x.shape[-1] != self.input_size:
            raise RuntimeError(f"{owner}: input has inconsistent input_size: got "
                               f"{x.shape[-1]} expected {self.input_size}")
        if not batched:
            x = x.unsqueeze(0)
        B, H = x.shape[0], self.hidden_size
        h = c = None
        if hx is not None:
            if mode == "lstm":
                if not isinstance(hx, (tuple, list)) or len(hx) != 2:
                    raise TypeError(f"{owner}: hx must be None or a tuple (h_0, c_0) of "
                                    f"tensors, got {type(hx).__name__}")
                states = [("hx[0]", hx[0]), ("hx[1]", hx[1])]
            else:
                if not isinstance(hx, torch.Tensor):
                    raise TypeError(f"{owner}: hx must be None or a tensor, got "
                                    f"{type(hx).__name__}")
                states = [("hidden", hx)]
            checked = []
            for name, v in states:
                if not isinstance(v, torch.Tensor):
                    raise TypeError(f"{owner}: {name} must be a torch.Tensor, got "
                                    f"{type(v).__name__}")
                if v.dim() not in (1, 2):
                    raise ValueError(f"{owner}: Expected {name} to be 1D or 2D, got "
                                     f"{v.dim()}D instead")
                if v.dim() != (2 if batched else 1):
                    raise RuntimeError(f"{owner}: {name} must be {'2' if batched else '1'}-D "
                                       f"for {'batched 2' if batched else 'unbatched 1'}-D "
                                       f"input, got {v.dim()}-D")
                if not batched:
                    v = v.unsqueeze(0)
                checked.append(_state(owner, name, v, wdtype, (B, H)))
            h = checked[0]
            c = checked[1] if mode == "lstm" else None
        b_ih, b_hh = (weights[2], weights[3]) if self.bias else (None, None)
        res = _CellFunction.apply(mode, getattr(self, "nonlinearity", "tanh"),
                                  torch.is_grad_enabled(), x, h, c, weights[0], weights[1],
                                  b_ih, b_hh)
        if not batched:
            res = tuple(r.squeeze(0) for r in res) if mode == "lstm" else res.squeeze(0)
        return res


class LSTMCell(_CellMixin, nn.LSTMCell):
    """torch.nn.LSTMCell on the fastlstm kernels: ``cell(input, hx=None) -> (h', c')``."""

    _fl_mode = "lstm"

    def __init__(self, input_size, hidden_size, bias=True, device=None, dtype=None):
        _check_factory(type(self).__name__, device, dtype)
        super().__init__(input_size, hidden_size, bias=bias, device=device, dtype=dtype)


class GRUCell(_CellMixin, nn.GRUCell):
    """torch.nn.GRUCell on the fastlstm kernels: ``cell(input, hx=None) -> h'``."""

    _fl_mode = "gru"

    def __init__(self, input_size, hidden_size, bias=True, device=None, dtype=None):
        _check_factory(type(self).__name__, device, dtype)
        super().__init__(input_size, hidden_size, bias=bias, device=device, dtype=dtype)


class RNNCell(_CellMixin, nn.RNNCell):
    """torch.nn.RNNCell (tanh or relu) on the fastlstm kernels: ``cell(input, hx=None) -> h'``."""

    _fl_mode = "rnn"

    def __init__(self, input_size, hidden_size, bias=True, nonlinearity="tanh", device=None,
                 dtype=None):
        _check_factory(type(self).__name__, device, dtype)
        if nonlinearity not in ("tanh", "relu"):
            raise ValueError(f"RNNCell: Unknown nonlinearity '{nonlinearity}'. Select from "
                             "'tanh' or 'relu'.")
        super().__init__(input_size, hidden_size, bias=bias, nonlinearity=nonlinearity,
                         device=device, dtype=dtype)
