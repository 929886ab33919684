"""Argument checks shared by the fast path and the NumPy reference.

Both implementations call the same functions, so they accept exactly the same
input and reject bad input with the same exception and message. Every message
names the offending argument and says what was expected.
"""

from collections import namedtuple

import numpy as np

#: gates per cell, in PyTorch's stacking order
GATES = {"lstm": 4, "gru": 3, "rnn": 1}
_GATE_NAMES = {"lstm": "4*H", "gru": "3*H", "rnn": "H"}
_FLOATS = (np.dtype(np.float32), np.dtype(np.float64))

ForwardArgs = namedtuple(
    "ForwardArgs",
    "cell dtype T B I H x w_ih w_hh b_ih b_hh h0 c0 lengths reverse nonlinearity",
)


class RNNCache:
    """Opaque record of a training-mode forward pass, consumed by backward.

    Made by ``*_forward(..., training=True)`` of one implementation (the fast
    path or the reference) and accepted only by the matching ``*_backward``.
    It keeps references to the (possibly copied) inputs and the saved
    per-step workspace; it never exposes or modifies the caller's arrays.
    """

    __slots__ = ("impl", "args", "saved")

    def __init__(self, impl, args, saved):
        self.impl = impl
        self.args = args
        self.saved = saved

    def __repr__(self):
        a = self.args
        return (f"<fastlstm {a.cell} cache ({self.impl}) T={a.T} B={a.B} I={a.I} "
                f"H={a.H} {a.dtype.name}>")


def _type_name(v):
    return type(v).__module__ + "." + type(v).__qualname__ if type(v).__module__ not in (
        "builtins",) else type(v).__qualname__


def _array(name, v, dtype=None, allow_none=False):
    """v must be a float32/float64 ndarray (of `dtype` when given)."""
    if v is None:
        if allow_none:
            return None
        raise TypeError(f"{name}: expected a numpy.ndarray, got None")
    if not isinstance(v, np.ndarray):
        raise TypeError(f"{name}: expected a numpy.ndarray, got {_type_name(v)}")
    if type(v) is not np.ndarray:  # a subclass
        if isinstance(v, np.ma.MaskedArray):
            raise TypeError(f"{name}: masked arrays are not supported (their mask would be "
                            f"ignored); pass a plain array, e.g. {name}.filled(0)")
        v = np.asarray(v)  # np.matrix and friends: the same data as a plain array
    if v.dtype.kind == "f" and not v.dtype.isnative:
        v = v.astype(v.dtype.newbyteorder("="))  # non-native byte order: one copy
    if v.dtype not in _FLOATS:
        raise TypeError(f"{name}: expected float32 or float64 data, got dtype {v.dtype}")
    if dtype is not None and v.dtype != dtype:
        raise TypeError(f"{name}: dtype {v.dtype} does not match x's dtype {dtype}; "
                        f"all arrays of one call must share one dtype")
    return v


def _shape(name, v, expected, what):
    if v is not None and v.shape != expected:
        raise ValueError(f"{name}: expected shape {what} = {expected}, got {v.shape}")


def _bool(name, v):
    if isinstance(v, (bool, np.bool_)):
        return bool(v)
    raise TypeError(f"{name}: expected True or False, got {v!r}")


def check_lengths(lengths, T, B):
    """lengths: None, or B integers in [0, T] (any integer dtype) -> int64 array."""
    if lengths is None:
        return None
    if isinstance(lengths, (str, bytes, dict, set)):
        raise TypeError(f"lengths: expected a sequence of {B} integers, got {_type_name(lengths)}")
    try:
        arr = np.asarray(lengths)
    except (TypeError, ValueError) as e:
        raise TypeError(f"lengths: expected a sequence of {B} integers ({e})") from None
    if arr.size == 0 and arr.dtype == np.float64 and not isinstance(lengths, np.ndarray):
        arr = arr.astype(np.int64)  # an empty list of lengths, for an empty batch
    if arr.dtype == np.bool_ or arr.dtype.kind not in "iu":
        raise TypeError(f"lengths: expected integers, got dtype {arr.dtype}")
    if arr.shape != (B,):
        raise ValueError(f"lengths: expected shape (B,) = ({B},), got {arr.shape}")
    if B and (arr.min() < 0 or arr.max() > T):
        raise ValueError(f"lengths: every length must lie in [0, T] = [0, {T}], "
                         f"got values from {arr.min()} to {arr.max()}")
    return np.require(arr, dtype=np.int64, requirements=("C", "A"))


