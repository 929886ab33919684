"""A small NumPy training toolkit around the recurrent modules.

Everything here is plain NumPy with explicit ``backward`` calls, in the style
of ``fastlstm.nn``:

* layers: :class:`Linear`, :class:`Embedding`, and :class:`SequenceModel`
  (optional embedding -> LSTM / GRU / RNN stack -> linear head);
* losses: :func:`cross_entropy` (softmax cross-entropy) and :func:`mse_loss`,
  each returning ``(loss, gradient)``;
* optimizers: :class:`SGD` and :class:`Adam`, with :func:`clip_grad_norm`
  (clipping by global norm) built in;
* truncated backpropagation through time: :func:`stream_chunks` cuts a long
  token sequence into parallel streams and consecutive chunks, and the
  model's state is carried from one chunk to the next (stateful training);
* sampling: :func:`softmax` and :func:`sample_index` with a temperature;
* :func:`train_loop`: a step loop with a progress bar (tqdm) showing the loss
  and the speed, stopping after a number of steps or minutes;
* checkpoints: :func:`save_checkpoint` / :func:`load_checkpoint`, one ``.npz``
  file with the parameters and a JSON description (never pickle).
"""

import json
import math
import os
import sys
import time
import zipfile

import numpy as np

from . import _fast, _layers, nn
from . import io as _io

__all__ = ["Linear", "Embedding", "SequenceModel", "cross_entropy", "mse_loss", "softmax",
           "sample_index", "clip_grad_norm", "SGD", "Adam", "stream_chunks", "train_loop",
           "TrainLog", "save_checkpoint", "load_checkpoint", "CheckpointError",
           "progress_enabled"]

_CELLS = {"lstm": nn.LSTM, "gru": nn.GRU, "rnn": nn.RNN}


def _rng(seed):
    return seed if isinstance(seed, np.random.Generator) else np.random.default_rng(seed)


# ----------------------------------------------------------------- layers ---

class _Layer:
    """Parameters, gradients and the train/eval switch shared by the layers."""

    def __init__(self):
        self.training = True
        self.grads = {k: np.zeros_like(v) for k, v in self.params.items()}

    def parameters(self):
        """dict name -> parameter array (the layer's own arrays, to update in place)."""
        return dict(self.params)

    def zero_grad(self):
        """Reset the accumulated gradients to zero."""
        for g in self.grads.values():
            g.fill(0)

    def train(self, mode=True):
        """Training mode (forward keeps what backward needs); returns self."""
        self.training = bool(mode)
        return self

    def eval(self):
        """Evaluation mode (no cache); returns self."""
        return self.train(False)


class Linear(_Layer):
    """y = x @ weight.T + bias over the last axis, with torch.nn.Linear's layout.

    ``weight`` (out_features, in_features) and ``bias`` (out_features,) are
    initialised U(-1/sqrt(in_features), 1/sqrt(in_features)) like torch.
    ``forward(x)`` takes x (..., in_features); in training mode it keeps x for
    one ``backward(dy)``, which returns dx and adds into ``grads``.
    """

    def __init__(self, in_features, out_features, bias=True, *, dtype=np.float32, seed=None):
        rng = _rng(seed)
        k = 1.0 / math.sqrt(in_features)
        self.in_features, self.out_features = int(in_features), int(out_features)
        self.params = {"weight": rng.uniform(-k, k, (out_features, in_features)).astype(dtype)}
        if bias:
            self.params["bias"] = rng.uniform(-k, k, out_features).astype(dtype)
        self._x = None
        super().__init__()

    def __call__(self, x):
        return self.forward(x)

    def forward(self, x):
        x = np.asarray(x)
        y = x.reshape(-1, self.in_features) @ self.params["weight"].T
        if "bias" in self.params:
            y += self.params["bias"]
        self._x = x if self.training else None
        return y.reshape(x.shape[:-1] + (self.out_features,))

    def backward(self, dy):
        """dy (..., out_features) -> dx (..., in_features); accumulates weight/bias grads."""
        if self._x is None:
            raise RuntimeError("Linear.backward: no training-mode forward to backpropagate")
        x2 = self._x.reshape(-1, self.in_features)
        dy2 = dy.reshape(-1, self.out_features)
        self.grads["weight"] += dy2.T @ x2
        if "bias" in self.params:
            self.grads["bias"] += dy2.sum(axis=0)
        self._x = None
        dx = dy2 @ self.params["weight"]
        return dx.reshape(dy.shape[:-1] + (self.in_features,))


