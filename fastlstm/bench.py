"""``python -m fastlstm.bench``: time fastlstm against the reference and its peers.

Times, interleaved in one process, the C kernels (``fastlstm``), the NumPy
reference (``fastlstm.reference``) and whichever peers are installed:

* PyTorch's CPU ``torch.nn.LSTM`` / ``GRU`` / ``RNN`` (forward under
  ``torch.no_grad()``, and forward+backward);
* ONNX Runtime's CPU ``LSTM`` / ``GRU`` (``linear_before_reset=1``, which is
  PyTorch's GRU) / ``RNN`` operators, each a one-node model built with
  ``onnx.helper`` (forward only).

It prints, per (mode, thread count), a markdown table of median times, the
ratio peer/fastlstm of every peer (above 1 means fastlstm is faster), the
GFLOP/s fastlstm achieves and the fraction of the machine's GEMM peak, which
the command measures itself: the best n x n GEMM of SciPy's ``sgemm``
(``dgemm`` for float64; the BLAS the C kernels may call), ``torch.mm`` and ONNX
Runtime's ``MatMul`` (those of the peers being timed), since a BLAS need not
use the CPU's widest vectors. It is measured before and after each thread
count's cases, and the higher of the two is the peak (a busy machine only
ever lowers a measurement), so the tables of a thread count are printed once
its cases are done. Two smaller tables follow: the latency of one
cell step at B=1 (against ``torch.nn.LSTMCell`` and friends) and a ragged
batch (PackedSequence semantics) against the same tokens as a dense batch, the
padded batch and torch's ``pack_padded_sequence`` path. ``--json PATH``
writes every raw sample, median and ratio with a description of the machine.

Method. For each case every implementation is warmed up once, then the
implementations are called in turn, round after round (the first in the
rotation changing each round), so that drift of the machine hits all of them
alike; the reported time is the median over rounds. A turn is 20 ms of
untimed calls (0.15 s after the reference), which outlast the spinning idle
threads of the implementation before, then the timed call. Rounds are capped by a
time budget per case (``--budget``), with at least 3 (or ``--repeat`` if
smaller). The NumPy reference is only timed where one call is estimated, from
a short prefix of the sequence, to take under ``--ref-limit`` seconds.

FLOP count: one step of the forward is ``2*B*G*H*(I+H)`` (the two matrix
products; G = 4, 3, 1 gates) and forward+backward is counted as 3x the
forward. A ragged batch counts only its valid steps.

Thread count: ``--threads 1,2`` runs everything once per count, set in one
place (:func:`set_num_threads`): the BLAS pools via threadpoolctl when it is
installed (else OpenBLAS's own ``set_num_threads`` through ctypes),
``torch.set_num_threads``, ``fastlstm.set_num_threads`` and ONNX Runtime's
``intra_op_num_threads`` (with spin-waiting off, so that idle ORT threads do
not steal the cores from the implementation timed next).

Neither peer is a dependency of fastlstm: ``pip install torch==2.13.0 onnx
onnxruntime threadpoolctl`` to get them all.
"""

import argparse
import ctypes
import gc
import importlib.util
import json
import os
import platform
import statistics
import sys
import time

import numpy as np

import fastlstm
from fastlstm import reference
from fastlstm.selfcheck import make_problem

CELLS = ("lstm", "gru", "rnn")
GATES = {"lstm": 4, "gru": 3, "rnn": 1}
MODES = ("fwd", "fwdbwd")
MODE_TITLES = {"fwd": "forward (inference, training=False)",
               "fwdbwd": "forward + backward (training=True, then backward(dy))"}
PEERS = ("torch", "ort")
#: column order of the implementations
IMPLS = ("fastlstm", "reference", "torch", "ort")
SHORT = {"reference": "ref", "torch": "torch", "ort": "ort"}

#: (T, B, I, H) of the default run
DEFAULT_SHAPES = ((100, 1, 64, 64), (1000, 1, 32, 32), (100, 16, 128, 128),
                  (100, 32, 256, 256), (100, 64, 512, 512), (50, 128, 1024, 1024))
QUICK_SHAPES = ((6, 2, 5, 4), (4, 3, 8, 8))
DEFAULT_RAGGED_SHAPE = (100, 64, 256, 256)
QUICK_RAGGED_SHAPE = (6, 4, 5, 4)
#: the single-step latency case (B, I, H)
LATENCY_SHAPE = (1, 64, 64)

#: tolerated max relative difference between a peer's y and fastlstm's
TOLERANCE = {"float32": 1e-3, "float64": 1e-8}


# --------------------------------------------------------------------------
# threads


def _have(module):
    """True when `module` can be imported (without importing it)."""
    try:
        return importlib.util.find_spec(module) is not None
    except (ImportError, ValueError):
        return False


def _openblas_set_num_threads(n):
    """Fallback without threadpoolctl: call set_num_threads of every loaded OpenBLAS."""
    names = ("openblas_set_num_threads", "scipy_openblas_set_num_threads",
             "scipy_openblas_set_num_threads64_", "openblas_set_num_threads64_")
    done = False
    try:
        with open("/proc/self/maps") as f:
            libs = {line.split()[-1] for line in f
                    if "openblas" in line.lower() and ".so" in line}
    except OSError:
        return False
    for path in sorted(libs):
        try:
            lib = ctypes.CDLL(path)
        except OSError:
            continue
        for name in names:
            fn = getattr(lib, name, None)
            if fn is not None:
                fn.argtypes = [ctypes.c_int]
                fn.restype = None
                fn(int(n))
                done = True
                break
    return done