def check_forward(cell, x, w_ih, w_hh, b_ih, b_hh, h0, c0, lengths, reverse, training,
                  nonlinearity=None):
    """Validate a forward call; returns (ForwardArgs, training)."""
    G = GATES[cell]
    gname = _GATE_NAMES[cell]
    x = _array("x", x)
    dtype = x.dtype
    if x.ndim != 3:
        raise ValueError(f"x: expected a 3-D array (T, B, I), got shape {x.shape}")
    T, B, I = x.shape
    if I < 1:
        raise ValueError(f"x: the input size I (last axis) must be at least 1, got shape {x.shape}")
    w_ih = _array("w_ih", w_ih, dtype)
    w_hh = _array("w_hh", w_hh, dtype)
    if w_ih.ndim != 2:
        raise ValueError(f"w_ih: expected a 2-D array ({gname}, I), got shape {w_ih.shape}")
    if w_ih.shape[0] < G or w_ih.shape[0] % G:
        raise ValueError(f"w_ih: expected shape ({gname}, I) with H >= 1, so the first axis "
                         f"must be a positive multiple of {G}; got shape {w_ih.shape}")
    H = w_ih.shape[0] // G
    if w_ih.shape[1] != I:
        raise ValueError(f"w_ih: expected shape ({gname}, I) = ({G * H}, {I}) to match x's "
                         f"input size I = {I}, got {w_ih.shape}")
    if w_hh.ndim != 2:
        raise ValueError(f"w_hh: expected a 2-D array ({gname}, H), got shape {w_hh.shape}")
    _shape("w_hh", w_hh, (G * H, H), f"({gname}, H) with H = {H} from w_ih")
    if (b_ih is None) != (b_hh is None):
        missing = "b_hh" if b_hh is None else "b_ih"
        raise ValueError(f"{missing}: pass both biases (b_ih and b_hh) or neither")
    b_ih = _array("b_ih", b_ih, dtype, allow_none=True)
    b_hh = _array("b_hh", b_hh, dtype, allow_none=True)
    _shape("b_ih", b_ih, (G * H,), f"({gname},) with H = {H}")
    _shape("b_hh", b_hh, (G * H,), f"({gname},) with H = {H}")
    h0 = _array("h0", h0, dtype, allow_none=True)
    _shape("h0", h0, (B, H), f"(B, H) with B = {B} from x and H = {H} from w_ih")
    if cell == "lstm":
        c0 = _array("c0", c0, dtype, allow_none=True)
        _shape("c0", c0, (B, H), f"(B, H) with B = {B} from x and H = {H} from w_ih")
    lengths = check_lengths(lengths, T, B)
    reverse = _bool("reverse", reverse)
    training = _bool("training", training)
    if cell == "rnn":
        if nonlinearity not in ("tanh", "relu"):
            raise ValueError(f"nonlinearity: expected 'tanh' or 'relu', got {nonlinearity!r}")
    args = ForwardArgs(cell, dtype, T, B, I, H, x, w_ih, w_hh, b_ih, b_hh, h0, c0, lengths,
                       reverse, nonlinearity)
    return args, training


def key_mismatch(expected, given, missing="missing", unexpected="unexpected"):
    """'missing a, b; unexpected c' for the keys of `expected` absent from
    `given` and those of `given` absent from `expected`, or None if they match."""
    miss = [k for k in expected if k not in given]
    extra = [k for k in given if k not in expected]
    what = []
    if miss:
        what.append(f"{missing} " + ", ".join(map(str, miss)))
    if extra:
        what.append(f"{unexpected} " + ", ".join(map(str, extra)))
    return "; ".join(what) or None


def check_cache(cache, impl, cell, func):
    if not isinstance(cache, RNNCache):
        raise TypeError(f"cache: expected the cache returned by {func.replace('backward', 'forward')}"
                        f"(..., training=True), got {_type_name(cache)}"
                        + (" (the forward ran with training=False, which keeps no cache)"
                           if cache is None else ""))
    if cache.args.cell != cell:
        raise TypeError(f"cache: this cache comes from {cache.args.cell}_forward, "
                        f"not {cell}_forward")
    if cache.impl != impl:
        raise TypeError(f"cache: this cache was made by the {cache.impl} implementation; "
                        f"pass it to that implementation's {cell}_backward")
    return cache.args


def check_grad(name, v, dtype, shape, what):
    v = _array(name, v, dtype, allow_none=True)
    _shape(name, v, shape, what)
    return v


def check_backward_grads(args, dy, dh_n, dc_n=None):
    T, B, H, dt = args.T, args.B, args.H, args.dtype
    dy = check_grad("dy", dy, dt, (T, B, H), "(T, B, H) of the forward")
    dh_n = check_grad("dh_n", dh_n, dt, (B, H), "(B, H) of the forward")
    if args.cell == "lstm":
        dc_n = check_grad("dc_n", dc_n, dt, (B, H), "(B, H) of the forward")
    return dy, dh_n, dc_n