class Embedding(_Layer):
    """Lookup table: integer ids (...) -> vectors (..., dim), like torch.nn.Embedding.

    ``weight`` (num_embeddings, dim) is initialised N(0, 1) like torch.
    ``backward(dy)`` adds dy into the rows that were looked up (returns None:
    integer inputs have no gradient).
    """

    def __init__(self, num_embeddings, dim, *, dtype=np.float32, seed=None):
        rng = _rng(seed)
        self.num_embeddings, self.dim = int(num_embeddings), int(dim)
        self.params = {"weight": rng.standard_normal((num_embeddings, dim)).astype(dtype)}
        self._ids = None
        super().__init__()

    def __call__(self, ids):
        return self.forward(ids)

    def forward(self, ids):
        ids = np.asarray(ids)
        if ids.dtype.kind not in "iu":
            raise TypeError(f"Embedding: expected integer ids, got dtype {ids.dtype}")
        if ids.size and (ids.min() < 0 or ids.max() >= self.num_embeddings):
            raise ValueError(f"Embedding: ids must be in [0, {self.num_embeddings})")
        self._ids = ids if self.training else None
        return self.params["weight"][ids]

    def backward(self, dy):
        if self._ids is None:
            raise RuntimeError("Embedding.backward: no training-mode forward to backpropagate")
        np.add.at(self.grads["weight"], self._ids.reshape(-1), dy.reshape(-1, self.dim))
        self._ids = None


