"""Functional multi-layer, bidirectional recurrent networks on top of the kernels.

``stack_forward`` and ``stack_backward`` run a torch.nn.LSTM / GRU / RNN style
stack (``num_layers`` layers, one or two directions, inverted dropout between
layers) from a plain dict of parameter arrays under torch's names. They keep
no state of their own: everything backward needs travels in the returned
``StackCache``. The NumPy modules in ``fastlstm.nn`` are built on them, and
so can other front ends (e.g. a torch.autograd adapter).

Layout, as in torch: input and output are time-major, ``x`` (T, B, I) and
``output`` (T, B, D*H) with D = 2 when bidirectional (forward direction in
the first H features, reverse in the last H); states are (L*D, B, H) ordered
layer by layer, forward direction first. Parameters are
``weight_ih_l{k}{sfx}`` (G*H, I_k), ``weight_hh_l{k}{sfx}`` (G*H, H) and,
with bias, ``bias_ih_l{k}{sfx}``, ``bias_hh_l{k}{sfx}`` (G*H,), where sfx is
"" or "_reverse", G is 4 (LSTM), 3 (GRU) or 1 (RNN), I_0 = I and I_k = D*H.
"""

import numbers

import numpy as np

from . import _checks
from . import _fast as _default_impl

__all__ = ["stack_forward", "stack_backward", "StackCache", "param_names", "param_shapes",
           "MODES"]

#: the recurrent cells a stack can be made of -> gates per cell
MODES = {"lstm": 4, "gru": 3, "rnn": 1}


def _suffixes(bidirectional):
    return ("", "_reverse") if bidirectional else ("",)


def param_names(num_layers, bidirectional, bias=True):
    """torch's parameter names of a stack, in torch's order (a list of str)."""
    names = []
    for layer in range(num_layers):
        for sfx in _suffixes(bidirectional):
            names += [f"weight_ih_l{layer}{sfx}", f"weight_hh_l{layer}{sfx}"]
            if bias:
                names += [f"bias_ih_l{layer}{sfx}", f"bias_hh_l{layer}{sfx}"]
    return names


def param_shapes(mode, input_size, hidden_size, num_layers, bidirectional, bias=True):
    """dict name -> shape of every parameter of a stack, in torch's order."""
    G = MODES[mode]
    D = 2 if bidirectional else 1
    shapes = {}
    for layer in range(num_layers):
        n_in = input_size if layer == 0 else D * hidden_size
        for sfx in _suffixes(bidirectional):
            shapes[f"weight_ih_l{layer}{sfx}"] = (G * hidden_size, n_in)
            shapes[f"weight_hh_l{layer}{sfx}"] = (G * hidden_size, hidden_size)
            if bias:
                shapes[f"bias_ih_l{layer}{sfx}"] = (G * hidden_size,)
                shapes[f"bias_hh_l{layer}{sfx}"] = (G * hidden_size,)
    return shapes


class StackCache:
    """Opaque record of a training-mode ``stack_forward``, consumed by ``stack_backward``.

    Holds one kernel cache per layer and direction, the dropout masks applied
    to the outputs of all but the last layer, and the sizes needed to check
    the upstream gradients. It keeps references to the inputs and parameters
    of the forward: do not modify them before the backward.
    """

    __slots__ = ("mode", "impl", "dtype", "T", "B", "I", "H", "num_layers", "num_directions",
                 "has_bias", "layer_caches", "masks")

    def __init__(self, mode, impl, dtype, T, B, I, H, num_layers, num_directions, has_bias,
                 layer_caches, masks):
        self.mode = mode
        self.impl = impl
        self.dtype = dtype
        self.T, self.B, self.I, self.H = T, B, I, H
        self.num_layers = num_layers
        self.num_directions = num_directions
        self.has_bias = has_bias
        self.layer_caches = layer_caches  # [layer][direction] kernel cache
        self.masks = masks                # [layer] dropout mask (T, B, D*H) or None

    def __repr__(self):
        return (f"<fastlstm {self.mode} stack cache L={self.num_layers} "
                f"D={self.num_directions} T={self.T} B={self.B} I={self.I} H={self.H} "
                f"{self.dtype.name}>")


