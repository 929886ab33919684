"""The public kernel functions, written once and bound to an implementation.

``fastlstm`` (the C kernels) and ``fastlstm.reference`` (pure NumPy) expose the
same six functions with the same signatures, checks and results; each
implementation only supplies ``forward(args, training)`` and
``backward(args, saved, dy, dh_n, dc_n)``.
"""

from collections import namedtuple

from . import _checks

LSTMGrads = namedtuple("LSTMGrads", "dx dh0 dc0 dw_ih dw_hh db_ih db_hh")
LSTMGrads.__doc__ = "Gradients of lstm_backward; db_ih, db_hh are None without bias."
GRUGrads = namedtuple("GRUGrads", "dx dh0 dw_ih dw_hh db_ih db_hh")
GRUGrads.__doc__ = "Gradients of gru_backward; db_ih, db_hh are None without bias."
RNNGrads = namedtuple("RNNGrads", "dx dh0 dw_ih dw_hh db_ih db_hh")
RNNGrads.__doc__ = "Gradients of rnn_backward; db_ih, db_hh are None without bias."

_FORWARD_DOC = """{title}

    x: (T, B, I) time-major input. w_ih: ({g}, I), w_hh: ({g}, H), b_ih, b_hh:
    ({g},) or both None (no bias); layout and math exactly torch.nn.{torch}'s.
    h0{c0}: (B, H) initial state, None for zeros.
    lengths: None, or B integers in [0, T]: PackedSequence semantics (y is zero
    at steps t >= lengths[b]; the final state is the one after the last valid
    step; the initial state when the length is 0).
    reverse: process each sequence from its last valid step down to step 0
    (the reverse half of a bidirectional layer); y keeps the time positions.{extra}
    training: keep what backward needs in the returned cache (else cache is None).

    All arrays must share one dtype, float32 or float64; results come back in
    it. Inputs may be strided, Fortran-ordered or read-only; they are never
    written. NaN in the input propagates to the outputs.

    Returns {returns}.
"""

_BACKWARD_DOC = """Backward through time of {fwd}.

    cache: from {fwd}(..., training=True) of this same implementation.
    dy: (T, B, H), dh_n{dcn}: (B, H): upstream gradients, None for zeros
    (dy at padded steps is ignored). Returns {grads}; bias gradients are
    None when the forward had no bias. dx is zero at padded steps.
"""


def make_api(impl_name, impl, module):
    """Return the dict of public functions bound to `impl`, as if defined in `module`."""

    def _forward(cell, x, w_ih, w_hh, b_ih, b_hh, h0, c0, lengths, reverse, training,
                 nonlinearity=None):
        args, training = _checks.check_forward(cell, x, w_ih, w_hh, b_ih, b_hh, h0, c0,
                                               lengths, reverse, training, nonlinearity)
        y, h_n, c_n, saved = impl.forward(args, training)
        cache = _checks.RNNCache(impl_name, args, saved) if training else None
        return y, h_n, c_n, cache

    def _backward(cell, cache, dy, dh_n, dc_n=None):
        args = _checks.check_cache(cache, impl_name, cell, f"{cell}_backward")
        dy, dh_n, dc_n = _checks.check_backward_grads(args, dy, dh_n, dc_n)
        return impl.backward(args, cache.saved, dy, dh_n, dc_n)

    def lstm_forward(x, w_ih, w_hh, b_ih=None, b_hh=None, *, h0=None, c0=None,
                     lengths=None, reverse=False, training=True):
        return _forward("lstm", x, w_ih, w_hh, b_ih, b_hh, h0, c0, lengths, reverse, training)

    def lstm_backward(cache, dy=None, dh_n=None, dc_n=None):
        return LSTMGrads(*_backward("lstm", cache, dy, dh_n, dc_n))

    def gru_forward(x, w_ih, w_hh, b_ih=None, b_hh=None, *, h0=None, lengths=None,
                    reverse=False, training=True):
        y, h_n, _, cache = _forward("gru", x, w_ih, w_hh, b_ih, b_hh, h0, None, lengths,
                                    reverse, training)
        return y, h_n, cache

    def gru_backward(cache, dy=None, dh_n=None):
        dx, dh0, _, dw_ih, dw_hh, db_ih, db_hh = _backward("gru", cache, dy, dh_n)
        return GRUGrads(dx, dh0, dw_ih, dw_hh, db_ih, db_hh)

    def rnn_forward(x, w_ih, w_hh, b_ih=None, b_hh=None, *, h0=None, nonlinearity="tanh",
                    lengths=None, reverse=False, training=True):
        y, h_n, _, cache = _forward("rnn", x, w_ih, w_hh, b_ih, b_hh, h0, None, lengths,
                                    reverse, training, nonlinearity)
        return y, h_n, cache

    def rnn_backward(cache, dy=None, dh_n=None):
        dx, dh0, _, dw_ih, dw_hh, db_ih, db_hh = _backward("rnn", cache, dy, dh_n)
        return RNNGrads(dx, dh0, dw_ih, dw_hh, db_ih, db_hh)

    what = "C kernels" if impl_name == "fast" else "NumPy reference"
    lstm_forward.__doc__ = _FORWARD_DOC.format(
        title=f"LSTM forward through time ({what}).", g="4*H", torch="LSTM", c0=", c0",
        extra="", returns="(y (T, B, H), h_n (B, H), c_n (B, H), cache)")
    gru_forward.__doc__ = _FORWARD_DOC.format(
        title=f"GRU forward through time ({what}).", g="3*H", torch="GRU", c0="",
        extra="", returns="(y (T, B, H), h_n (B, H), cache)")
    rnn_forward.__doc__ = _FORWARD_DOC.format(
        title=f"Plain (Elman) RNN forward through time ({what}).", g="H", torch="RNN",
        c0="", extra="\n    nonlinearity: 'tanh' or 'relu'.",
        returns="(y (T, B, H), h_n (B, H), cache)")
    lstm_backward.__doc__ = _BACKWARD_DOC.format(fwd="lstm_forward", dcn=", dc_n",
                                                 grads="LSTMGrads(dx, dh0, dc0, dw_ih, dw_hh, db_ih, db_hh)")
    gru_backward.__doc__ = _BACKWARD_DOC.format(fwd="gru_forward", dcn="",
                                                grads="GRUGrads(dx, dh0, dw_ih, dw_hh, db_ih, db_hh)")
    rnn_backward.__doc__ = _BACKWARD_DOC.format(fwd="rnn_forward", dcn="",
                                                grads="RNNGrads(dx, dh0, dw_ih, dw_hh, db_ih, db_hh)")
    funcs = (lstm_forward, lstm_backward, gru_forward, gru_backward, rnn_forward, rnn_backward)
    for f in funcs:
        f.__module__ = module
        f.__qualname__ = f.__name__
    return dict(lstm_forward=lstm_forward, lstm_backward=lstm_backward,
                gru_forward=gru_forward, gru_backward=gru_backward,
                rnn_forward=rnn_forward, rnn_backward=rnn_backward)
