"""`fastlstm selfcheck`: run every kernel against the NumPy reference and time both.

Prints, per cell, the largest relative difference between the C kernels and
the reference (forward outputs and every gradient, float64) and how many times
faster the C kernels are, forward and forward+backward.
"""

import time

import numpy as np

from . import _fast, reference
from ._checks import GATES

CELLS = ("lstm", "gru", "rnn")


def make_problem(cell, T, B, I, H, dtype=np.float64, seed=0, lengths=None):
    """Random weights, input and upstream gradients for one cell (kwargs for forward/backward)."""
    rng = np.random.default_rng(seed)
    G = GATES[cell]
    k = 1.0 / np.sqrt(H)

    def u(*shape):
        return rng.uniform(-k, k, shape).astype(dtype)

    fwd = dict(x=rng.standard_normal((T, B, I)).astype(dtype), w_ih=u(G * H, I),
               w_hh=u(G * H, H), b_ih=u(G * H), b_hh=u(G * H),
               h0=rng.standard_normal((B, H)).astype(dtype) * 0.5, lengths=lengths)
    bwd = dict(dy=rng.standard_normal((T, B, H)).astype(dtype),
               dh_n=rng.standard_normal((B, H)).astype(dtype))
    if cell == "lstm":
        fwd["c0"] = rng.standard_normal((B, H)).astype(dtype) * 0.5
        bwd["dc_n"] = rng.standard_normal((B, H)).astype(dtype)
    return fwd, bwd


def run(module, cell, fwd, bwd, training=True):
    """forward (and backward when bwd is given) of `module` -> (outputs, grads)."""
    out = getattr(module, cell + "_forward")(**fwd, training=training)
    grads = getattr(module, cell + "_backward")(out[-1], **bwd) if bwd is not None else None
    return out[:-1], grads


def _best_time(fn, repeat):
    best = float("inf")
    for _ in range(repeat):
        t0 = time.perf_counter()
        fn()
        best = min(best, time.perf_counter() - t0)
    return best


def rel_err(a, b):
    return float(np.max(np.abs(a - b)) / max(np.max(np.abs(b)), 1e-300)) if a.size else 0.0


def main(T=50, B=16, I=64, H=128, repeat=3):
    print(f"fastlstm self-check: C kernels vs NumPy reference, T={T} B={B} I={I} H={H}")
    print(f"{'cell':6} {'max rel diff (f64)':>20} {'forward speed-up':>17} {'fwd+bwd speed-up':>17}")
    worst = 0.0
    for cell in CELLS:
        fwd, bwd = make_problem(cell, T, B, I, H)
        o_f, g_f = run(_fast, cell, fwd, bwd)
        o_r, g_r = run(reference, cell, fwd, bwd)
        err = max(rel_err(a, b) for a, b in zip(list(o_f) + list(g_f), list(o_r) + list(g_r))
                  if a is not None)
        worst = max(worst, err)
        f32, _ = make_problem(cell, T, B, I, H, dtype=np.float32)
        t = {}
        for name, mod in (("fast", _fast), ("ref", reference)):
            t[name, "f"] = _best_time(lambda: run(mod, cell, f32, None, training=False), repeat)
            t[name, "fb"] = _best_time(lambda: run(mod, cell, fwd, bwd), repeat)
        print(f"{cell:6} {err:20.2e} {t['ref', 'f'] / t['fast', 'f']:16.1f}x "
              f"{t['ref', 'fb'] / t['fast', 'fb']:16.1f}x")
    ok = worst < 1e-9
    print("OK: the C kernels agree with the reference" if ok else
          "FAILED: the C kernels disagree with the reference")
    return 0 if ok else 1