class SequenceModel:
    """A recurrent sequence model: [Embedding] -> LSTM/GRU/RNN stack -> Linear head.

    cell: "lstm", "gru" or "rnn". With ``vocab_size`` the input is integer
    token ids (T, B) looked up in an Embedding of ``embed_dim``; otherwise it
    is real-valued (T, B, input_size). The recurrent stack is a
    ``fastlstm.nn`` module (time-major); the head maps every step's hidden
    vector to ``output_size`` values (logits or predictions).

    ``forward(x, state=None)`` returns (y (T, B, output_size), state); the
    state (``h_n``, or ``(h_n, c_n)`` for the LSTM) can be passed to the next
    call to carry memory across chunks (truncated BPTT: gradients stop at the
    chunk boundary). ``backward(dy)`` backpropagates the last training-mode
    forward and adds every parameter gradient into ``grads``.

    Parameters are named ``embed.weight``, ``rnn.<torch name>``,
    ``head.weight``, ``head.bias``. ``impl`` selects the kernels of the
    recurrent stack: ``fastlstm`` (the C kernels, default) or
    ``fastlstm.reference`` (pure NumPy), for the same model and numbers.
    """

    def __init__(self, cell, output_size, hidden_size, num_layers=1, *, vocab_size=None,
                 embed_dim=None, input_size=None, dtype=np.float32, seed=None):
        if cell not in _CELLS:
            raise ValueError(f"cell: expected 'lstm', 'gru' or 'rnn', got {cell!r}")
        if (vocab_size is None) == (input_size is None):
            raise ValueError("give exactly one of vocab_size (token input) and input_size "
                             "(real-valued input)")
        rng = _rng(seed)
        self.cell = cell
        self.vocab_size = vocab_size
        self.embed_dim = (embed_dim or min(64, vocab_size)) if vocab_size else None
        self.input_size = self.embed_dim if vocab_size else int(input_size)
        self.hidden_size, self.num_layers = int(hidden_size), int(num_layers)
        self.output_size = int(output_size)
        self.dtype = np.dtype(dtype)
        seeds = rng.integers(0, 2**63, 3)
        self.embed = (Embedding(vocab_size, self.embed_dim, dtype=dtype, seed=seeds[0])
                      if vocab_size else None)
        self.rnn = _CELLS[cell](self.input_size, self.hidden_size, self.num_layers,
                                dtype=dtype, seed=int(seeds[1]))
        self.head = Linear(self.hidden_size, self.output_size, dtype=dtype, seed=seeds[2])
        self.training = True
        self._out_shape = None

    # ---- configuration, parameters, gradients ----
    @staticmethod
    def param_shapes(cell, output_size, hidden_size, num_layers=1, *, vocab_size=None,
                     embed_dim=None, input_size=None, dtype="float32"):
        """dict name -> shape of the parameters of the model with this configuration."""
        shapes = {}
        if vocab_size:
            embed_dim = embed_dim or min(64, vocab_size)
            shapes["embed.weight"] = (vocab_size, embed_dim)
            input_size = embed_dim
        for k, v in _layers.param_shapes(cell, input_size, hidden_size, num_layers,
                                         False).items():
            shapes[f"rnn.{k}"] = v
        shapes.update({"head.weight": (output_size, hidden_size), "head.bias": (output_size,)})
        return shapes

    def config(self):
        """The constructor arguments as a JSON-ready dict (``SequenceModel(**config)``)."""
        cfg = dict(cell=self.cell, output_size=self.output_size, hidden_size=self.hidden_size,
                   num_layers=self.num_layers, dtype=self.dtype.name)
        if self.vocab_size:
            cfg.update(vocab_size=self.vocab_size, embed_dim=self.embed_dim)
        else:
            cfg.update(input_size=self.input_size)
        return cfg

    def _parts(self):
        parts = [("embed", self.embed)] if self.embed is not None else []
        return parts + [("rnn", self.rnn), ("head", self.head)]

    def parameters(self):
        """dict "part.name" -> parameter array (the model's own arrays)."""
        return {f"{p}.{k}": v for p, m in self._parts() for k, v in m.parameters().items()}

    @property
    def grads(self):
        """dict "part.name" -> accumulated gradient array (the same keys as parameters())."""
        return {f"{p}.{k}": v for p, m in self._parts() for k, v in m.grads.items()}

    def zero_grad(self):
        for _, m in self._parts():
            m.zero_grad()

    def state_dict(self):
        return {k: v.copy() for k, v in self.parameters().items()}

    def load_state_dict(self, state):
        """Copy arrays from a dict with exactly the keys of parameters() and their shapes."""
        params = self.parameters()
        if set(state) != set(params):
            missing = sorted(set(params) - set(state))
            extra = sorted(set(state) - set(params))
            raise ValueError(f"state dict does not match the model (missing {missing}, "
                             f"unexpected {extra})")
        for k, p in params.items():
            v = np.asarray(state[k])
            if v.shape != p.shape:
                raise ValueError(f"{k}: expected shape {p.shape}, got {v.shape}")
        for k, p in params.items():
            np.copyto(p, state[k], casting="unsafe")

    def num_parameters(self):
        return sum(v.size for v in self.parameters().values())

    def train(self, mode=True):
        self.training = bool(mode)
        for _, m in self._parts():
            m.train(mode)
        return self

    def eval(self):
        return self.train(False)

    @property
    def impl(self):
        """The kernel module of the recurrent stack (fastlstm or fastlstm.reference)."""
        return self.rnn._impl

    @impl.setter
    def impl(self, module):
        # fastlstm.nn keeps the kernel module in `_impl`; swapping it runs the
        # same stack on another implementation with the same results.
        self.rnn._impl = _fast if module is None else module

    # ---- forward / backward ----
    def __call__(self, x, state=None, lengths=None):
        return self.forward(x, state, lengths)

    def forward(self, x, state=None, lengths=None):
        """x: ids (T, B) or values (T, B, input_size) -> (y (T, B, output_size), state).

        lengths: None or B integers in [0, T] for a ragged batch (the
        recurrent stack's PackedSequence semantics: the state is each
        sequence's state after its last valid step).
        """
        h = self.embed(x) if self.embed is not None else np.asarray(x, self.dtype)
        out, state = self.rnn(h, state, lengths)
        return self.head(out), state

    def backward(self, dy):
        """Backpropagate dy (T, B, output_size) of the last training-mode forward."""
        d_out = self.head.backward(dy)
        res = self.rnn.backward(np.ascontiguousarray(d_out, dtype=self.dtype))
        if self.embed is not None:
            self.embed.backward(res[0])

    def step_state(self, x, state=None, lengths=None):
        """Evaluation forward of one chunk without keeping a cache: (y, state)."""
        mode = self.training
        self.eval()
        try:
            return self.forward(x, state, lengths)
        finally:
            self.train(mode)

    def set_forget_bias(self, value):
        """LSTM only: start every forget gate's total bias at `value` (e.g. 1.0).

        A positive forget-gate bias makes a fresh LSTM keep its cell state
        by default, which helps it learn long-range dependencies (Gers et al.
        2000; Jozefowicz et al. 2015). torch's layout has two biases per
        layer; ``bias_ih`` gets `value` and ``bias_hh`` 0 in the forget rows.
        """
        if self.cell != "lstm":
            raise ValueError("set_forget_bias: only an LSTM has a forget gate")
        H = self.hidden_size
        for k, p in self.rnn.parameters().items():
            if k.startswith("bias_"):
                p[H:2 * H] = value if k.startswith("bias_ih") else 0.0


