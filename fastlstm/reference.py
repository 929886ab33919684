"""Pure-NumPy reference implementations of every fastlstm kernel.

Same functions, signatures, checks and results as the C fast path in
``fastlstm``; written for clarity, one time step at a time, to prove the fast
path right (tests compare the two) and to show how much faster it is.

Ragged batches are handled with masks: at processing step s, row b is active
when s < lengths[b], and it reads and writes time position s (forward) or
lengths[b] - 1 - s (reverse). Inactive rows keep their state unchanged.
"""

import numpy as np

from . import _api

__all__ = ["lstm_forward", "lstm_backward", "gru_forward", "gru_backward",
           "rnn_forward", "rnn_backward", "sigmoid"]


def sigmoid(v):
    """Logistic function without overflow or underflow: exact 0 and 1 at |v| = 1000.

    exp is only evaluated where its result is a normal number, so no
    floating-point warning is raised even under ``np.errstate(all="raise")``.
    """
    v = np.asarray(v)
    lo = np.log(np.finfo(v.dtype if v.dtype.kind == "f" else np.float64).tiny)
    a = -np.abs(v)
    e = np.where(a < lo, 0, np.exp(np.maximum(a, lo)))
    p = 1.0 / (1.0 + e)
    return np.where(v >= 0, p, e * p)


# ---- one step of each cell: a_x = x W_ih^T + b_ih, a_h = h W_hh^T + b_hh ----
# step(a_x, a_h, h, c) -> (h', c', saved)
# step_backward(saved, h, dh, dc) -> (da_x, da_h, dh_direct, dc_prev)

def _lstm_step(a_x, a_h, h, c):
    a = a_x + a_h
    i, f, g, o = np.split(a, 4, axis=1)
    i, f, g, o = sigmoid(i), sigmoid(f), np.tanh(g), sigmoid(o)
    c_new = f * c + i * g
    tc = np.tanh(c_new)
    return o * tc, c_new, (i, f, g, o, c, tc)


def _lstm_step_backward(saved, h, dh, dc):
    i, f, g, o, c_prev, tc = saved
    dc = dc + dh * o * (1 - tc ** 2)
    da = np.concatenate([dc * g * i * (1 - i), dc * c_prev * f * (1 - f),
                         dc * i * (1 - g ** 2), dh * tc * o * (1 - o)], axis=1)
    return da, da, np.zeros_like(dh), dc * f


def _gru_step(a_x, a_h, h, c):
    xr, xz, xn = np.split(a_x, 3, axis=1)
    hr, hz, hn = np.split(a_h, 3, axis=1)
    r = sigmoid(xr + hr)
    z = sigmoid(xz + hz)
    n = np.tanh(xn + r * hn)
    return (1 - z) * n + z * h, None, (r, z, n, hn)


def _gru_step_backward(saved, h, dh, dc):
    r, z, n, hn = saved
    dn = dh * (1 - z) * (1 - n ** 2)
    dz = dh * (h - n) * z * (1 - z)
    dr = dn * hn * r * (1 - r)
    da_x = np.concatenate([dr, dz, dn], axis=1)
    da_h = np.concatenate([dr, dz, dn * r], axis=1)
    return da_x, da_h, dh * z, None


def _rnn_step(nonlinearity):
    def step(a_x, a_h, h, c):
        a = a_x + a_h
        v = np.tanh(a) if nonlinearity == "tanh" else np.where(a < 0, 0.0, a).astype(a.dtype)
        return v, None, (v,)
    return step


def _rnn_step_backward(nonlinearity):
    def step_backward(saved, h, dh, dc):
        (v,) = saved
        da = dh * (1 - v ** 2) if nonlinearity == "tanh" else np.where(v > 0, dh, 0.0).astype(dh.dtype)
        return da, da, np.zeros_like(dh), None
    return step_backward


def _cell_math(args):
    if args.cell == "lstm":
        return _lstm_step, _lstm_step_backward
    if args.cell == "gru":
        return _gru_step, _gru_step_backward
    return _rnn_step(args.nonlinearity), _rnn_step_backward(args.nonlinearity)