class ThreadSettings:
    """Sets the thread count of every runtime in one place, and restores it.

    ``apply(n)`` limits the BLAS and OpenMP pools (threadpoolctl, or a ctypes
    fallback for OpenBLAS), calls ``torch.set_num_threads(n)`` when torch is
    loaded, and ``fastlstm.set_num_threads(n)``: fastlstm splits its time
    loop over n threads of its own where a step is large enough and the batch
    at most 64, and otherwise runs on the BLAS's n threads. ONNX Runtime
    sessions read ``n`` when they are made (see :func:`ort_session`).
    ``restore()`` undoes all of it.
    """

    def __init__(self):
        self.n = None
        self.method = None
        self._limiter = None
        self._torch_orig = None
        self._fast_orig = None

    def apply(self, n):
        self.restore_blas()
        # the originals first: threadpoolctl also limits the OpenMP pool that
        # torch's thread count reports
        if self._torch_orig is None and "torch" in sys.modules:
            self._torch_orig = sys.modules["torch"].get_num_threads()
        if self._fast_orig is None and hasattr(fastlstm, "get_num_threads"):
            self._fast_orig = fastlstm.get_num_threads()
        self.n = n
        try:
            from threadpoolctl import threadpool_limits
        except ImportError:
            self.method = ("OpenBLAS set_num_threads (ctypes)"
                           if _openblas_set_num_threads(n) else "none (no threadpoolctl)")
        else:
            self._limiter = threadpool_limits(limits=n)
            self.method = "threadpoolctl"
        if "torch" in sys.modules:
            sys.modules["torch"].set_num_threads(n)
        if hasattr(fastlstm, "set_num_threads"):
            fastlstm.set_num_threads(n)

    def restore_blas(self):
        if self._limiter is not None:
            self._limiter.restore_original_limits()
            self._limiter = None

    def restore(self):
        """Put every runtime back to the thread count it had before apply()."""
        self.restore_blas()
        if self.method and self.method.startswith("OpenBLAS"):
            _openblas_set_num_threads(os.cpu_count() or 1)
        if self._torch_orig is not None and "torch" in sys.modules:
            sys.modules["torch"].set_num_threads(self._torch_orig)
        if self._fast_orig is not None:
            fastlstm.set_num_threads(self._fast_orig)
        self.n = None


# --------------------------------------------------------------------------
# machine


def machine_info():
    """A description of the machine and the software versions (a dict)."""
    cpu = None
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    cpu = line.split(":", 1)[1].strip()
                    break
    except OSError:
        pass
    try:
        usable = len(os.sched_getaffinity(0))
    except AttributeError:
        usable = os.cpu_count()
    versions = {}
    from importlib import metadata
    for dist in ("numpy", "scipy", "torch", "onnx", "onnxruntime", "threadpoolctl"):
        try:
            versions[dist] = metadata.version(dist)
        except metadata.PackageNotFoundError:
            versions[dist] = None
    versions["fastlstm"] = fastlstm.__version__
    versions["python"] = platform.python_version()
    blas = None
    try:
        from threadpoolctl import threadpool_info
        blas = [{k: d.get(k) for k in ("user_api", "internal_api", "prefix", "version",
                                       "architecture", "threading_layer", "num_threads",
                                       "filepath")} for d in threadpool_info()]
    except ImportError:
        try:
            import scipy
            blas = scipy.show_config(mode="dicts").get("Build Dependencies", {}).get("blas")
        except Exception:  # old SciPy: no structured config
            blas = None
    return dict(cpu=cpu or platform.processor() or platform.machine(),
                logical_cpus=os.cpu_count(), usable_cpus=usable,
                platform=platform.platform(), versions=versions, blas=blas)


def describe_machine(info):
    v = info["versions"]
    soft = ", ".join(f"{k} {v[k]}" for k in ("fastlstm", "numpy", "scipy", "torch",
                                              "onnxruntime") if v.get(k))
    blas = ""
    if info["blas"] and isinstance(info["blas"], list):
        blas = "; BLAS: " + ", ".join(
            f"{d.get('internal_api')} {d.get('version')} ({d.get('architecture')})"
            for d in info["blas"] if d.get("user_api") == "blas")
    return (f"Machine: {info['cpu']}, {info['usable_cpus']} usable of {info['logical_cpus']} "
            f"logical CPUs, {info['platform']}\nSoftware: Python {v['python']}, {soft}{blas}")


def measure_gemm_peak(dtype, n=2048, repeat=5):
    """GFLOP/s of SciPy's sgemm (dgemm for float64) on n x n matrices: best of `repeat`.

    This is the BLAS the C kernels call, at the current thread count.
    """
    from scipy.linalg import blas
    gemm = blas.sgemm if np.dtype(dtype) == np.float32 else blas.dgemm
    rng = np.random.default_rng(0)
    a = np.asfortranarray(rng.standard_normal((n, n)).astype(dtype))
    b = np.asfortranarray(rng.standard_normal((n, n)).astype(dtype))
    c = np.zeros((n, n), dtype=dtype, order="F")
    gemm(1.0, a, b, 0.0, c, overwrite_c=True)
    return _gflops_best(lambda: gemm(1.0, a, b, 0.0, c, overwrite_c=True), n, repeat)


def _gflops_best(fn, n, repeat):
    fn()
    return 2.0 * n ** 3 / min(_time_once(fn) for _ in range(repeat)) / 1e9


def _torch_gemm(dtype, n, threads):
    import torch
    torch.set_num_threads(threads)
    tdtype = torch.float32 if np.dtype(dtype) == np.float32 else torch.float64
    gen = torch.Generator().manual_seed(0)
    a = torch.randn(n, n, generator=gen, dtype=tdtype)
    b = torch.randn(n, n, generator=gen, dtype=tdtype)
    c = torch.empty(n, n, dtype=tdtype)
    return lambda: torch.mm(a, b, out=c)


def _ort_gemm(dtype, n, threads):
    from onnx import TensorProto, helper
    elem = TensorProto.FLOAT if np.dtype(dtype) == np.float32 else TensorProto.DOUBLE
    graph = helper.make_graph(
        [helper.make_node("MatMul", ["A", "B"], ["C"])], "fastlstm_bench_gemm",
        [helper.make_tensor_value_info(x, elem, [n, n]) for x in ("A", "B")],
        [helper.make_tensor_value_info("C", elem, [n, n])])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 14)],
                              producer_name="fastlstm.bench")
    model.ir_version = 8
    sess = ort_session(model, threads)
    rng = np.random.default_rng(0)
    feeds = {x: rng.standard_normal((n, n)).astype(dtype) for x in ("A", "B")}
    return lambda: sess.run(None, feeds)


GEMM_SOURCES = {"scipy": "SciPy's BLAS", "torch": "torch.mm", "ort": "ONNX Runtime MatMul"}


def measure_gemm_peaks(dtype, threads, peers=(), n=2048, repeat=5):
    """GFLOP/s of an n x n GEMM from every source at hand, at `threads` threads:
    SciPy's BLAS (the one the C kernels may call) and the GEMMs of the
    installed peers (torch.mm, ONNX Runtime's MatMul). A BLAS need not run
    the CPU's widest vectors (SciPy's OpenBLAS runs its AVX2 kernels on CPUs
    it does not know), so the machine's peak is the best of them."""
    peaks = {"scipy": measure_gemm_peak(dtype, n=n, repeat=repeat)}
    makers = {"torch": _torch_gemm, "ort": _ort_gemm}
    for name in peers:
        if name in makers:
            peaks[name] = _gflops_best(makers[name](dtype, n, threads), n, repeat)
    return peaks