# ----------------------------------------------------------------- losses ---

def softmax(logits, temperature=1.0, axis=-1):
    """Numerically stable softmax of logits / temperature (temperature > 0)."""
    z = np.asarray(logits, dtype=np.float64) / temperature
    z = z - z.max(axis=axis, keepdims=True)
    e = np.exp(z)
    return e / e.sum(axis=axis, keepdims=True)


def cross_entropy(logits, targets, mask=None):
    """Softmax cross-entropy averaged over the (unmasked) positions, in nats.

    logits: (..., C); targets: integer class ids of shape logits.shape[:-1];
    mask: None or booleans/weights of that shape. Returns (loss, dlogits),
    dlogits being the gradient of the mean loss, in logits' dtype.
    """
    logits = np.asarray(logits)
    targets = np.asarray(targets)
    C = logits.shape[-1]
    z = logits.reshape(-1, C).astype(np.float64)
    t = targets.reshape(-1)
    z = z - z.max(axis=1, keepdims=True)
    logsum = np.log(np.exp(z).sum(axis=1))
    nll = logsum - z[np.arange(len(t)), t]
    w = np.ones(len(t)) if mask is None else np.asarray(mask, dtype=np.float64).reshape(-1)
    total = w.sum()
    if total == 0:
        return 0.0, np.zeros_like(logits)
    loss = float((nll * w).sum() / total)
    grad = np.exp(z - logsum[:, None])
    grad[np.arange(len(t)), t] -= 1.0
    grad *= (w / total)[:, None]
    return loss, grad.reshape(logits.shape).astype(logits.dtype)


def mse_loss(pred, target):
    """Mean squared error; returns (loss, dpred) with dpred in pred's dtype."""
    pred = np.asarray(pred)
    diff = pred.astype(np.float64) - np.asarray(target, dtype=np.float64)
    return float(np.mean(diff ** 2)), (2.0 * diff / diff.size).astype(pred.dtype)


# --------------------------------------------------------------- sampling ---

