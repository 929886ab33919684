"""Bad input is rejected with a clear message; odd-but-valid input works.

Every rejection is asserted for both implementations (the fast path and the
reference), with the exception type, a message that starts with the name of
the offending argument, and the same message from both. Then: strided,
Fortran-ordered, non-contiguous, broadcast and read-only arrays give the same
results as contiguous copies; the caller's arrays are never written; NaN
propagates without crashing; huge inputs stay finite and warning-free.
"""

import warnings

import numpy as np
import pytest
from numpy.testing import assert_allclose, assert_array_equal

import fastlstm
from fastlstm import reference
from fastlstm._checks import GATES

MODS = [pytest.param(fastlstm, id="fast"), pytest.param(reference, id="ref")]
CELLS = [
    pytest.param(("lstm", None), id="lstm"),
    pytest.param(("gru", None), id="gru"),
    pytest.param(("rnn", "tanh"), id="rnn_tanh"),
    pytest.param(("rnn", "relu"), id="rnn_relu"),
]
T, B, I, H = 3, 2, 4, 3
DROP = object()


def valid(cell, dtype=np.float64, seed=0, nl="tanh"):
    """Valid forward kwargs and upstream gradients of one small problem."""
    rng = np.random.default_rng(seed)
    G = GATES[cell]
    kw = dict(x=rng.standard_normal((T, B, I)), w_ih=rng.uniform(-0.5, 0.5, (G * H, I)),
              w_hh=rng.uniform(-0.5, 0.5, (G * H, H)), b_ih=rng.uniform(-0.5, 0.5, G * H),
              b_hh=rng.uniform(-0.5, 0.5, G * H), h0=rng.standard_normal((B, H)))
    up = dict(dy=rng.standard_normal((T, B, H)), dh_n=rng.standard_normal((B, H)))
    if cell == "lstm":
        kw["c0"] = rng.standard_normal((B, H))
        up["dc_n"] = rng.standard_normal((B, H))
    kw = {k: v.astype(dtype) for k, v in kw.items()}
    up = {k: v.astype(dtype) for k, v in up.items()}
    if cell == "rnn":
        kw["nonlinearity"] = nl
    return kw, up


def fwd_fn(mod, cell):
    return getattr(mod, cell + "_forward")


def bwd_fn(mod, cell):
    return getattr(mod, cell + "_backward")


# ------------------------------------------------------------ the cases
# Each case: id -> (cell, build(mod) -> zero-argument callable, exception, regex).

CASES = {}


def fcase(cid, cell, edit, exc, match):
    """A forward call on the valid problem of `cell` after edit(kw) (may return a new kw)."""
    def build(mod):
        kw, _ = valid(cell)
        kw = edit(kw) or kw
        kw = {k: v for k, v in kw.items() if v is not DROP}
        return lambda: fwd_fn(mod, cell)(**kw)
    assert cid not in CASES
    CASES[cid] = (cell, build, exc, match)


def bcase(cid, cell, edit, exc, match, dtype=np.float64):
    """A backward call on a valid training forward of `cell`; edit(up, cache, mod) -> (cache, up)."""
    def build(mod):
        kw, up = valid(cell, dtype)
        cache = fwd_fn(mod, cell)(**kw)[-1]
        cache, up = edit(up, cache, mod)
        return lambda: bwd_fn(mod, cell)(cache, **up)
    assert cid not in CASES
    CASES[cid] = (cell, build, exc, match)


def setk(**changes):
    def edit(kw):
        kw.update(changes)
    return edit


def mapk(name, f):
    def edit(kw):
        kw[name] = f(kw[name])
    return edit