# --------------------------------------------------------------------------
# implementations


def flops(cell, T, B, I, H, mode, tokens=None):
    """FLOPs of one call: 2*G*H*(I+H) per valid step of one sequence, x3 with backward."""
    tokens = T * B if tokens is None else tokens
    f = 2.0 * tokens * GATES[cell] * H * (I + H)
    return 3.0 * f if mode == "fwdbwd" else f


class Runner:
    """One implementation of one case.

    ``fn()`` is the call that is timed; it returns the output sequence y in
    whatever form the implementation has, which ``to_numpy(y)`` turns into a
    (T, B, H) NumPy array to check the implementations agree.
    """

    def __init__(self, fn, to_numpy=np.asarray, note=None):
        self.fn = fn
        self.to_numpy = to_numpy
        self.note = note


def numpy_runner(module, cell, mode, fwd, bwd):
    """fastlstm or the reference: forward(training=False), or forward + backward(dy=dy)."""
    forward = getattr(module, cell + "_forward")
    backward = getattr(module, cell + "_backward")
    if mode == "fwd":
        def fn():
            return forward(**fwd, training=False)[0]
    else:
        dy = bwd["dy"]

        def fn():
            out = forward(**fwd, training=True)
            backward(out[-1], dy=dy)
            return out[0]
    return Runner(fn)


def _torch_module(cell, I, H, fwd):
    """torch.nn.LSTM/GRU/RNN(I, H) holding the weights of `fwd`."""
    import torch
    cls = {"lstm": torch.nn.LSTM, "gru": torch.nn.GRU, "rnn": torch.nn.RNN}[cell]
    m = cls(I, H)
    m = m.double() if fwd["x"].dtype == np.float64 else m.float()
    with torch.no_grad():
        for name in ("w_ih", "w_hh", "b_ih", "b_hh"):
            torch_name = ("weight_" if name[0] == "w" else "bias_") + name[2:] + "_l0"
            getattr(m, torch_name).copy_(torch.from_numpy(fwd[name]))
    return m


def torch_runner(cell, mode, fwd, bwd, packed=False):
    """torch.nn.LSTM/GRU/RNN on the same problem.

    fwd: under torch.no_grad(). fwdbwd: with gradients of the input, the
    initial state and every parameter, then y.backward(dy), like fastlstm's
    forward(training=True) + backward(dy=dy). With `packed`, the batch goes
    through pack_padded_sequence(enforce_sorted=False) and the output back
    through pad_packed_sequence, both inside the timed call.
    """
    import torch
    from torch.nn.utils.rnn import pack_padded_sequence, pad_packed_sequence
    x_np = fwd["x"]
    T, _, I = x_np.shape
    H = fwd["w_hh"].shape[1]
    m = _torch_module(cell, I, H, fwd)
    x = torch.from_numpy(x_np)
    h0 = torch.from_numpy(fwd["h0"])[None]
    c0 = torch.from_numpy(fwd["c0"])[None] if cell == "lstm" else None
    lengths = torch.as_tensor(np.asarray(fwd["lengths"]), dtype=torch.int64) if packed else None
    training = mode == "fwdbwd"
    if training:
        x.requires_grad_(True)
        h0.requires_grad_(True)
        if c0 is not None:
            c0.requires_grad_(True)
        dy = torch.from_numpy(bwd["dy"])
    hx = (h0, c0) if cell == "lstm" else h0

    def forward():
        if packed:
            inp = pack_padded_sequence(x, lengths, enforce_sorted=False)
            out, _ = m(inp, hx)
            return pad_packed_sequence(out, total_length=T)[0]
        return m(x, hx)[0]

    if training:
        def fn():
            m.zero_grad(set_to_none=True)
            x.grad = h0.grad = None
            if c0 is not None:
                c0.grad = None
            y = forward()
            y.backward(dy)
            return y
    else:
        def fn():
            with torch.no_grad():
                return forward()
    return Runner(fn, lambda y: y.detach().numpy())


#: PyTorch's gate blocks in ONNX's order: LSTM i,f,g,o -> i,o,f,c; GRU r,z,n -> z,r,h
_ONNX_GATE_ORDER = {"lstm": (0, 3, 1, 2), "gru": (1, 0, 2), "rnn": (0,)}


def onnx_weights(cell, w_ih, w_hh, b_ih, b_hh):
    """PyTorch-layout weights -> ONNX's W (1, G*H, I), R (1, G*H, H), B (1, 2*G*H)."""
    H = w_hh.shape[1]

    def reorder(a):
        return np.concatenate([a[k * H:(k + 1) * H] for k in _ONNX_GATE_ORDER[cell]])

    return (reorder(w_ih)[None], reorder(w_hh)[None],
            np.concatenate([reorder(b_ih), reorder(b_hh)])[None])


def onnx_model(cell, fwd):
    """A one-node ONNX model (LSTM / GRU with linear_before_reset=1 / RNN with Tanh).

    Inputs X (T, B, I), initial_h (1, B, H) and, for the LSTM, initial_c;
    W, R, B are initializers converted from the PyTorch-layout weights.
    Output Y (T, 1, B, H) and the final state(s).
    """
    import onnx
    from onnx import TensorProto, helper, numpy_helper
    dtype = fwd["x"].dtype
    elem = TensorProto.FLOAT if dtype == np.float32 else TensorProto.DOUBLE
    T, B, I = fwd["x"].shape
    H = fwd["w_hh"].shape[1]
    W, R, Bias = onnx_weights(cell, fwd["w_ih"], fwd["w_hh"], fwd["b_ih"], fwd["b_hh"])
    inits = [numpy_helper.from_array(np.ascontiguousarray(a, dtype), name)
             for a, name in ((W, "W"), (R, "R"), (Bias, "B"))]
    node_inputs = ["X", "W", "R", "B", "", "initial_h"]
    graph_inputs = [helper.make_tensor_value_info("X", elem, [T, B, I]),
                    helper.make_tensor_value_info("initial_h", elem, [1, B, H])]
    outputs = ["Y", "Y_h"]
    attrs = dict(hidden_size=H)
    if cell == "lstm":
        node_inputs.append("initial_c")
        graph_inputs.append(helper.make_tensor_value_info("initial_c", elem, [1, B, H]))
        outputs.append("Y_c")
    elif cell == "gru":
        attrs["linear_before_reset"] = 1
    else:
        attrs["activations"] = ["Tanh"]
    node = helper.make_node(cell.upper(), node_inputs, outputs, **attrs)
    shapes = {"Y": [T, 1, B, H], "Y_h": [1, B, H], "Y_c": [1, B, H]}
    graph = helper.make_graph([node], f"fastlstm_bench_{cell}", graph_inputs,
                              [helper.make_tensor_value_info(o, elem, shapes[o]) for o in outputs],
                              initializer=inits)
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 14)],
                              producer_name="fastlstm.bench")
    model.ir_version = 8
    onnx.checker.check_model(model)
    return model