def sample_index(logits, temperature=1.0, rng=None):
    """Draw a class index from softmax(logits / temperature) (temperature > 0).

    logits: (C,) or (B, C); returns an int or an array of B ints. A
    temperature below 1 sharpens the distribution, above 1 flattens it.
    """
    if not temperature > 0:
        raise ValueError(f"temperature: expected a positive number, got {temperature!r}")
    rng = _rng(rng)
    p = softmax(logits, temperature)
    if p.ndim == 1:
        return int(min(np.searchsorted(np.cumsum(p), rng.random(), side="right"), len(p) - 1))
    cdf = np.cumsum(p, axis=1)
    u = rng.random((p.shape[0], 1))
    return np.minimum((cdf <= u).sum(axis=1), p.shape[1] - 1)


# ------------------------------------------------------------- optimizers ---

def clip_grad_norm(grads, max_norm):
    """Scale all gradients in place so that their global L2 norm is at most max_norm.

    grads: dict (or iterable) of arrays. Returns the norm before clipping.
    """
    arrays = list(grads.values()) if hasattr(grads, "values") else list(grads)
    norm = math.sqrt(sum(float(np.dot(g.ravel(), g.ravel())) for g in arrays))
    if max_norm is not None and norm > max_norm:
        scale = max_norm / (norm + 1e-12)
        for g in arrays:
            g *= scale
    return norm


class _Optimizer:
    def __init__(self, params, lr, clip):
        self.params = dict(params)
        if not lr > 0:
            raise ValueError(f"lr: expected a positive learning rate, got {lr!r}")
        self.lr = lr
        self.clip = clip
        self.last_norm = None

    def step(self, grads):
        """Clip (when ``clip`` is set) then update every parameter in place from grads."""
        missing = [k for k in self.params if k not in grads]
        if missing:
            raise KeyError(f"no gradient for {missing}")
        self.last_norm = clip_grad_norm({k: grads[k] for k in self.params}, self.clip)
        for k, p in self.params.items():
            self._update(k, p, grads[k])


class SGD(_Optimizer):
    """Stochastic gradient descent with optional momentum and global-norm clipping.

    params: dict name -> array (updated in place); ``step(grads)`` applies
    p -= lr * v with v = momentum * v + g (v = g without momentum).
    """

    def __init__(self, params, lr=0.1, momentum=0.0, clip=None):
        super().__init__(params, lr, clip)
        self.momentum = momentum
        self._v = {k: np.zeros_like(p) for k, p in self.params.items()} if momentum else None

    def _update(self, k, p, g):
        if self._v is not None:
            v = self._v[k]
            v *= self.momentum
            v += g
            g = v
        p -= (self.lr * g).astype(p.dtype, copy=False)


class Adam(_Optimizer):
    """Adam (Kingma and Ba) with bias correction and optional global-norm clipping.

    params: dict name -> array (updated in place); ``step(grads)`` applies one
    update with the default betas (0.9, 0.999) and eps 1e-8.
    """

    def __init__(self, params, lr=0.001, betas=(0.9, 0.999), eps=1e-8, clip=None):
        super().__init__(params, lr, clip)
        self.b1, self.b2 = betas
        self.eps = eps
        self.t = 0
        self._m = {k: np.zeros_like(p) for k, p in self.params.items()}
        self._v = {k: np.zeros_like(p) for k, p in self.params.items()}

    def step(self, grads):
        self.t += 1
        super().step(grads)

    def _update(self, k, p, g):
        m, v = self._m[k], self._v[k]
        m *= self.b1
        m += (1 - self.b1) * g
        v *= self.b2
        v += (1 - self.b2) * (g * g)
        lr_t = self.lr * math.sqrt(1 - self.b2 ** self.t) / (1 - self.b1 ** self.t)
        p -= (lr_t * m / (np.sqrt(v) + self.eps)).astype(p.dtype, copy=False)


# ------------------------------------------------------------------ TBPTT ---