def _schedule(args):
    """For each processing step s: (active mask (B,), time index per row (B,))."""
    T, B = args.T, args.B
    lens = np.full(B, T, np.int64) if args.lengths is None else args.lengths
    for s in range(T):
        active = lens > s
        if not active.any():
            break
        t = (lens - 1 - s) if args.reverse else np.full(B, s, np.int64)
        yield active, np.where(active, t, 0)


class _Reference:
    # Underflow to zero or a subnormal (a saturated gate times something small)
    # is expected and harmless here, so it never raises, whatever the caller's
    # np.seterr; overflow and invalid operations keep the caller's setting.
    @staticmethod
    @np.errstate(under="ignore")
    def forward(args, training):
        T, B, H, dt = args.T, args.B, args.H, args.dtype
        step, _ = _cell_math(args)
        rows = np.arange(B)
        a_x_all = args.x @ args.w_ih.T
        if args.b_ih is not None:
            a_x_all = a_x_all + args.b_ih
        h = np.zeros((B, H), dt) if args.h0 is None else args.h0.copy()
        c = None
        if args.cell == "lstm":
            c = np.zeros((B, H), dt) if args.c0 is None else args.c0.copy()
        y = np.zeros((T, B, H), dt)
        steps = []
        for active, t in _schedule(args):
            a_h = h @ args.w_hh.T
            if args.b_hh is not None:
                a_h = a_h + args.b_hh
            h_new, c_new, saved = step(a_x_all[t, rows], a_h, h, c)
            m = active[:, None]
            y[t[active], rows[active]] = h_new[active]
            if training:
                steps.append((active, t, h, saved))
            h = np.where(m, h_new, h)
            if c is not None:
                c = np.where(m, c_new, c)
        return y, h, c, steps

    @staticmethod
    @np.errstate(under="ignore")
    def backward(args, steps, dy, dh_n, dc_n):
        T, B, I, H, dt = args.T, args.B, args.I, args.H, args.dtype
        _, step_backward = _cell_math(args)
        rows = np.arange(B)
        lstm = args.cell == "lstm"
        dh = np.zeros((B, H), dt) if dh_n is None else dh_n.astype(dt, copy=True)
        dc = None
        if lstm:
            dc = np.zeros((B, H), dt) if dc_n is None else dc_n.astype(dt, copy=True)
        dx = np.zeros((T, B, I), dt)
        dw_ih = np.zeros_like(args.w_ih, dtype=dt)
        dw_hh = np.zeros_like(args.w_hh, dtype=dt)
        db_ih = np.zeros(args.w_ih.shape[0], dt)
        db_hh = np.zeros(args.w_hh.shape[0], dt)
        for active, t, h_prev, saved in reversed(steps):
            m = active[:, None]
            dh_t = dh + np.where(m, dy[t, rows], 0) if dy is not None else dh
            da_x, da_h, dh_direct, dc_prev = step_backward(saved, h_prev, dh_t, dc)
            da_x = np.where(m, da_x, 0).astype(dt)
            da_h = np.where(m, da_h, 0).astype(dt)
            x_t = np.where(m, args.x[t, rows], 0).astype(dt)
            dx[t[active], rows[active]] = (da_x @ args.w_ih)[active]
            dw_ih += da_x.T @ x_t
            dw_hh += da_h.T @ h_prev
            db_ih += da_x.sum(axis=0)
            db_hh += da_h.sum(axis=0)
            dh = np.where(m, dh_direct + da_h @ args.w_hh, dh)
            if lstm:
                dc = np.where(m, dc_prev, dc)
        if args.b_ih is None:
            db_ih = db_hh = None
        return dx, dh, dc, dw_ih, dw_hh, db_ih, db_hh


_funcs = _api.make_api("reference", _Reference, __name__)
lstm_forward = _funcs["lstm_forward"]
lstm_backward = _funcs["lstm_backward"]
gru_forward = _funcs["gru_forward"]
gru_backward = _funcs["gru_backward"]
rnn_forward = _funcs["rnn_forward"]
rnn_backward = _funcs["rnn_backward"]
del _funcs