def ort_session(model, threads):
    """A CPU InferenceSession of `model` on `threads` intra-op threads, no spin-waiting."""
    import onnxruntime as ort
    so = ort.SessionOptions()
    so.intra_op_num_threads = threads
    so.inter_op_num_threads = 1
    so.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
    so.add_session_config_entry("session.intra_op.allow_spinning", "0")
    so.log_severity_level = 4  # failures are reported by the benchmark itself
    return ort.InferenceSession(model.SerializeToString(), so,
                                providers=["CPUExecutionProvider"])


def ort_runner(cell, mode, fwd, threads):
    """ONNX Runtime's one-node model on the same problem (forward only)."""
    if mode != "fwd":
        return None
    sess = ort_session(onnx_model(cell, fwd), threads)
    feeds = {"X": fwd["x"], "initial_h": fwd["h0"][None]}
    if cell == "lstm":
        feeds["initial_c"] = fwd["c0"][None]

    def fn():
        return sess.run(None, feeds)[0]
    return Runner(fn, lambda y: y[:, 0])


def available_peers(requested):
    """The subset of `requested` peers that can be imported."""
    ok = {"torch": _have("torch"), "ort": _have("onnxruntime") and _have("onnx")}
    return [p for p in requested if ok[p]]


def make_runners(cell, mode, shape, dtype="float32", threads=1, peers=PEERS, reference_ok=True,
                 lengths=None, seed=0):
    """dict impl name -> Runner for one case (peers that do not apply are left out).

    Also usable on its own, e.g. to check that a peer computes what fastlstm does:
    ``r = make_runners("gru", "fwd", (5, 2, 3, 4)); r["ort"].to_numpy(r["ort"].fn())``.
    """
    T, B, I, H = shape
    fwd, bwd = make_problem(cell, T, B, I, H, dtype=np.dtype(dtype), seed=seed, lengths=lengths)
    runners = {"fastlstm": numpy_runner(fastlstm, cell, mode, fwd, bwd)}
    if reference_ok:
        runners["reference"] = numpy_runner(reference, cell, mode, fwd, bwd)
    if "torch" in peers:
        runners["torch"] = _peer(torch_runner, cell, mode, fwd, bwd)
    if "ort" in peers and lengths is None:
        r = _peer(ort_runner, cell, mode, fwd, threads)
        if r is not None:
            runners["ort"] = r
    return runners


def _peer(make, *args):
    """make(*args), or when that raises, a Runner whose fn raises the same error.

    So a peer that cannot handle a case (ONNX Runtime has no float64 RNN) is
    reported by :func:`time_interleaved` like one that fails when called.
    """
    try:
        return make(*args)
    except Exception as e:
        error = e

        def fail():
            raise error
        return Runner(fail)


# --------------------------------------------------------------------------
# timing


def _time_once(fn):
    """Wall time of one call of fn(), with the garbage collector off."""
    enabled = gc.isenabled()
    gc.disable()
    try:
        t0 = time.perf_counter()
        fn()
        return time.perf_counter() - t0
    finally:
        if enabled:
            gc.enable()


LEAD_IN_S = 0.02
LEAD_IN_AFTER_REFERENCE_S = 0.15