for cell in ("lstm", "gru", "rnn"):
    G = GATES[cell]
    states = ("h0", "c0") if cell == "lstm" else ("h0",)
    # ranks
    fcase(f"{cell}-x-rank2", cell, mapk("x", lambda a: a[0]), ValueError, r"^x: .*3-D")
    fcase(f"{cell}-x-rank4", cell, mapk("x", lambda a: a[None]), ValueError, r"^x: .*3-D")
    fcase(f"{cell}-x-rank0", cell, setk(x=np.array(1.0)), ValueError, r"^x: .*3-D")
    fcase(f"{cell}-x-I0", cell, setk(x=np.zeros((T, B, 0)), w_ih=np.zeros((G * H, 0))),
          ValueError, r"^x: .*input size")
    for w in ("w_ih", "w_hh"):
        fcase(f"{cell}-{w}-rank1", cell, mapk(w, np.ravel), ValueError, rf"^{w}: .*2-D")
        fcase(f"{cell}-{w}-rank3", cell, mapk(w, lambda a: a[None]), ValueError, rf"^{w}: .*2-D")
    for b in ("b_ih", "b_hh"):
        fcase(f"{cell}-{b}-rank2", cell, mapk(b, lambda a: a[None]), ValueError, rf"^{b}: .*shape")
        fcase(f"{cell}-{b}-rank0", cell, mapk(b, lambda a: a[0]), TypeError, rf"^{b}: .*ndarray")
        fcase(f"{cell}-{b}-rank0-array", cell, mapk(b, lambda a: np.array(a[0])), ValueError,
              rf"^{b}: .*shape")
        fcase(f"{cell}-{b}-short", cell, mapk(b, lambda a: a[:-1]), ValueError,
              rf"^{b}: expected shape .*\({G * H},\)")
        fcase(f"{cell}-{b}-long", cell, mapk(b, lambda a: np.append(a, 0.0)), ValueError,
              rf"^{b}: expected shape")
    for s in states:
        fcase(f"{cell}-{s}-rank3", cell, mapk(s, lambda a: a[None]), ValueError, rf"^{s}: .*shape")
        fcase(f"{cell}-{s}-rank1", cell, mapk(s, np.ravel), ValueError, rf"^{s}: .*shape")
        fcase(f"{cell}-{s}-B+1", cell, mapk(s, lambda a: np.vstack([a, a[:1]])), ValueError,
              rf"^{s}: expected shape .*\({B}, {H}\)")
        fcase(f"{cell}-{s}-H+1", cell, mapk(s, lambda a: np.hstack([a, a[:, :1]])), ValueError,
              rf"^{s}: expected shape .*\({B}, {H}\)")
        fcase(f"{cell}-{s}-transposed", cell, mapk(s, lambda a: np.zeros((H + 1, B))),
              ValueError, rf"^{s}: ")
    # shapes of the weights
    if G > 1:
        fcase(f"{cell}-w_ih-not-multiple-of-G", cell,
              mapk("w_ih", lambda a: np.vstack([a, a[:1]])), ValueError,
              rf"^w_ih: .*multiple of {G}")
    fcase(f"{cell}-w_ih-no-rows", cell, setk(w_ih=np.zeros((0, I))), ValueError,
          rf"^w_ih: .*multiple of {G}")
    fcase(f"{cell}-w_ih-input-size", cell, mapk("w_ih", lambda a: np.hstack([a, a[:, :1]])),
          ValueError, r"^w_ih: .*x's input size I = 4")
    fcase(f"{cell}-x-input-size", cell, mapk("x", lambda a: a[..., :-1]),
          ValueError, r"^w_ih: .*x's input size I = 3")
    fcase(f"{cell}-w_hh-cols", cell, mapk("w_hh", lambda a: np.hstack([a, a[:, :1]])),
          ValueError, rf"^w_hh: expected shape .*\({G * H}, {H}\)")
    fcase(f"{cell}-w_hh-rows", cell, mapk("w_hh", lambda a: np.vstack([a, a[:G]])),
          ValueError, rf"^w_hh: expected shape .*\({G * H}, {H}\)")
    fcase(f"{cell}-H-inconsistent", cell, setk(w_hh=np.zeros((G * (H + 1), H + 1))),
          ValueError, r"^w_hh: .*H = 3 from w_ih")
    fcase(f"{cell}-w_hh-transposed", cell, mapk("w_hh", lambda a: np.ascontiguousarray(a.T)),
          ValueError, r"^w_hh: ") if G > 1 else None
    # dtypes: mixing
    fcase(f"{cell}-x-f32-rest-f64", cell, mapk("x", lambda a: a.astype(np.float32)),
          TypeError, r"^w_ih: dtype float64 does not match x's dtype float32")
    for name in ("w_ih", "w_hh", "b_ih", "b_hh") + states:
        fcase(f"{cell}-{name}-f32-in-f64-call", cell,
              mapk(name, lambda a: a.astype(np.float32)), TypeError,
              rf"^{name}: dtype float32 does not match x's dtype float64")
    fcase(f"{cell}-w_hh-f64-in-f32-call", cell,
          lambda kw: {k: (v if k == "w_hh" or not isinstance(v, np.ndarray)
                          else v.astype(np.float32)) for k, v in kw.items()},
          TypeError, r"^w_hh: dtype float64 does not match x's dtype float32")
    # dtypes: not float32/float64
    for dt in (np.int64, np.int32, np.complex128, np.float16, np.bool_, object, np.longdouble):
        dname = np.dtype(dt).name
        fcase(f"{cell}-x-{dname}", cell, mapk("x", lambda a, dt=dt: a.astype(dt)), TypeError,
              r"^x: expected float32 or float64")
    for name, dt in (("w_ih", np.int32), ("w_hh", np.float16), ("b_ih", np.complex64),
                     ("b_hh", np.int8), ("h0", np.int64)) + ((("c0", np.float16),) if cell == "lstm" else ()):
        fcase(f"{cell}-{name}-{np.dtype(dt).name}", cell, mapk(name, lambda a, dt=dt: a.astype(dt)),
              TypeError, rf"^{name}: expected float32 or float64")
    fcase(f"{cell}-all-float16", cell,
          lambda kw: {k: (v.astype(np.float16) if isinstance(v, np.ndarray) else v)
                      for k, v in kw.items()}, TypeError, r"^x: expected float32 or float64")
    # None and non-arrays
    for name in ("x", "w_ih", "w_hh"):
        fcase(f"{cell}-{name}-None", cell, setk(**{name: None}), TypeError,
              rf"^{name}: expected a numpy.ndarray, got None")
    for name in ("x", "w_ih", "w_hh", "h0") + (("c0",) if cell == "lstm" else ()):
        fcase(f"{cell}-{name}-list", cell, mapk(name, lambda a: a.tolist()), TypeError,
              rf"^{name}: expected a numpy.ndarray, got list")
    fcase(f"{cell}-b_ih-list", cell, mapk("b_ih", lambda a: a.tolist()), TypeError,
          r"^b_ih: expected a numpy.ndarray, got list")
    fcase(f"{cell}-b_hh-tuple", cell, mapk("b_hh", lambda a: tuple(a.tolist())), TypeError,
          r"^b_hh: expected a numpy.ndarray, got tuple")
    fcase(f"{cell}-x-float", cell, setk(x=1.5), TypeError, r"^x: expected a numpy.ndarray, got float")
    fcase(f"{cell}-x-memoryview", cell, mapk("x", memoryview), TypeError,
          r"^x: expected a numpy.ndarray, got memoryview")
    # one bias only
    fcase(f"{cell}-only-b_ih", cell, setk(b_hh=DROP), ValueError,
          r"^b_hh: pass both biases \(b_ih and b_hh\) or neither")
    fcase(f"{cell}-only-b_hh", cell, setk(b_ih=None), ValueError,
          r"^b_ih: pass both biases \(b_ih and b_hh\) or neither")
    # lengths
    for cid, val, exc, rx in [
        ("too-many", [1] * (B + 1), ValueError, r"^lengths: expected shape \(B,\) = \(2,\)"),
        ("too-few", [1], ValueError, r"^lengths: expected shape \(B,\) = \(2,\)"),
        ("2-D", np.ones((B, 1), np.int64), ValueError, r"^lengths: expected shape"),
        ("scalar", 2, ValueError, r"^lengths: expected shape"),
        ("negative", [-1, 2], ValueError, r"^lengths: every length must lie in \[0, T\] = \[0, 3\]"),
        ("above-T", [T + 1, 1], ValueError, r"^lengths: every length must lie in \[0, T\]"),
        ("huge-uint64", np.array([2 ** 63 + 5, 1], np.uint64), ValueError,
         r"^lengths: every length must lie in"),
        ("float-array", np.array([1.0, 2.0]), TypeError, r"^lengths: expected integers, got dtype float64"),
        ("float-list", [1.0, 2.0], TypeError, r"^lengths: expected integers"),
        ("float32-array", np.array([1, 2], np.float32), TypeError, r"^lengths: expected integers"),
        ("bool-array", np.array([True, False]), TypeError, r"^lengths: expected integers, got dtype bool"),
        ("bool-list", [True, True], TypeError, r"^lengths: expected integers, got dtype bool"),
        ("complex", np.array([1, 2], np.complex128), TypeError, r"^lengths: expected integers"),
        ("None-inside", [1, None], TypeError, r"^lengths: expected integers, got dtype object"),
        ("string", "12", TypeError, r"^lengths: expected a sequence of 2 integers, got str"),
        ("bytes", b"\x01\x02", TypeError, r"^lengths: expected a sequence of 2 integers, got bytes"),
        ("dict", {0: 1, 1: 2}, TypeError, r"^lengths: expected a sequence of 2 integers, got dict"),
        ("set", {1, 2}, TypeError, r"^lengths: expected a sequence of 2 integers, got set"),
        ("ragged-nested", [[1], [1, 2]], TypeError, r"^lengths: expected a sequence of 2 integers"),
        ("string-array", np.array(["1", "2"]), TypeError, r"^lengths: expected integers"),
    ]:
        fcase(f"{cell}-lengths-{cid}", cell, setk(lengths=val), exc, rx)
    # flags
    for name in ("reverse", "training"):
        for cid, val in (("int1", 1), ("int0", 0), ("None", None), ("str", "True"),
                         ("array", np.array([True]))):
            fcase(f"{cell}-{name}-{cid}", cell, setk(**{name: val}), TypeError,
                  rf"^{name}: expected True or False")
    # backward: the cache
    other = {"lstm": "gru", "gru": "rnn", "rnn": "lstm"}[cell]
    bcase(f"{cell}-cache-None", cell, lambda up, c, m: (None, up), TypeError,
          rf"^cache: expected the cache returned by {cell}_forward\(\.\.\., training=True\), "
          r"got NoneType \(the forward ran with training=False, which keeps no cache\)")
    bcase(f"{cell}-cache-of-inference-forward", cell,
          lambda up, c, m, cell=cell: (fwd_fn(m, cell)(**valid(cell)[0], training=False)[-1], up),
          TypeError, r"^cache: .*training=False")
    bcase(f"{cell}-cache-dict", cell, lambda up, c, m: ({}, up), TypeError,
          rf"^cache: expected the cache returned by {cell}_forward.*got dict$")
    bcase(f"{cell}-cache-whole-forward-tuple", cell,
          lambda up, c, m, cell=cell: (fwd_fn(m, cell)(**valid(cell)[0]), up), TypeError,
          r"^cache: expected the cache returned by .*got tuple$")
    bcase(f"{cell}-cache-from-{other}", cell,
          lambda up, c, m, other=other: (fwd_fn(m, other)(**valid(other)[0])[-1], up), TypeError,
          rf"^cache: this cache comes from {other}_forward, not {cell}_forward")
    # backward: upstream gradients
    bcase(f"{cell}-dy-T+1", cell, lambda up, c, m: (c, dict(up, dy=np.zeros((T + 1, B, H)))),
          ValueError, rf"^dy: expected shape \(T, B, H\) of the forward = \({T}, {B}, {H}\)")
    bcase(f"{cell}-dy-H+1", cell, lambda up, c, m: (c, dict(up, dy=np.zeros((T, B, H + 1)))),
          ValueError, r"^dy: expected shape")
    bcase(f"{cell}-dy-2D", cell, lambda up, c, m: (c, dict(up, dy=np.zeros((T * B, H)))),
          ValueError, r"^dy: expected shape")
    bcase(f"{cell}-dh_n-B+1", cell, lambda up, c, m: (c, dict(up, dh_n=np.zeros((B + 1, H)))),
          ValueError, rf"^dh_n: expected shape \(B, H\) of the forward = \({B}, {H}\)")
    bcase(f"{cell}-dh_n-1D", cell, lambda up, c, m: (c, dict(up, dh_n=np.zeros(B * H))),
          ValueError, r"^dh_n: expected shape")
    bcase(f"{cell}-dy-f32", cell, lambda up, c, m: (c, dict(up, dy=up["dy"].astype(np.float32))),
          TypeError, r"^dy: dtype float32 does not match x's dtype float64")
    bcase(f"{cell}-dy-int", cell, lambda up, c, m: (c, dict(up, dy=np.zeros((T, B, H), int))),
          TypeError, r"^dy: expected float32 or float64")
    bcase(f"{cell}-dy-list", cell, lambda up, c, m: (c, dict(up, dy=up["dy"].tolist())),
          TypeError, r"^dy: expected a numpy.ndarray, got list")
    bcase(f"{cell}-dy-scalar", cell, lambda up, c, m: (c, dict(up, dy=1.0)),
          TypeError, r"^dy: expected a numpy.ndarray, got float")
    bcase(f"{cell}-dh_n-f32", cell,
          lambda up, c, m: (c, dict(up, dh_n=up["dh_n"].astype(np.float32))),
          TypeError, r"^dh_n: dtype float32 does not match")
    bcase(f"{cell}-dh_n-float16", cell,
          lambda up, c, m: (c, dict(up, dh_n=up["dh_n"].astype(np.float16))),
          TypeError, r"^dh_n: expected float32 or float64")
    bcase(f"{cell}-dy-f64-in-f32-call", cell, lambda up, c, m: (c, dict(up, dy=np.zeros((T, B, H)))),
          TypeError, r"^dy: dtype float64 does not match x's dtype float32", dtype=np.float32)
    if cell == "lstm":
        bcase("lstm-dc_n-H+1", cell, lambda up, c, m: (c, dict(up, dc_n=np.zeros((B, H + 1)))),
              ValueError, rf"^dc_n: expected shape \(B, H\) of the forward = \({B}, {H}\)")
        bcase("lstm-dc_n-complex", cell,
              lambda up, c, m: (c, dict(up, dc_n=up["dc_n"].astype(np.complex128))),
              TypeError, r"^dc_n: expected float32 or float64")
        bcase("lstm-dc_n-f32", cell,
              lambda up, c, m: (c, dict(up, dc_n=up["dc_n"].astype(np.float32))),
              TypeError, r"^dc_n: dtype float32 does not match")