def _check_mode(mode):
    if mode not in MODES:
        raise ValueError(f"mode: expected one of 'lstm', 'gru', 'rnn', got {mode!r}")
    return mode


def _check_state(name, v, dtype, shape):
    """v: None or an ndarray of `dtype` and `shape` (L*D, B, H)."""
    if v is None:
        return None
    if not isinstance(v, np.ndarray):
        raise TypeError(f"{name}: expected a numpy.ndarray, got {_checks._type_name(v)}")
    if v.dtype != dtype:
        raise TypeError(f"{name}: expected dtype {dtype} (the dtype of x), got {v.dtype}")
    if v.shape != shape:
        raise ValueError(f"{name}: expected shape (num_layers*num_directions, B, H) = "
                         f"{shape}, got {v.shape}")
    return v


def _check_params(mode, params, dtype, I, num_layers, bidirectional):
    """Validate the parameter dict; returns (H, has_bias)."""
    if not hasattr(params, "keys") or not hasattr(params, "__getitem__"):
        raise TypeError(f"params: expected a dict of arrays, got {_checks._type_name(params)}")
    G = MODES[mode]
    w = params.get("weight_hh_l0") if hasattr(params, "get") else None
    if not isinstance(w, np.ndarray) or w.ndim != 2 or w.shape[1] < 1:
        raise ValueError("params: expected 'weight_hh_l0' to be a 2-D array "
                         f"({G}*H, H) giving the hidden size H")
    H = w.shape[1]
    has_bias = "bias_ih_l0" in params
    shapes = param_shapes(mode, I, H, num_layers, bidirectional, has_bias)
    mismatch = _checks.key_mismatch(shapes, params)
    if mismatch:
        raise ValueError(f"params: keys do not match a {mode} stack with num_layers="
                         f"{num_layers}, bidirectional={bidirectional}, "
                         f"bias={has_bias}: {mismatch}")
    for k, shape in shapes.items():
        v = params[k]
        if not isinstance(v, np.ndarray):
            raise TypeError(f"params[{k!r}]: expected a numpy.ndarray, got "
                            f"{_checks._type_name(v)}")
        if v.dtype != dtype:
            raise TypeError(f"params[{k!r}]: expected dtype {dtype} (the dtype of x), "
                            f"got {v.dtype}")
        if v.shape != shape:
            raise ValueError(f"params[{k!r}]: expected shape {shape} for input size {I} "
                             f"and hidden size {H}, got {v.shape}")
    return H, has_bias


def _dropout_mask(rng, shape, p, dtype):
    """Inverted-dropout mask: 0 with probability p, else 1/(1-p) (all zeros when p = 1)."""
    if p >= 1.0:
        return np.zeros(shape, dtype)
    keep = rng.random(shape) >= p
    return keep.astype(dtype) * dtype.type(1.0 / (1.0 - p))