def stream_chunks(ids, batch_size, seq_len):
    """Cut a 1-D token sequence into parallel streams and consecutive chunks, forever.

    The sequence is split into ``batch_size`` contiguous streams of equal
    length; each round yields (x (T, B), y (T, B), first) for the next
    ``seq_len`` positions of every stream, y being x shifted by one token.
    ``first`` is True for the first chunk of a pass over the data, when the
    carried state should be reset; within a pass, chunk k+1 of a stream
    continues where chunk k stopped, so passing the final state of one chunk
    as the initial state of the next trains the model statefully (truncated
    backpropagation through time). Needs len(ids) >= batch_size + 1.
    """
    ids = np.asarray(ids)
    n = (len(ids) - 1) // batch_size
    if n < 1:
        raise ValueError(f"need at least batch_size + 1 = {batch_size + 1} tokens, "
                         f"got {len(ids)}")
    xs = ids[:n * batch_size].reshape(batch_size, n).T
    ys = ids[1:n * batch_size + 1].reshape(batch_size, n).T
    while True:
        for k, start in enumerate(range(0, n, seq_len)):
            yield xs[start:start + seq_len], ys[start:start + seq_len], k == 0


# ------------------------------------------------------------ train loop ---

def progress_enabled(progress=None):
    """Whether to draw a progress bar: explicit True/False, else a terminal on stderr.

    The environment variable FASTLSTM_PROGRESS=0 turns bars off (=1 forces
    them on) when ``progress`` is None.
    """
    if progress is not None:
        return bool(progress)
    env = os.environ.get("FASTLSTM_PROGRESS")
    if env is not None:
        return env not in ("", "0", "false", "no")
    return hasattr(sys.stderr, "isatty") and sys.stderr.isatty()


class TrainLog:
    """What a train_loop did: steps, seconds, items processed and the loss per step."""

    def __init__(self):
        self.steps = 0
        self.seconds = 0.0
        self.items = 0
        self.losses = []
        self.interrupted = False

    def mean_loss(self, last=None):
        """Mean of the last `last` step losses (all when None)."""
        xs = self.losses[-last:] if last else self.losses
        return float(np.mean(xs)) if xs else float("nan")

    @property
    def items_per_second(self):
        return self.items / self.seconds if self.seconds > 0 else float("nan")


def train_loop(step, *, steps=None, minutes=None, desc="training", progress=None,
               unit="chars"):
    """Call ``step(i) -> (loss, items)`` until `steps` steps or `minutes` minutes are done.

    At least one of steps and minutes must be given; with both, whichever
    comes first stops the loop (the first step always runs). A tqdm progress bar (when enabled, see
    ``progress_enabled``) shows the smoothed loss and the speed in `unit`
    per second. Ctrl-C (KeyboardInterrupt) during a step ends the loop early
    with ``log.interrupted`` set, keeping what was learned so far (unless no
    step has finished, in which case it propagates). Returns a TrainLog.
    """
    if steps is None and minutes is None:
        raise ValueError("give steps or minutes")
    from tqdm.auto import tqdm

    log = TrainLog()
    deadline = None if minutes is None else time.perf_counter() + 60.0 * minutes
    bar = tqdm(total=steps, desc=desc, unit="step", disable=not progress_enabled(progress),
               leave=False, dynamic_ncols=True)
    t0 = time.perf_counter()
    smooth = None
    try:
        i = 0
        while (steps is None or i < steps) and (i == 0 or deadline is None or
                                                time.perf_counter() < deadline):
            try:
                loss, items = step(i)
            except KeyboardInterrupt:
                if i == 0:
                    raise
                log.interrupted = True
                break
            i += 1
            log.steps = i
            log.items += items
            log.losses.append(float(loss))
            smooth = loss if smooth is None else 0.95 * smooth + 0.05 * loss
            if not bar.disable:
                el = time.perf_counter() - t0
                bar.set_postfix_str(f"loss {smooth:.3f}, {log.items / max(el, 1e-9):,.0f} "
                                    f"{unit}/s", refresh=False)
                bar.update(1)
    finally:
        bar.close()
        log.seconds = time.perf_counter() - t0
    return log


# ------------------------------------------------------------ checkpoints ---

#: format tag of checkpoint files
CHECKPOINT_FORMAT = "fastlstm-checkpoint-v1"
_META_KEY = "__fastlstm_checkpoint__"