for val in ("sigmoid", "TANH", "Relu", None, 1, ""):
    fcase(f"rnn-nonlinearity-{val!r}", "rnn", setk(nonlinearity=val), ValueError,
          r"^nonlinearity: expected 'tanh' or 'relu', got " + repr(val).replace("(", r"\("))

CASE_IDS = sorted(CASES)


@pytest.mark.parametrize("mod", MODS)
@pytest.mark.parametrize("cid", CASE_IDS)
def test_bad_input_is_rejected(mod, cid):
    cell, build, exc, match = CASES[cid]
    call = build(mod)
    with pytest.raises(exc, match=match) as info:
        call()
    assert type(info.value) is exc  # not a subclass that happens to match


@pytest.mark.parametrize("cid", CASE_IDS)
def test_messages_identical_between_implementations(cid):
    cell, build, exc, match = CASES[cid]
    got = []
    for mod in (fastlstm, reference):
        with pytest.raises(exc) as info:
            build(mod)()
        got.append((type(info.value), str(info.value)))
    assert got[0] == got[1]


@pytest.mark.parametrize("cell", ["lstm", "gru", "rnn"])
@pytest.mark.parametrize("maker,user", [(fastlstm, reference), (reference, fastlstm)],
                         ids=["fast-cache-to-ref", "ref-cache-to-fast"])