def stack_forward(mode, params, x, hx, lengths, *, num_layers, bidirectional, dropout,
                  training, rng, nonlinearity="tanh", impl=None):
    """Forward pass of a multi-layer (bi)directional LSTM / GRU / RNN stack.

    mode: "lstm", "gru" or "rnn". params: dict of arrays under torch's names
    (see the module docstring), all of x's dtype; the hidden size comes from
    ``weight_hh_l0`` and the bias from the presence of ``bias_ih_l0``.
    x: (T, B, I) time-major, float32 or float64.
    hx: None (zeros), or the initial hidden state h0 (L*D, B, H); for "lstm"
    a pair (h0, c0), either of which may be None for zeros.
    lengths: None or B integers in [0, T]: PackedSequence semantics in every
    layer and both directions (outputs are zero at padded steps).
    num_layers, bidirectional: the stack's shape. dropout: probability in
    [0, 1] of zeroing each output feature of every layer but the last
    (inverted dropout, so kept features are scaled by 1/(1-dropout)); only
    applied when training. rng: a numpy.random.Generator drawing the dropout
    masks (needed only when training with dropout > 0).
    training: apply dropout and keep what ``stack_backward`` needs.
    nonlinearity: "tanh" or "relu", for "rnn" only.
    impl: the kernel implementation, a module with ``{mode}_forward`` and
    ``{mode}_backward`` (default: the C kernels; ``fastlstm.reference`` works
    too).

    Returns (output (T, B, D*H), h_n (L*D, B, H), c_n (L*D, B, H) for "lstm"
    else None, cache): cache is a StackCache when training, else None.
    """
    mode = _check_mode(mode)
    impl = _default_impl if impl is None else impl
    if not isinstance(num_layers, numbers.Integral) or isinstance(num_layers, bool) \
            or num_layers < 1:
        raise ValueError(f"num_layers: expected an integer >= 1, got {num_layers!r}")
    num_layers = int(num_layers)
    bidirectional = _checks._bool("bidirectional", bidirectional)
    training = _checks._bool("training", training)
    if isinstance(dropout, bool) or not isinstance(dropout, numbers.Real) \
            or not 0.0 <= dropout <= 1.0:
        raise ValueError(f"dropout: expected a probability in [0, 1], got {dropout!r}")
    dropout = float(dropout)
    if mode == "rnn" and nonlinearity not in ("tanh", "relu"):
        raise ValueError(f"nonlinearity: expected 'tanh' or 'relu', got {nonlinearity!r}")

    x = _checks._array("x", x)
    if x.ndim != 3:
        raise ValueError(f"x: expected a 3-D time-major array (T, B, I), got shape {x.shape}")
    T, B, I = x.shape
    dtype = x.dtype
    H, has_bias = _check_params(mode, params, dtype, I, num_layers, bidirectional)
    D = 2 if bidirectional else 1
    state_shape = (num_layers * D, B, H)
    h0 = c0 = None
    if mode == "lstm":
        if hx is not None:
            if not isinstance(hx, (tuple, list)) or len(hx) != 2:
                raise TypeError("hx: expected None or a pair (h0, c0) for an LSTM, got "
                                f"{_checks._type_name(hx)}")
            h0 = _check_state("hx[0] (h0)", hx[0], dtype, state_shape)
            c0 = _check_state("hx[1] (c0)", hx[1], dtype, state_shape)
    else:
        if isinstance(hx, (tuple, list)):
            raise TypeError(f"hx: expected None or an array h0 for a {mode.upper()}, got a "
                            f"{type(hx).__name__}")
        h0 = _check_state("hx", hx, dtype, state_shape)
    lengths = _checks.check_lengths(lengths, T, B)
    use_dropout = training and dropout > 0.0 and num_layers > 1
    if use_dropout and rng is None:
        raise ValueError("rng: a numpy.random.Generator is needed to draw the dropout "
                         "masks when training with dropout > 0")

    fwd = getattr(impl, f"{mode}_forward")
    extra = {"nonlinearity": nonlinearity} if mode == "rnn" else {}
    h_n, c_n, layer_caches, masks = [], [], [], []
    inp = x
    for layer in range(num_layers):
        outs, caches = [], []
        for d, sfx in enumerate(_suffixes(bidirectional)):
            k = layer * D + d
            p = f"l{layer}{sfx}"
            b_ih = params[f"bias_ih_{p}"] if has_bias else None
            b_hh = params[f"bias_hh_{p}"] if has_bias else None
            h_init = None if h0 is None else h0[k]
            if mode == "lstm":
                y, hn, cn, cache = fwd(inp, params[f"weight_ih_{p}"], params[f"weight_hh_{p}"],
                                       b_ih, b_hh, h0=h_init,
                                       c0=None if c0 is None else c0[k], lengths=lengths,
                                       reverse=bool(d), training=training)
                c_n.append(cn)
            else:
                y, hn, cache = fwd(inp, params[f"weight_ih_{p}"], params[f"weight_hh_{p}"],
                                   b_ih, b_hh, h0=h_init, lengths=lengths, reverse=bool(d),
                                   training=training, **extra)
            outs.append(y)
            h_n.append(hn)
            caches.append(cache)
        out = outs[0] if D == 1 else np.concatenate(outs, axis=2)
        layer_caches.append(caches)
        if use_dropout and layer < num_layers - 1:
            mask = _dropout_mask(rng, out.shape, dropout, dtype)
            out = out * mask
            masks.append(mask)
        else:
            masks.append(None)
        inp = out

    h_n = np.stack(h_n)
    c_n = np.stack(c_n) if mode == "lstm" else None
    cache = None
    if training:
        cache = StackCache(mode, impl, dtype, T, B, I, H, num_layers, D, has_bias,
                           layer_caches, masks)
    return inp, h_n, c_n, cache


