"""Character-level language models: reading text, training, evaluation, generation.

Used by ``fastlstm train-text`` / ``fastlstm generate`` and by the language
tutorial and the demo. A :class:`CharLM` is a :class:`~fastlstm.toolkit.SequenceModel`
(embedding -> LSTM/GRU/RNN stack -> linear head over the characters) plus
its :class:`Vocab`. Training is truncated backpropagation through time over
parallel streams of the text, carrying the recurrent state from one chunk
to the next; the loss is the softmax cross-entropy of the next character.
"""

import math
import os
import time

import numpy as np

from . import toolkit

__all__ = ["TextError", "Vocab", "CharLM", "read_text", "split_text", "train_char_lm",
           "warmup_context", "bits"]

CHECKPOINT_KIND = "char-lm"


class TextError(ValueError):
    """A text file or string that cannot be used (message is one line)."""


def read_text(path):
    """Read a UTF-8 text file; raises TextError if missing, empty, binary or not UTF-8."""
    name = os.fspath(path)
    if not os.path.exists(name):
        raise TextError(f"{name}: no such file")
    if os.path.isdir(name):
        raise TextError(f"{name}: is a directory, not a text file")
    try:
        with open(name, "rb") as f:
            raw = f.read()
    except OSError as e:
        raise TextError(f"{name}: cannot read ({e.strerror or e})") from None
    if not raw:
        raise TextError(f"{name}: the file is empty")
    if b"\x00" in raw:
        raise TextError(f"{name}: looks like a binary file (it contains NUL bytes), "
                        "expected UTF-8 text")
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as e:
        raise TextError(f"{name}: not valid UTF-8 text (bad byte at offset {e.start})") from None
    if text.startswith("\ufeff"):
        text = text[1:]
    if not text.strip():
        raise TextError(f"{name}: the file holds only white space")
    return text


def split_text(text, val_fraction):
    """(train, val): the last `val_fraction` of the characters is held out."""
    if not 0.0 < val_fraction < 1.0:
        raise TextError(f"the validation fraction must be between 0 and 1, got {val_fraction}")
    n_val = int(round(len(text) * val_fraction))
    if n_val < 2 or len(text) - n_val < 2:
        raise TextError(f"the text is too short ({len(text)} characters) to hold out "
                        f"{val_fraction:g} of it for validation")
    return text[:-n_val], text[-n_val:]


class Vocab:
    """The characters of a text, sorted; maps characters to ids and back."""

    def __init__(self, chars):
        self.chars = sorted(set(chars))
        self.index = {c: i for i, c in enumerate(self.chars)}

    def __len__(self):
        return len(self.chars)

    def encode(self, text):
        """str -> int64 ids; raises TextError naming any character outside the vocabulary."""
        try:
            return np.array([self.index[c] for c in text], dtype=np.int64)
        except KeyError:
            bad = sorted({c for c in text if c not in self.index})
            shown = ", ".join(repr(c) for c in bad[:10]) + (" ..." if len(bad) > 10 else "")
            raise TextError(f"{len(bad)} character(s) not in the model's vocabulary: "
                            f"{shown}") from None

    def decode(self, ids):
        return "".join(self.chars[int(i)] for i in ids)