def test_cache_from_the_other_implementation(cell, maker, user):
    kw, up = valid(cell)
    cache = fwd_fn(maker, cell)(**kw)[-1]
    made = "fast" if maker is fastlstm else "reference"
    with pytest.raises(TypeError, match=rf"^cache: this cache was made by the {made} "
                                        rf"implementation; pass it to that implementation's "
                                        rf"{cell}_backward$"):
        bwd_fn(user, cell)(cache, **up)
    # ... while the matching implementation accepts it
    assert bwd_fn(maker, cell)(cache, **up).dx.shape == (T, B, I)


@pytest.mark.parametrize("mod", MODS)
def test_numpy_bool_flags_are_accepted(mod):
    """np.bool_ flags are accepted as booleans (the other side of the checks above)."""
    kw, _ = valid("rnn", nl="relu")
    y0, h0_, _ = mod.rnn_forward(**kw, reverse=True, training=True)
    y1, h1_, c1 = mod.rnn_forward(**kw, reverse=np.True_, training=np.False_)
    assert c1 is None
    assert_array_equal(y0, y1)
    assert_array_equal(h0_, h1_)


# ------------------------------------------------ odd-but-valid layouts

def _run(mod, cellnl, kw, up):
    cell, nl = cellnl
    kw = dict(kw)
    if nl is not None:
        kw["nonlinearity"] = nl
    out = fwd_fn(mod, cell)(**kw)
    g = bwd_fn(mod, cell)(out[-1], **up)
    return list(out[:-1]) + list(g)


