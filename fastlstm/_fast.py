"""The fast path: the public kernel functions backed by the C kernels."""

import numpy as np

from . import _api, _core, _threads


def _c(a):
    """C-contiguous, aligned version of a (None stays None); copies only when needed."""
    if a is None:
        return None
    flags = a.flags  # (cheaper than np.require for the usual, already fine array)
    if flags.c_contiguous and flags.aligned:
        return a
    return np.require(a, requirements=("C", "A"))


def _code(args):
    return "rnn_" + args.nonlinearity if args.cell == "rnn" else args.cell


class _Fast:
    @staticmethod
    def forward(args, training):
        arrays = (args.x, args.w_ih, args.w_hh, args.b_ih, args.b_hh, args.h0, args.c0)
        fixed = tuple(map(_c, arrays))
        if any(f is not a for f, a in zip(fixed, arrays)):
            x, w_ih, w_hh, b_ih, b_hh, h0, c0 = fixed
            args = args._replace(x=x, w_ih=w_ih, w_hh=w_hh, b_ih=b_ih, b_hh=b_hh, h0=h0, c0=c0)
        y, h_n, c_n, ws = _core.forward(_code(args), args.x, args.w_ih, args.w_hh, args.b_ih,
                                        args.b_hh, args.h0, args.c0, args.lengths,
                                        args.reverse, training, _threads._num_threads)
        return y, h_n, c_n, (args, ws)

    @staticmethod
    def backward(args, saved, dy, dh_n, dc_n):
        args, ws = saved  # the contiguous arrays the forward ran on
        return _core.backward(_code(args), args.x, args.w_ih, args.w_hh, args.lengths,
                              args.reverse, ws, _c(dy), _c(dh_n), _c(dc_n),
                              args.b_ih is not None, _threads._num_threads)


def empty_cache():
    """Give back to the system the freed blocks fastlstm keeps for reuse.

    Large outputs, saved workspaces and scratch buffers come from a cache of
    freed blocks (at most 256 MiB, or FASTLSTM_CACHE_BYTES), so that repeated
    calls of the same shapes reuse memory that is already mapped. Arrays still
    in use are not affected; their blocks return to the cache when they go.
    """
    _core.cache_clear()


_funcs = _api.make_api("fast", _Fast, "fastlstm")
lstm_forward = _funcs["lstm_forward"]
lstm_backward = _funcs["lstm_backward"]
gru_forward = _funcs["gru_forward"]
gru_backward = _funcs["gru_backward"]
rnn_forward = _funcs["rnn_forward"]
rnn_backward = _funcs["rnn_backward"]
del _funcs