class CharLM:
    """A character-level language model: a SequenceModel over a Vocab."""

    def __init__(self, vocab, model):
        self.vocab = vocab
        self.model = model

    @classmethod
    def new(cls, vocab, cell="lstm", hidden=256, layers=2, seed=0, embed_dim=None):
        model = toolkit.SequenceModel(cell, len(vocab), hidden, layers, vocab_size=len(vocab),
                                      embed_dim=embed_dim, seed=seed)
        return cls(vocab, model)

    # ---- evaluation ----
    def evaluate(self, text_or_ids, streams=None, chunk=256):
        """Mean cross-entropy in nats per character of predicting each next character.

        The text is split into up to `streams` contiguous streams (default:
        one per 2,000 characters, at most 16), each read from the start with
        the state carried across chunks, like the training.
        """
        ids = self.vocab.encode(text_or_ids) if isinstance(text_or_ids, str) else text_or_ids
        ids = np.asarray(ids)
        if len(ids) < 2:
            raise TextError("need at least two characters to evaluate")
        if streams is None:
            streams = max(1, min(16, len(ids) // 2000))
        n = (len(ids) - 1) // streams
        xs = ids[:n * streams].reshape(streams, n).T
        ys = ids[1:n * streams + 1].reshape(streams, n).T
        state, total = None, 0.0
        for start in range(0, n, chunk):
            logits, state = self.model.step_state(xs[start:start + chunk], state)
            loss, _ = toolkit.cross_entropy(logits, ys[start:start + chunk])
            total += loss * logits.shape[0] * logits.shape[1]
        return total / (n * streams)

    # ---- generation ----
    def generate(self, length, temperature=0.8, prime="\n", seed=0):
        """Sample `length` characters after `prime` (which is not included).

        The prime is read first to set the state; then each sampled character
        is fed back, one step per call of the recurrent stack with the state
        carried between calls.
        """
        if not prime:
            raise TextError("the prime text must not be empty")
        ids = self.vocab.encode(prime)
        rng = np.random.default_rng(seed)
        logits, state = self.model.step_state(ids[:, None])
        out = []
        for _ in range(length):
            c = toolkit.sample_index(logits[-1, 0], temperature, rng)
            out.append(c)
            logits, state = self.model.step_state(np.array([[c]]), state)
        return self.vocab.decode(out)

    # ---- checkpoints ----
    def save(self, path, extra=None):
        meta = {"kind": CHECKPOINT_KIND, "vocab": "".join(self.vocab.chars)}
        meta.update(extra or {})
        toolkit.save_checkpoint(path, self.model, meta)

    @classmethod
    def load(cls, path):
        """Read a checkpoint written by ``save``; raises toolkit.CheckpointError if invalid."""
        model, meta = toolkit.load_checkpoint(path, kind=CHECKPOINT_KIND)
        chars = meta.get("vocab")
        if (not isinstance(chars, str) or len(set(chars)) != len(chars)
                or len(chars) != model.vocab_size or model.output_size != len(chars)):
            raise toolkit.CheckpointError(f"{os.fspath(path)}: not a valid fastlstm checkpoint: "
                                          "its vocabulary does not match the model")
        return cls(Vocab(chars), model), meta


def train_char_lm(train_text, *, vocab=None, cell="lstm", hidden=256, layers=2, seq_len=100,
                  batch=32, lr=0.002, steps=None, minutes=None, seed=0, clip=5.0,
                  progress=None, desc="training", impl=None, lm=None, decay=0.0):
    """Train a CharLM on `train_text` for `steps` steps or `minutes` minutes.

    Adam with gradient clipping by global norm `clip`; truncated BPTT over
    `batch` parallel streams in chunks of `seq_len` characters, the state
    carried from chunk to chunk (reset at each pass over the text). When the
    text is too short for the requested batch and chunk, both shrink to fit.
    `lm` continues training an existing CharLM instead of making a new one;
    `impl` (e.g. fastlstm.reference) selects the recurrent kernels.
    `decay` in [0, 1) lowers the learning rate linearly over the run (by
    steps or by time, whichever is further along) to lr * (1 - decay) at
    the end. Returns (CharLM, TrainLog).
    """
    vocab = vocab or Vocab(train_text)
    if lm is None:
        lm = CharLM.new(vocab, cell, hidden, layers, seed)
    if impl is not None:
        lm.model.impl = impl
    ids = vocab.encode(train_text)
    batch = max(1, min(batch, (len(ids) - 1) // 2))
    seq_len = max(1, min(seq_len, (len(ids) - 1) // batch))
    chunks = toolkit.stream_chunks(ids, batch, seq_len)
    model = lm.model.train()
    opt = toolkit.Adam(model.parameters(), lr=lr, clip=clip)
    state = [None]
    t_start = time.perf_counter()

    def step(i):
        if decay:
            done = max(i / steps if steps else 0.0,
                       (time.perf_counter() - t_start) / (60.0 * minutes) if minutes else 0.0)
            opt.lr = lr * (1.0 - decay * min(done, 1.0))
        x, y, first = next(chunks)
        if first:
            state[0] = None
        logits, new_state = model(x, state[0])
        state[0] = new_state
        loss, dlogits = toolkit.cross_entropy(logits, y)
        model.zero_grad()
        model.backward(dlogits)
        opt.step(model.grads)
        return loss, x.size

    log = toolkit.train_loop(step, steps=steps, minutes=minutes, desc=desc, progress=progress)
    model.eval()
    return lm, log


def warmup_context(text, n=300):
    """The end of `text` (at most n characters, from a line start when there is one).

    Fed to a model before sampling, it sets the recurrent state as if the
    model had just read the text, so the sample starts like a continuation.
    """
    tail = text[-n:]
    cut = tail.find("\n")
    if 0 <= cut < len(tail) - 1:
        tail = tail[cut + 1:]
    return tail


def bits(nats):
    """nats -> bits."""
    return nats / math.log(2)