def _base(cellnl, seed=0, lengths=None):
    kw, up = valid(cellnl[0], seed=seed)
    kw.pop("nonlinearity", None)
    kw["lengths"] = lengths
    return kw, up


def _strided(a, axis):
    """The same values as `a`, viewed with stride 2 along `axis` (not contiguous)."""
    shape = list(a.shape)
    shape[axis] *= 2
    big = np.full(shape, np.nan if a.dtype.kind == "f" else 99, a.dtype)
    idx = [slice(None)] * a.ndim
    idx[axis] = slice(None, None, 2)
    big[tuple(idx)] = a
    v = big[tuple(idx)]
    assert not v.flags.c_contiguous or a.size <= 1
    return v


def _negative(a):
    v = a[::-1].copy()[::-1]
    assert v.strides[0] < 0 or a.shape[0] <= 1
    return v


def _unaligned(a):
    """A C-contiguous copy of a whose data pointer is not aligned to the itemsize."""
    buf = np.zeros(a.nbytes + 1, np.uint8)
    u = np.frombuffer(buf.data, dtype=a.dtype, count=a.size, offset=1).reshape(a.shape)
    u[...] = a
    assert not u.flags.aligned and u.flags.c_contiguous
    return u


def _readonly(a):
    a = a.copy()
    a.setflags(write=False)
    return a


LAYOUTS = {
    "x[:, ::2]": lambda kw, up: kw.update(x=_strided(kw["x"], 1)),
    "x[..., ::2]": lambda kw, up: kw.update(x=_strided(kw["x"], 2)),
    "fortran-all": lambda kw, up: (kw.update({k: np.asfortranarray(v) for k, v in kw.items()
                                              if isinstance(v, np.ndarray)}),
                                   up.update({k: np.asfortranarray(v) for k, v in up.items()})),
    "weights-w.T.copy().T": lambda kw, up: kw.update(w_ih=kw["w_ih"].T.copy().T,
                                                     w_hh=kw["w_hh"].T.copy().T),
    "strided-biases-states": lambda kw, up: kw.update(
        {k: _strided(v, 0) for k, v in kw.items() if k in ("b_ih", "b_hh", "h0", "c0")}),
    "negative-strides": lambda kw, up: (kw.update({k: _negative(v) for k, v in kw.items()
                                                   if isinstance(v, np.ndarray)}),
                                        up.update({k: _negative(v) for k, v in up.items()})),
    "read-only-all": lambda kw, up: (kw.update({k: _readonly(v) for k, v in kw.items()
                                                if isinstance(v, np.ndarray)}),
                                     up.update({k: _readonly(v) for k, v in up.items()})),
    "unaligned-all": lambda kw, up: (kw.update({k: _unaligned(v) for k, v in kw.items()
                                                if isinstance(v, np.ndarray)}),
                                     up.update({k: _unaligned(v) for k, v in up.items()})),
    "strided-upstream": lambda kw, up: up.update({k: _strided(v, v.ndim - 1)
                                                  for k, v in up.items()}),
    "strided-lengths": lambda kw, up: kw.update(lengths=_strided(np.array([3, 1], np.int32), 0)),
}