class CheckpointError(ValueError):
    """A file is not a readable fastlstm checkpoint of the expected kind."""


def save_checkpoint(path, model, meta=None):
    """Write a SequenceModel and a JSON-ready ``meta`` dict to `path` (.npz, no pickle).

    The file is written to a temporary file beside `path` and moved into
    place, so a failure never leaves a partial file or clobbers an old one.
    """
    info = {"format": CHECKPOINT_FORMAT, "model": model.config(), "meta": meta or {}}
    arrays = {_META_KEY: np.array(json.dumps(info, sort_keys=True))}
    arrays.update(model.parameters())
    _io.atomic_savez(path, arrays)

def load_checkpoint(path, kind=None):
    """Read a checkpoint written by save_checkpoint -> (SequenceModel in eval mode, meta).

    kind: when given, ``meta["kind"]`` must equal it. Raises CheckpointError
    (a ValueError) for a file that is not such a checkpoint: not an npz,
    truncated or corrupted, foreign, or with wrong names or shapes; OSError
    when it cannot be opened.
    """
    name = os.fspath(path)

    def bad(why):
        return CheckpointError(f"{name}: not a valid fastlstm checkpoint: {why}")

    with open(path, "rb") as f:
        try:
            data = np.load(f, allow_pickle=False)
        except (ValueError, OSError, EOFError, zipfile.BadZipFile) as e:
            raise bad(f"not an npz archive ({type(e).__name__})") from None
        if not isinstance(data, np.lib.npyio.NpzFile):
            raise bad("a single .npy array, not an npz archive")
        arrays = {}
        with data:
            for k in data.files:
                try:
                    arrays[k] = data[k]
                except Exception as e:  # object arrays, CRC errors, truncated members
                    raise bad(f"entry {k!r} is unreadable ({type(e).__name__})") from None
    raw = arrays.pop(_META_KEY, None)
    if raw is None and "__fastlstm_config__" in arrays:
        raise bad("it holds a single module written by fastlstm.save (load it with "
                  "fastlstm.load), not a model checkpoint")
    if raw is None or raw.shape != () or raw.dtype.kind != "U":
        raise bad("no fastlstm checkpoint description (a foreign .npz file?)")
    try:
        info = json.loads(str(raw))
    except ValueError:
        raise bad("its description is not valid JSON") from None
    if not isinstance(info, dict) or info.get("format") != CHECKPOINT_FORMAT:
        raise bad(f"unknown format, expected {CHECKPOINT_FORMAT!r}")
    meta = info.get("meta")
    if not isinstance(meta, dict) or not isinstance(info.get("model"), dict):
        raise bad("malformed description")
    if kind is not None and meta.get("kind") != kind:
        raise bad(f"it holds a {meta.get('kind')!r} model, expected {kind!r}")
    cfg = info["model"]
    try:
        # check the stored arrays against the described model before building it
        if not all(isinstance(v, int) and not isinstance(v, bool) and 0 < v
                   for k, v in cfg.items() if k not in ("cell", "dtype")):
            raise ValueError(f"bad model description {cfg!r}")
        if cfg.get("cell") not in _CELLS or cfg.get("dtype") not in ("float32", "float64"):
            raise ValueError(f"bad model description {cfg!r}")
        shapes = SequenceModel.param_shapes(**cfg)
        if set(shapes) != set(arrays):
            raise ValueError("the parameter names do not match the described model")
        for k, shape in shapes.items():
            if arrays[k].shape != shape or arrays[k].dtype != np.dtype(cfg["dtype"]):
                raise ValueError(f"{k} has shape {arrays[k].shape} and dtype "
                                 f"{arrays[k].dtype}, expected {shape} and {cfg['dtype']}")
            if not np.all(np.isfinite(arrays[k])):
                raise ValueError(f"{k} holds NaN or infinite values")
        model = SequenceModel(**cfg)
        model.load_state_dict(arrays)
    except (TypeError, ValueError) as e:
        raise bad(str(e)) from None
    return model.eval(), meta