def stack_backward(cache, d_output=None, d_h_n=None, d_c_n=None):
    """Backward pass of ``stack_forward``, from its cache (the forward is not recomputed).

    d_output: (T, B, D*H), d_h_n, d_c_n: (L*D, B, H), all of the forward's
    dtype; None means zeros (d_c_n only for "lstm"). Gradients at padded
    steps of d_output are ignored.

    Returns (dx (T, B, I), dh0 (L*D, B, H), dc0 (L*D, B, H) for "lstm" else
    None, grads): grads is a dict of parameter gradients keyed like the
    forward's params. The cache can be used more than once; it is not modified.
    """
    if not isinstance(cache, StackCache):
        raise TypeError("cache: expected the StackCache returned by stack_forward(..., "
                        f"training=True), got {_checks._type_name(cache)}"
                        + (" (a forward with training=False keeps no cache)"
                           if cache is None else ""))
    c = cache
    L, D, H, T, B, dt = c.num_layers, c.num_directions, c.H, c.T, c.B, c.dtype
    lstm = c.mode == "lstm"
    d_output = _checks.check_grad("d_output", d_output, dt, (T, B, D * H),
                                  "(T, B, num_directions*H) of the forward")
    state_what = "(num_layers*num_directions, B, H) of the forward"
    d_h_n = _checks.check_grad("d_h_n", d_h_n, dt, (L * D, B, H), state_what)
    if lstm:
        d_c_n = _checks.check_grad("d_c_n", d_c_n, dt, (L * D, B, H), state_what)
    elif d_c_n is not None:
        raise ValueError(f"d_c_n: only an LSTM has a cell state; pass None for a "
                         f"{c.mode.upper()}")

    bwd = getattr(c.impl, f"{c.mode}_backward")
    grads = {}
    dh0 = [None] * (L * D)
    dc0 = [None] * (L * D)
    d_out = d_output
    for layer in reversed(range(L)):
        dx = None
        for d, sfx in enumerate(_suffixes(D == 2)):
            k = layer * D + d
            dy = None
            if d_out is not None:
                dy = d_out if D == 1 else d_out[:, :, d * H:(d + 1) * H]
            dh = None if d_h_n is None else d_h_n[k]
            if lstm:
                g = bwd(c.layer_caches[layer][d], dy=dy, dh_n=dh,
                        dc_n=None if d_c_n is None else d_c_n[k])
                dc0[k] = g.dc0
            else:
                g = bwd(c.layer_caches[layer][d], dy=dy, dh_n=dh)
            dh0[k] = g.dh0
            dx = g.dx if dx is None else dx + g.dx
            p = f"l{layer}{sfx}"
            grads[f"weight_ih_{p}"] = g.dw_ih
            grads[f"weight_hh_{p}"] = g.dw_hh
            if c.has_bias:
                grads[f"bias_ih_{p}"] = g.db_ih
                grads[f"bias_hh_{p}"] = g.db_hh
        if layer > 0 and c.masks[layer - 1] is not None:
            dx = dx * c.masks[layer - 1]
        d_out = dx
    names = param_names(L, D == 2, c.has_bias)
    grads = {k: grads[k] for k in names}  # torch's order
    return d_out, np.stack(dh0), np.stack(dc0) if lstm else None, grads