@pytest.mark.parametrize("mod", MODS)
@pytest.mark.parametrize("cellnl", CELLS)
@pytest.mark.parametrize("layout", sorted(LAYOUTS))
def test_odd_layouts_give_identical_results(mod, cellnl, layout):
    kw, up = _base(cellnl, seed=3, lengths=np.array([3, 1]))
    want = _run(mod, cellnl, kw, up)
    kw2 = {k: (v.copy() if isinstance(v, np.ndarray) else v) for k, v in kw.items()}
    up2 = {k: v.copy() for k, v in up.items()}
    LAYOUTS[layout](kw2, up2)
    for k in kw:  # the same values, in a different memory layout
        if isinstance(kw[k], np.ndarray):
            assert_array_equal(kw2[k], kw[k])
    got = _run(mod, cellnl, kw2, up2)
    for a, b in zip(got, want):
        if b is None:
            assert a is None
        else:
            assert a.dtype == b.dtype and a.shape == b.shape
            if mod is fastlstm:  # copied to contiguous memory: the very same computation
                assert_array_equal(a, b)
            else:  # NumPy's matmul may pick another BLAS call for another layout
                assert_allclose(a, b, rtol=1e-13, atol=1e-15)


@pytest.mark.parametrize("mod", MODS)
@pytest.mark.parametrize("cellnl", CELLS)
def test_broadcast_arrays_are_accepted(mod, cellnl):
    """Zero-stride (np.broadcast_to, read-only) initial states and biases."""
    kw, up = _base(cellnl, seed=4)
    for k in ("h0", "c0"):
        if k in kw:
            kw[k] = np.repeat(kw[k][:1], B, axis=0)
    want = _run(mod, cellnl, kw, up)
    kw2 = dict(kw)
    for k in ("h0", "c0"):
        if k in kw:
            kw2[k] = np.broadcast_to(kw[k][0], (B, H))
            assert kw2[k].strides[0] == 0
    kw2["b_ih"] = np.broadcast_to(kw["b_ih"][None], (2, kw["b_ih"].size))[1]
    got = _run(mod, cellnl, kw2, up)
    for a, b in zip(got, want):
        if b is not None:
            assert_array_equal(a, b)


@pytest.mark.parametrize("mod", MODS)
@pytest.mark.parametrize("cellnl", CELLS)
@pytest.mark.parametrize("lengths", [None, [0, 3]], ids=["full", "ragged"])
@pytest.mark.parametrize("reverse", [False, True], ids=["fwd", "rev"])
@pytest.mark.parametrize("dtype", [np.float64, np.float32], ids=["f64", "f32"])
def test_caller_arrays_are_never_written(mod, cellnl, lengths, reverse, dtype):
    kw, up = valid(cellnl[0], dtype=dtype, seed=5, nl=cellnl[1] or "tanh")
    if lengths is not None:
        kw["lengths"] = np.array(lengths, np.int32)
    kw["reverse"] = reverse
    before = {k: v.copy() for k, v in list(kw.items()) + list(up.items())
              if isinstance(v, np.ndarray)}
    flags = {k: v.flags.writeable for k, v in list(kw.items()) + list(up.items())
             if isinstance(v, np.ndarray)}
    out = fwd_fn(mod, cellnl[0])(**kw)
    bwd_fn(mod, cellnl[0])(out[-1], **up)
    bwd_fn(mod, cellnl[0])(out[-1], **{k: v for k, v in up.items() if k != "dy"})
    after = dict(kw, **up)
    for k, v in before.items():
        assert after[k].dtype == v.dtype and after[k].shape == v.shape, k
        assert after[k].tobytes() == v.tobytes(), k  # bitwise, NaN-safe
        assert after[k].flags.writeable == flags[k], k


SUBCLASSES = {
    "np.matrix-weights": lambda kw: kw.update(w_ih=np.asmatrix(kw["w_ih"]),
                                              w_hh=np.asmatrix(kw["w_hh"])),
    "np.ma.MaskedArray-x": lambda kw: kw.update(x=np.ma.masked_array(kw["x"], mask=False)),
}


@pytest.mark.filterwarnings("ignore::PendingDeprecationWarning")  # np.matrix
@pytest.mark.parametrize("cellnl", CELLS)
@pytest.mark.parametrize("sub", sorted(s for s in SUBCLASSES if "Masked" not in s))
def test_ndarray_subclasses_behave_the_same_in_both(cellnl, sub):
    kw, up = _base(cellnl, seed=8)
    kw2 = dict(kw)
    SUBCLASSES[sub](kw2)
    want = _run(fastlstm, cellnl, kw, up)
    for mod in (fastlstm, reference):
        got = _run(mod, cellnl, kw2, up)
        for a, b in zip(got, want):
            if b is not None:
                assert type(a) is np.ndarray
                assert_allclose(a, b, rtol=1e-12, atol=1e-14)