def time_interleaved(fns, repeat, budget, inner=None, lead_in=(LEAD_IN_S,
                                                             LEAD_IN_AFTER_REFERENCE_S)):
    """Median seconds per call of each fn in `fns` (a dict name -> fn), interleaved.

    Each fn is warmed up once (its result kept, returned as `first`); then
    rounds give every fn a turn, starting each round one further along the
    rotation. A turn is a lead-in of untimed calls, then the timed one. The
    lead-in lasts at least lead_in[0] seconds (at least one call; lead_in[1]
    after the NumPy reference): the idle threads of
    the implementation before keep spinning for a while after a call
    (OpenMP's, torch's, for about 10 ms here; OpenBLAS's, the reference's,
    for about 0.1 s), taking cores from the next one, so one untimed call
    of a short case did not outlast them. Each fn is thus timed as in a loop
    that calls it again and again, its own pool awake and no one else's
    spinning. The number of rounds is what fits in `budget` seconds by the
    warm-up times, clamped to [min(3, repeat), repeat]. `inner` (dict name ->
    int) times that many calls per sample instead of one, for very short calls.
    A peer (a name not starting with "fastlstm", nor "reference") that raises
    in its warm-up is left out, its error kept in `errors`. Returns (medians, samples, rounds, first, errors).
    """
    names = list(fns)
    inner = inner or {}
    first, warm, errors = {}, {}, {}
    for name in names:
        t0 = time.perf_counter()
        try:
            first[name] = fns[name]()
        except Exception as e:  # a peer that cannot run this case (e.g. ORT in float64)
            if name.startswith("fastlstm") or name == "reference":
                raise
            errors[name] = f"{type(e).__name__}: {str(e).strip().splitlines()[-1][:200]}"
            continue
        warm[name] = time.perf_counter() - t0
    names = [n for n in names if n not in errors]
    per_round = sum(warm[n] * inner.get(n, 1) for n in names)
    rounds = repeat if per_round <= 0 else int(budget // per_round)
    rounds = max(min(3, repeat), min(repeat, rounds))
    samples = {n: [] for n in names}
    gc.collect()
    before = None
    for r in range(rounds):
        for k in range(len(names)):
            name = names[(r + k) % len(names)]
            fn, n = fns[name], inner.get(name, 1)
            lead = lead_in[1] if before == "reference" else lead_in[0]
            t_lead = time.perf_counter() + lead
            fn()  # the untimed lead-in of the turn
            while time.perf_counter() < t_lead:
                fn()
            before = name
            if n == 1:
                samples[name].append(_time_once(fn))
            else:
                samples[name].append(_time_once(lambda: [fn() for _ in range(n)]) / n)
    return ({n: statistics.median(s) for n, s in samples.items()}, samples, rounds, first,
            errors)


def estimate_reference_time(cell, mode, shape, dtype, probe_steps=8):
    """Seconds one reference call of `shape` would take, extrapolated from a short prefix."""
    T, B, I, H = shape
    t = min(T, probe_steps)
    fwd, bwd = make_problem(cell, t, B, I, H, dtype=np.dtype(dtype))
    fn = numpy_runner(reference, cell, mode, fwd, bwd).fn
    fn()
    return min(_time_once(fn) for _ in range(2)) * T / t


def rel_diff(a, b):
    """max |a - b| / max |b| (0 for empty arrays)."""
    a = np.asarray(a, np.float64)
    b = np.asarray(b, np.float64)
    if a.shape != b.shape:
        return float("inf")
    return float(np.max(np.abs(a - b)) / max(np.max(np.abs(b)), 1e-300)) if b.size else 0.0


def _diffs(runners, first):
    """Max relative difference of every implementation's y from fastlstm's."""
    ref = runners["fastlstm"].to_numpy(first["fastlstm"])
    return {n: rel_diff(runners[n].to_numpy(first[n]), ref) for n in runners if n != "fastlstm"}


# --------------------------------------------------------------------------
# the three benchmarks


def bench_case(cell, mode, shape, threads, opts):
    """Time one (cell, mode, shape) at the current thread count -> result dict."""
    T, B, I, H = shape
    note = None
    reference_ok = opts.reference
    if reference_ok and opts.ref_limit is not None:
        est = estimate_reference_time(cell, mode, shape, opts.dtype)
        if est > opts.ref_limit:
            reference_ok = False
            note = f"reference skipped: estimated {est:.1f} s per call > {opts.ref_limit:g} s"
    runners = make_runners(cell, mode, shape, opts.dtype, threads, opts.peers, reference_ok)
    medians, samples, rounds, first, errors = time_interleaved(
        {n: r.fn for n, r in runners.items()}, opts.repeat, opts.budget, lead_in=opts.lead_in)
    diffs = _diffs({n: r for n, r in runners.items() if n in first}, first)
    del runners, first
    f = flops(cell, T, B, I, H, mode)
    fast = medians["fastlstm"]
    gflops = {n: f / t / 1e9 for n, t in medians.items()}
    return dict(cell=cell, mode=mode, threads=threads, shape=list(shape), dtype=opts.dtype,
                flops=f, rounds=rounds, median_s=medians, samples_s=samples,
                ratio_vs_fastlstm={n: t / fast for n, t in medians.items() if n != "fastlstm"},
                gflops=gflops, fastlstm_gflops=gflops["fastlstm"],
                fastlstm_peak_fraction=None,  # (set once the section's peak is known)
                max_rel_diff_vs_fastlstm=diffs, errors=errors, note=note)


def _fast_cell_step(cell, x, h, c, w):
    """One step of fastlstm at B rows: fastlstm.<Cell>Cell when it exists, else T=1 forward."""
    name = {"lstm": "LSTMCell", "gru": "GRUCell", "rnn": "RNNCell"}[cell]
    cls = getattr(fastlstm, name, None)
    if cls is not None:
        try:
            m = _make_fast_cell(cls, x.shape[1], h.shape[1], x.dtype, w)
            state = (h, c) if cell == "lstm" else h
            m(x, state)  # does the call work?
            return (lambda: m(x, state)), f"fastlstm.{name}"
        except Exception as e:  # an API this code does not know: fall back
            fallback = f"lstm_forward T=1 ({name} failed: {type(e).__name__})"
    else:
        fallback = None
    forward = getattr(fastlstm, cell + "_forward")
    kw = dict(h0=h, c0=c) if cell == "lstm" else dict(h0=h)
    x1 = x[None]

    def fn():
        return forward(x1, w["w_ih"], w["w_hh"], w["b_ih"], w["b_hh"], training=False, **kw)
    return fn, fallback or f"{cell}_forward T=1"


def _make_fast_cell(cls, I, H, dtype, w):
    """fastlstm.<Cell>Cell(I, H) in eval mode (inference: no cache) holding the weights `w`."""
    try:
        m = cls(I, H, dtype=dtype)
    except TypeError:
        m = cls(I, H)
    if hasattr(m, "eval"):
        m.eval()
    state = {("weight_" if k[0] == "w" else "bias_") + k[2:]: v for k, v in w.items()}
    if hasattr(m, "load_state_dict"):
        m.load_state_dict(state)
    return m


def bench_latency(cell, opts):
    """Time one cell step at B=1, I=H=64: fastlstm, the reference, torch.nn.<Cell>Cell."""
    B, I, H = LATENCY_SHAPE
    fwd, _ = make_problem(cell, 1, B, I, H, dtype=np.dtype(opts.dtype))
    x, h, c = fwd["x"][0], fwd["h0"], fwd.get("c0")
    w = {k: fwd[k] for k in ("w_ih", "w_hh", "b_ih", "b_hh")}
    fast_fn, how = _fast_cell_step(cell, x, h, c, w)
    fns = {"fastlstm": fast_fn}
    if opts.reference:
        fwd_ref = getattr(reference, cell + "_forward")
        kw = dict(h0=h, c0=c) if cell == "lstm" else dict(h0=h)
        fns["reference"] = lambda: fwd_ref(x[None], **w, training=False, **kw)
    if "torch" in opts.peers:
        import torch
        cls = {"lstm": torch.nn.LSTMCell, "gru": torch.nn.GRUCell, "rnn": torch.nn.RNNCell}[cell]
        m = cls(I, H).to(torch.float64 if opts.dtype == "float64" else torch.float32)
        tx, th = torch.from_numpy(x), torch.from_numpy(h)
        state = (th, torch.from_numpy(c)) if cell == "lstm" else th

        def torch_fn():
            with torch.no_grad():
                return m(tx, state)
        fns["torch"] = torch_fn
    # calibrate: enough calls per sample to take ~target seconds
    target = 0.002 if opts.quick else 0.01
    inner = {}
    for name, fn in fns.items():
        fn()
        t = min(_time_once(fn) for _ in range(3))
        inner[name] = max(1, min(100000, int(target / max(t, 1e-7))))
    medians, samples, rounds, _, errors = time_interleaved(fns, max(opts.repeat, 5),
                                                           opts.budget / 2, inner, opts.lead_in)
    fast = medians["fastlstm"]
    return dict(cell=cell, B=B, I=I, H=H, dtype=opts.dtype, fastlstm_call=how,
                median_s=medians, samples_s=samples, calls_per_sample=inner, rounds=rounds,
                errors=errors,
                ratio_vs_fastlstm={n: t / fast for n, t in medians.items() if n != "fastlstm"})


def ragged_lengths(T, B, seed=0):
    """B lengths drawn uniformly from [1, T] (seeded)."""
    return np.random.default_rng(seed).integers(1, T + 1, B).astype(np.int64)


def bench_ragged(cell, mode, shape, threads, opts):
    """A ragged batch (lengths uniform in [1, T]) four ways, plus torch packed and padded.

    fastlstm ragged: lengths given; fastlstm dense: B' = round(sum(lengths)/T)
    full-length rows (the same number of tokens, the ideal); fastlstm padded:
    the padded batch with lengths=None (all T*B steps); torch packed:
    pack_padded_sequence(enforce_sorted=False) -> module -> pad_packed_sequence;
    torch padded: the padded batch straight through the module.
    """
    T, B, I, H = shape
    dtype = np.dtype(opts.dtype)
    lengths = ragged_lengths(T, B)
    tokens = int(lengths.sum())
    b_dense = max(1, round(tokens / T))
    fwd, bwd = make_problem(cell, T, B, I, H, dtype=dtype, lengths=lengths)
    pad_fwd = dict(fwd, lengths=None)
    dense_fwd, dense_bwd = make_problem(cell, T, b_dense, I, H, dtype=dtype)
    runners = {"fastlstm": numpy_runner(fastlstm, cell, mode, fwd, bwd),
               "fastlstm_dense": numpy_runner(fastlstm, cell, mode, dense_fwd, dense_bwd),
               "fastlstm_padded": numpy_runner(fastlstm, cell, mode, pad_fwd, bwd)}
    if "torch" in opts.peers:
        runners["torch_packed"] = _peer(torch_runner, cell, mode, fwd, bwd, True)
        runners["torch_padded"] = _peer(torch_runner, cell, mode, pad_fwd, bwd)
    medians, samples, rounds, first, errors = time_interleaved(
        {n: r.fn for n, r in runners.items()}, opts.repeat, opts.budget, lead_in=opts.lead_in)
    diffs = {}
    if "torch_packed" in first:
        diffs["torch_packed"] = rel_diff(runners["torch_packed"].to_numpy(first["torch_packed"]),
                                         first["fastlstm"])
    fast = medians["fastlstm"]
    return dict(cell=cell, mode=mode, threads=threads, shape=list(shape), dtype=opts.dtype,
                lengths=lengths.tolist(), tokens=tokens, dense_batch=b_dense,
                flops=flops(cell, T, B, I, H, mode, tokens), rounds=rounds, median_s=medians,
                samples_s=samples,
                ratio_vs_fastlstm={n: t / fast for n, t in medians.items() if n != "fastlstm"},
                max_rel_diff_vs_fastlstm=diffs, errors=errors)


# --------------------------------------------------------------------------
# tables


def fmt_ms(seconds):
    if seconds is None:
        return "-"
    ms = seconds * 1e3
    return (f"{ms:.0f}" if ms >= 100 else f"{ms:.1f}" if ms >= 10 else
            f"{ms:.2f}" if ms >= 1 else f"{ms:.3f}")


def fmt_us(seconds):
    return "-" if seconds is None else f"{seconds * 1e6:.1f}"


def fmt_ratio(r):
    return "-" if r is None else f"{r:.2f}"


def markdown_table(header, rows, align=None):
    """A markdown table; `align` is a string of 'l'/'r' per column (default: l then r)."""
    align = align or "l" + "r" * (len(header) - 1)
    cols = list(zip(header, *rows))
    widths = [max(len(str(v)) for v in col) for col in cols]

    def line(vals):
        return "| " + " | ".join(str(v).ljust(w) if a == "l" else str(v).rjust(w)
                                 for v, w, a in zip(vals, widths, align)) + " |"

    sep = "|" + "|".join(("-" * (w + 1) + ":" if a == "r" else ":" + "-" * (w + 1))
                         for w, a in zip(widths, align)) + "|"
    return "\n".join([line(header), sep] + [line(r) for r in rows])


def shape_str(shape):
    return "x".join(str(s) for s in shape)


def case_table(cases):
    """The main table of one (mode, threads): times, ratios, GFLOP/s, % of peak."""
    gemm = "SGEMM" if cases[0]["dtype"] == "float32" else "DGEMM"
    impls = [n for n in IMPLS if any(n in c["median_s"] for c in cases)]
    peers = [n for n in ("torch", "ort", "reference") if n in impls]
    header = (["cell", "shape (TxBxIxH)"] + [f"{n} ms" for n in impls] +
              [f"{SHORT[n]}/fastlstm" for n in peers] + ["GFLOP/s", f"% of {gemm} peak"])
    rows = []
    for c in cases:
        flags = {n: " !" if d > TOLERANCE[c["dtype"]] else ""
                 for n, d in c["max_rel_diff_vs_fastlstm"].items()}
        frac = c["fastlstm_peak_fraction"]
        rows.append([c["cell"], shape_str(c["shape"])] +
                    [fmt_ms(c["median_s"].get(n)) + flags.get(n, "") for n in impls] +
                    [fmt_ratio(c["ratio_vs_fastlstm"].get(n)) for n in peers] +
                    [f"{c['fastlstm_gflops']:.2f}" if c["fastlstm_gflops"] < 10 else
                     f"{c['fastlstm_gflops']:.1f}",
                     "-" if frac is None else f"{100 * frac:.1f}"])
    return markdown_table(header, rows)


def latency_table(results):
    impls = [n for n in IMPLS if any(n in r["median_s"] for r in results)]
    peers = [n for n in ("torch", "reference") if n in impls]
    header = (["cell", "B", "I", "H", "fastlstm call"] + [f"{n} us" for n in impls] +
              [f"{SHORT[n]}/fastlstm" for n in peers])
    rows = [[r["cell"], r["B"], r["I"], r["H"], r["fastlstm_call"]] +
            [fmt_us(r["median_s"].get(n)) for n in impls] +
            [fmt_ratio(r["ratio_vs_fastlstm"].get(n)) for n in peers] for r in results]
    return markdown_table(header, rows, "lrrrl" + "r" * (len(header) - 5))


RAGGED_IMPLS = ("fastlstm", "fastlstm_dense", "fastlstm_padded", "torch_packed", "torch_padded")
RAGGED_LABELS = {"fastlstm": "fastlstm ragged ms", "fastlstm_dense": "fastlstm dense ms",
                 "fastlstm_padded": "fastlstm padded ms", "torch_packed": "torch packed ms",
                 "torch_padded": "torch padded ms"}


def ragged_table(results):
    impls = [n for n in RAGGED_IMPLS if any(n in r["median_s"] for r in results)]
    header = (["cell", "mode", "tokens / T*B"] + [RAGGED_LABELS[n] for n in impls] +
              ["ragged/dense", "padded/ragged"] +
              (["torch packed/fastlstm ragged"] if "torch_packed" in impls else []))
    rows = []
    for r in results:
        m = r["median_s"]
        T, B = r["shape"][:2]
        flag = (" !" if r["max_rel_diff_vs_fastlstm"].get("torch_packed", 0) >
                TOLERANCE[r["dtype"]] else "")
        row = ([r["cell"], r["mode"], f"{r['tokens']}/{T * B}"] +
               [fmt_ms(m.get(n)) + (flag if n == "torch_packed" else "") for n in impls] +
               [fmt_ratio(m["fastlstm"] / m["fastlstm_dense"]),
                fmt_ratio(m["fastlstm_padded"] / m["fastlstm"])])
        if "torch_packed" in impls:
            row.append(fmt_ratio(r["ratio_vs_fastlstm"].get("torch_packed")))
        rows.append(row)
    return markdown_table(header, rows, "llr" + "r" * (len(header) - 3))


def table_notes(results):
    """Lines explaining the '-' cells of a table: peers that failed, reference skipped."""
    failed = {}
    for r in results:
        for name, msg in r.get("errors", {}).items():
            failed.setdefault((name, msg), []).append(r["cell"])
    lines = [f"- {name} not timed for {', '.join(dict.fromkeys(cells))}: {msg}"
             for (name, msg), cells in failed.items()]
    if any((r.get("note") or "").startswith("reference skipped") for r in results):
        lines.append("- reference '-': one call estimated to take longer than --ref-limit")
    return "\n".join(lines)


# --------------------------------------------------------------------------
# command line


def parse_shapes(text):
    """'100x1x64x64,1000x1x32x32' -> [(100, 1, 64, 64), (1000, 1, 32, 32)]."""
    shapes = []
    for item in text.split(","):
        item = item.strip()
        if not item:
            continue
        parts = item.lower().split("x")
        if len(parts) != 4 or not all(p.strip().isdigit() and int(p) > 0 for p in parts):
            raise argparse.ArgumentTypeError(
                f"bad shape {item!r}: expected TxBxIxH with positive integers, e.g. 100x1x64x64")
        shapes.append(tuple(int(p) for p in parts))
    if not shapes:
        raise argparse.ArgumentTypeError("no shapes given")
    return shapes


def parse_shape(text):
    shapes = parse_shapes(text)
    if len(shapes) != 1:
        raise argparse.ArgumentTypeError("expected one shape TxBxIxH")
    return shapes[0]


def _choices(allowed, what):
    def parse(text):
        items = [s.strip().lower() for s in text.split(",") if s.strip()]
        bad = [s for s in items if s not in allowed]
        if bad or not items:
            raise argparse.ArgumentTypeError(
                f"bad {what} {','.join(bad) or text!r}: choose from {','.join(allowed)}")
        return list(dict.fromkeys(items))
    return parse


def parse_threads(text):
    try:
        threads = [int(s) for s in text.split(",") if s.strip()]
    except ValueError:
        threads = []
    if not threads or min(threads) < 1:
        raise argparse.ArgumentTypeError(f"bad thread counts {text!r}: e.g. 1,2")
    return list(dict.fromkeys(threads))


def build_parser(prog=None):
    p = argparse.ArgumentParser(
        prog=prog or "python -m fastlstm.bench",
        description="Time fastlstm against its NumPy reference, torch.nn.LSTM/GRU/RNN and "
                    "ONNX Runtime (the peers that are installed), interleaved in one process, "
                    "and print markdown tables of medians, ratios, GFLOP/s and the fraction "
                    "of the measured GEMM peak.")
    p.add_argument("--cells", type=_choices(CELLS, "cells"), default=list(CELLS),
                   help="comma-separated cells (default: lstm,gru,rnn)")
    p.add_argument("--shapes", type=parse_shapes, default=None,
                   help="comma-separated TxBxIxH shapes (default: the six standard shapes "
                        + ",".join(shape_str(s) for s in DEFAULT_SHAPES) + ")")
    p.add_argument("--modes", type=_choices(MODES, "modes"), default=list(MODES),
                   help="fwd (inference) and/or fwdbwd (forward+backward); default both")
    p.add_argument("--threads", type=parse_threads, default=None,
                   help="comma-separated thread counts (default: 1,2; 1 with --quick)")
    p.add_argument("--dtype", choices=("float32", "float64"), default="float32")
    p.add_argument("--repeat", type=int, default=None,
                   help="maximum timed rounds per case (default 7; 3 with --quick); fewer "
                        "when the case is slow (see --budget), never fewer than 3")
    p.add_argument("--budget", type=float, default=None,
                   help="seconds of timed rounds per case, which caps the rounds (default 6)")
    p.add_argument("--ref-limit", type=float, default=2.0,
                   help="time the NumPy reference only where one call is estimated to take "
                        "less than this many seconds (default 2; 0 = no limit)")
    p.add_argument("--no-reference", dest="reference", action="store_false",
                   help="do not time the NumPy reference")
    p.add_argument("--peers", type=_choices(PEERS, "peers"), default=list(PEERS),
                   help="peers to time when installed: torch,ort (default both)")
    p.add_argument("--no-peers", action="store_true", help="time no peer (torch, ORT)")
    p.add_argument("--no-latency", dest="latency", action="store_false",
                   help="skip the single-step latency table")
    p.add_argument("--no-ragged", dest="ragged", action="store_false",
                   help="skip the ragged-batch table")
    p.add_argument("--ragged-shape", type=parse_shape, default=None,
                   help="TxBxIxH of the ragged batch (default "
                        f"{shape_str(DEFAULT_RAGGED_SHAPE)})")
    p.add_argument("--json", metavar="PATH", default=None,
                   help="also write every raw sample, median and ratio, and the machine "
                        "description, to this JSON file")
    p.add_argument("--quick", action="store_true",
                   help="tiny shapes, few rounds, one thread: a smoke run of a few seconds")
    p.add_argument("--quiet", action="store_true", help="no progress lines on stderr")
    return p


def _finish_options(opts):
    """Fill in the defaults that depend on --quick; check the numbers."""
    q = opts.quick
    opts.shapes = opts.shapes or list(QUICK_SHAPES if q else DEFAULT_SHAPES)
    opts.threads = opts.threads or ([1] if q else [1, 2])
    opts.repeat = opts.repeat if opts.repeat is not None else (3 if q else 7)
    opts.budget = opts.budget if opts.budget is not None else (0.5 if q else 6.0)
    # (--quick: shorter lead-ins, for a fast check rather than steady-state figures)
    opts.lead_in = (0.002, 0.01) if q else (LEAD_IN_S, LEAD_IN_AFTER_REFERENCE_S)
    opts.ragged_shape = opts.ragged_shape or (QUICK_RAGGED_SHAPE if q else DEFAULT_RAGGED_SHAPE)
    opts.ref_limit = opts.ref_limit if opts.ref_limit and opts.ref_limit > 0 else None
    requested = [] if opts.no_peers else opts.peers
    opts.peers = available_peers(requested)
    opts.missing_peers = [p for p in requested if p not in opts.peers]
    return opts


def main(argv=None, prog=None):
    """Run the benchmark; returns the process exit code (0)."""
    parser = build_parser(prog)
    opts = parser.parse_args(argv)
    if opts.repeat is not None and opts.repeat < 1:
        parser.error("--repeat must be at least 1")
    if opts.budget is not None and opts.budget < 0:
        parser.error("--budget must not be negative")
    opts = _finish_options(opts)
    if "torch" in opts.peers:
        import torch  # noqa: F401  (loaded now so that the thread settings reach it)

    def progress(msg):
        if not opts.quiet:
            print(msg, file=sys.stderr, flush=True)

    info = machine_info()
    print("# fastlstm benchmark\n")
    print(describe_machine(info))
    print(f"dtype {opts.dtype}; peers: {', '.join(opts.peers) or 'none'}"
          + (f" (not installed: {', '.join(opts.missing_peers)})" if opts.missing_peers else "")
          + "; times are medians of interleaved rounds; ratios above 1 mean fastlstm is faster"
          + "; '!' marks output differing from fastlstm's")
    gemm = "SGEMM" if opts.dtype == "float32" else "DGEMM"
    result = dict(machine=info, options=dict(
        cells=opts.cells, shapes=[list(s) for s in opts.shapes], modes=opts.modes,
        threads=opts.threads, dtype=opts.dtype, repeat=opts.repeat, budget_s=opts.budget,
        ref_limit_s=opts.ref_limit, reference=opts.reference, peers=opts.peers,
        ragged_shape=list(opts.ragged_shape), quick=opts.quick),
        gemm_peak_gflops={}, gemm_peak_gflops_before={}, gemm_peak_gflops_after={},
        gemm_peaks_by_source={}, gemm_peaks_by_source_after={}, cases=[], latency=[], ragged=[])
    settings = ThreadSettings()
    t_start = time.perf_counter()

    def measure_peak(n):
        peaks = measure_gemm_peaks(opts.dtype, n, opts.peers, n=512 if opts.quick else 2048,
                                   repeat=3 if opts.quick else 5)
        return max(peaks.values()), peaks
    try:
        for n in opts.threads:
            settings.apply(n)
            threads_str = f"{n} thread{'s' if n > 1 else ''}"
            result["thread_control"] = settings.method
            before, peaks = measure_peak(n)
            tables = []  # (title, table, results), printed once the peak is known
            section = []
            for mode in opts.modes:
                cases = []
                for shape in opts.shapes:
                    for cell in opts.cells:
                        progress(f"  [{time.perf_counter() - t_start:6.0f} s] {mode} "
                                 f"{cell} {shape_str(shape)} threads={n}")
                        cases.append(bench_case(cell, mode, shape, n, opts))
                section += cases
                tables.append((f"{MODE_TITLES[mode]}, {threads_str}", case_table, cases))
            if opts.latency:
                progress(f"  [{time.perf_counter() - t_start:6.0f} s] latency threads={n}")
                lat = [dict(bench_latency(cell, opts), threads=n) for cell in opts.cells]
                result["latency"] += lat
                B, I, H = LATENCY_SHAPE
                tables.append((f"one cell step (B={B}, I={I}, H={H}), inference, {threads_str}, "
                               "microseconds per call", latency_table, lat))
            if opts.ragged:
                rag = []
                for mode in opts.modes:
                    for cell in opts.cells:
                        progress(f"  [{time.perf_counter() - t_start:6.0f} s] ragged {mode} "
                                 f"{cell} threads={n}")
                        rag.append(bench_ragged(cell, mode, opts.ragged_shape, n, opts))
                result["ragged"] += rag
                tables.append((f"ragged batch {shape_str(opts.ragged_shape)} (TxBxIxH), lengths "
                               f"uniform in [1, T], {threads_str}", ragged_table, rag))
            # the peak again: the higher of the two is the machine's (a busy
            # machine lowers a measurement, never raises it)
            after, peaks_after = measure_peak(n)
            peak = max(before, after)
            key = str(n)
            result["gemm_peak_gflops"][key] = peak
            result["gemm_peak_gflops_before"][key] = before
            result["gemm_peak_gflops_after"][key] = after
            result["gemm_peaks_by_source"][key] = peaks
            result["gemm_peaks_by_source_after"][key] = peaks_after
            for c in section:
                c["fastlstm_peak_fraction"] = c["fastlstm_gflops"] / peak if peak else None
            result["cases"] += section
            best = {k: max(v, peaks_after.get(k, 0.0)) for k, v in peaks.items()}
            each = ", ".join(f"{GEMM_SOURCES[k]} {v:.1f}" for k, v in best.items())
            print(f"\n## {threads_str}: measured {gemm} peak {peak:.1f} GFLOP/s (best of {each}; "
                  f"{before:.1f} before these tables, {after:.1f} after; "
                  f"thread control: {settings.method})")
            for title, make_table, results in tables:
                _print_table(title, make_table(results), results)
            sys.stdout.flush()
    finally:
        settings.restore()
    result["elapsed_s"] = time.perf_counter() - t_start
    print(f"\n(total {result['elapsed_s']:.0f} s)")
    if opts.json:
        with open(opts.json, "w") as f:
            json.dump(result, f, indent=1, default=_json_default)
        print(f"wrote {opts.json}")
    return 0


def _print_table(title, table, results):
    """A '###' heading, the table and the notes explaining its '-' cells, flushed."""
    print(f"\n### {title}\n")
    print(table)
    notes = table_notes(results)
    if notes:
        print("\n" + notes)
    sys.stdout.flush()


def _json_default(o):
    if isinstance(o, np.generic):
        return o.item()
    if isinstance(o, np.ndarray):
        return o.tolist()
    raise TypeError(f"not JSON serialisable: {type(o).__name__}")


if __name__ == "__main__":
    sys.exit(main())