@pytest.mark.parametrize("mod", [fastlstm, reference], ids=["fast", "ref"])
@pytest.mark.parametrize("cellnl", CELLS)
def test_masked_arrays_are_rejected_by_name(mod, cellnl):
    kw, up = _base(cellnl, seed=8)
    SUBCLASSES["np.ma.MaskedArray-x"](kw)
    with pytest.raises(TypeError, match=r"^x: masked arrays are not supported"):
        _run(mod, cellnl, kw, up)


# --------------------------------------------------------- NaN and huge

@pytest.mark.parametrize("cellnl", CELLS)
@pytest.mark.parametrize("reverse", [False, True], ids=["fwd", "rev"])
def test_nan_in_x_propagates_within_its_row(cellnl, reverse):
    """NaN in x[t, b] makes NaN: y[., b] at t and at every later processed step
    (later in time forward, earlier in reverse) up to b's length, h_n[b] (and
    c_n[b]), and some weight gradients (for relu, whose derivative at NaN is 0
    as in PyTorch, dx and the bias gradients stay finite); every other row's
    y, h_n, c_n, dx, dh0, dc0 are exactly those of the NaN-free run, and the
    fast path and the reference agree on where the NaNs are."""
    Tn, Bn = 6, 3
    lengths = np.array([6, 5, 4])
    t_nan, b_nan = 2, 1
    nl = cellnl[1] or "tanh"
    kw, up = valid(cellnl[0], seed=6, nl=nl)
    rng = np.random.default_rng(6)
    kw["x"] = rng.standard_normal((Tn, Bn, I))
    kw["h0"] = rng.standard_normal((Bn, H))
    if "c0" in kw:
        kw["c0"] = rng.standard_normal((Bn, H))
        up["dc_n"] = rng.standard_normal((Bn, H))
    up["dy"] = rng.standard_normal((Tn, Bn, H))
    up["dh_n"] = rng.standard_normal((Bn, H))
    kw.update(lengths=lengths, reverse=reverse)
    bad = dict(kw, x=kw["x"].copy())
    bad["x"][t_nan, b_nan, 0] = np.nan
    L = lengths[b_nan]
    nan_steps = np.zeros(Tn, bool)
    if reverse:
        nan_steps[:t_nan + 1] = True
    else:
        nan_steps[t_nan:L] = True
    others = [b for b in range(Bn) if b != b_nan]
    patterns = []
    for mod in (fastlstm, reference):
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", RuntimeWarning)  # the reference's matmul may warn
            out = fwd_fn(mod, cellnl[0])(**bad)
            g = bwd_fn(mod, cellnl[0])(out[-1], **up)
        clean = fwd_fn(mod, cellnl[0])(**kw)
        g_clean = bwd_fn(mod, cellnl[0])(clean[-1], **up)
        y = out[0]
        assert np.all(np.isnan(y[nan_steps, b_nan]))
        assert np.all(np.isfinite(y[~nan_steps, b_nan]))
        assert_array_equal(y[~nan_steps, b_nan], clean[0][~nan_steps, b_nan])
        assert np.all(np.isnan(out[1][b_nan]))
        if cellnl[0] == "lstm":
            assert np.all(np.isnan(out[2][b_nan]))
        for a, c in zip(out[:-1], clean[:-1]):  # y, h_n, c_n of the other rows
            assert_array_equal(a[..., others, :], c[..., others, :])
        for name in ("dx", "dh0", "dc0"):
            if hasattr(g, name):
                a, c = getattr(g, name), getattr(g_clean, name)
                assert_array_equal(a[..., others, :], c[..., others, :], err_msg=name)
        assert np.any(np.isnan(g.dw_ih)) and np.any(np.isnan(g.dw_hh))
        if cellnl[1] != "relu":
            assert np.any(np.isnan(g.dx[:, b_nan])) and np.all(np.isnan(g.db_ih))
        patterns.append([np.isnan(a) for a in list(out[:-1]) + list(g)])
    for pf, pr in zip(*patterns):
        assert_array_equal(pf, pr)


def _huge(cellnl, dtype):
    rng = np.random.default_rng(7)
    G = GATES[cellnl[0]]
    Tn, Bn, In, Hn = 4, 3, 5, 6
    kw = dict(x=1000 * rng.standard_normal((Tn, Bn, In)),
              w_ih=rng.uniform(-5, 5, (G * Hn, In)), w_hh=rng.uniform(-5, 5, (G * Hn, Hn)),
              b_ih=rng.uniform(-5, 5, G * Hn), b_hh=rng.uniform(-5, 5, G * Hn),
              h0=rng.uniform(-1, 1, (Bn, Hn)), lengths=[4, 2, 3])
    up = dict(dy=rng.standard_normal((Tn, Bn, Hn)), dh_n=rng.standard_normal((Bn, Hn)))
    if cellnl[0] == "lstm":
        kw["c0"] = rng.standard_normal((Bn, Hn))
        up["dc_n"] = rng.standard_normal((Bn, Hn))
    kw = {k: (v.astype(dtype) if isinstance(v, np.ndarray) else v) for k, v in kw.items()}
    up = {k: v.astype(dtype) for k, v in up.items()}
    if cellnl[1]:
        kw["nonlinearity"] = cellnl[1]
    return kw, up


def _run_huge(mod, cellnl, kw, up):
    out = fwd_fn(mod, cellnl[0])(**kw)
    g = bwd_fn(mod, cellnl[0])(out[-1], **up)
    return list(out[:-1]) + [a for a in g if a is not None]


@pytest.mark.parametrize("cellnl", CELLS)
@pytest.mark.parametrize("dtype", [np.float64, np.float32], ids=["f64", "f32"])
def test_huge_inputs_stay_finite_without_warnings(cellnl, dtype):
    """|x| ~ 1000 and weights up to 5: saturated gates, finite results, no
    warnings and no floating-point error of any kind (np.errstate(all="raise"),
    so not even underflow: regression for the reference's sigmoid, whose
    np.exp(-|v|) used to underflow), and both implementations agree."""
    kw, up = _huge(cellnl, dtype)
    res = {}
    for mod in (fastlstm, reference):
        with warnings.catch_warnings():
            warnings.simplefilter("error")
            with np.errstate(all="raise"):
                res[mod] = _run_huge(mod, cellnl, kw, up)
        for a in res[mod]:
            assert a.dtype == dtype
            assert np.all(np.isfinite(a))
    y = res[fastlstm][0]
    if cellnl[1] != "relu":  # saturated: |y| <= 1, and the tanh cell reaches +-1 exactly
        assert np.all(np.abs(y) <= 1)
    if cellnl[1] == "tanh":
        assert np.all(np.isin(y[y != 0], [-1, 1]))
    rtol, atol = (1e-10, 1e-12) if dtype == np.float64 else (1e-4, 1e-5)
    for a, b in zip(res[fastlstm], res[reference]):
        assert_allclose(a, b, rtol=rtol, atol=atol * max(1.0, float(np.max(np.abs(b)))))


def _wide(cellnl, dtype):
    """Pre-activations spread evenly over [-1000, 1000] (x does it, w_ih = 1),
    so that some land where sigmoid / tanh / their derivatives are tiny but
    not yet 0 (about [-104, -87] in float32, [-745, -708] in float64)."""
    G = GATES[cellnl[0]]
    Tn, Bn, Hn = 2, 512, 2
    rng = np.random.default_rng(9)
    kw = dict(x=np.linspace(-1000, 1000, Tn * Bn).reshape(Tn, Bn, 1).astype(dtype),
              w_ih=np.ones((G * Hn, 1), dtype),
              w_hh=rng.uniform(-0.01, 0.01, (G * Hn, Hn)).astype(dtype))
    up = dict(dy=rng.standard_normal((Tn, Bn, Hn)).astype(dtype))
    if cellnl[1]:
        kw["nonlinearity"] = cellnl[1]
    return kw, up


@pytest.mark.parametrize("mod,cellnl", [
    pytest.param(m, c, id=f"{mid}-{cid}")
    for mid, m in (("fast", fastlstm), ("ref", reference))
    for cid, c in (("lstm", ("lstm", None)), ("gru", ("gru", None)),
                   ("rnn_tanh", ("rnn", "tanh")), ("rnn_relu", ("rnn", "relu")))])
@pytest.mark.parametrize("dtype", [np.float64, np.float32], ids=["f64", "f32"])
def test_wide_input_range_errstate_all_raise(mod, cellnl, dtype):
    kw, up = _wide(cellnl, dtype)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        with np.errstate(all="raise"):
            res = _run_huge(mod, cellnl, kw, up)
    for a in res:
        assert a.dtype == dtype and np.all(np.isfinite(a))


@pytest.mark.parametrize("cellnl", CELLS)
@pytest.mark.parametrize("dtype", [np.float64, np.float32], ids=["f64", "f32"])
def test_wide_input_range_fast_matches_reference(cellnl, dtype):
    kw, up = _wide(cellnl, dtype)
    with np.errstate(under="ignore"):
        want = _run_huge(reference, cellnl, kw, up)
    got = _run_huge(fastlstm, cellnl, kw, up)
    rtol, atol = (1e-10, 1e-12) if dtype == np.float64 else (1e-4, 1e-5)
    for a, b in zip(got, want):
        assert a.dtype == b.dtype == dtype and np.all(np.isfinite(a))
        assert_allclose(a, b, rtol=rtol, atol=atol * max(1.0, float(np.max(np.abs(b)))))
