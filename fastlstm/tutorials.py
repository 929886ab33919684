"""The tutorials: recurrent networks trained on fastlstm's own kernels, with measured outcomes.

Each ``run_*`` function trains real models, prints what happened through
`out` (``print`` by default) and returns a dict of the measured figures.
``quick=True`` is a seconds-long version of the same run (used by the tests).

* :func:`run_timeseries`: next-value prediction from a window of past
  values, on a noisy composite waveform and on the monthly airline
  passengers 1949-1960; test RMSE next to the persistence baseline; a PNG
  plot when matplotlib is installed.
* :func:`run_letters`: learn the alphabet: the next letter from the previous
  one, from a window of up to five, and statefully one letter per call.
* :func:`run_language`: a character-level language model on the built-in
  tiny language (bits per character next to its entropy rate, share of
  grammatical samples) or on any text.
* :func:`run_memory`: plain RNN vs LSTM vs GRU on recalling the first symbol
  of a sequence after a gap of N distractors.
* :func:`run_demo`: the language tutorial on the built-in language in about
  two minutes, plus how much faster the training runs than on the NumPy
  reference kernels.
"""

import math
import os
import time

import numpy as np

from . import data, reference, textmodel, tinylang, toolkit

__all__ = ["run_timeseries", "run_letters", "run_language", "run_memory", "run_demo",
           "TUTORIALS"]

ALPHABET = "ABCDEFGHIJKLMNOPQRSTUVWXYZ"


def _rmse(a, b):
    return float(np.sqrt(np.mean((np.asarray(a) - np.asarray(b)) ** 2)))


# ============================================================ time series ===

def _fit_regressor(X, y, *, steps, hidden, lr, seed, batch=None, progress=None, desc=""):
    """Train an LSTM mapping each window X[n] (width values) to y[n]; returns the model.

    The window is read one value per time step; the prediction is the
    linear head's output at the last step (many-to-one), trained with the
    mean squared error and Adam.
    """
    rng = np.random.default_rng(seed)
    model = toolkit.SequenceModel("lstm", 1, hidden, input_size=1, seed=seed)
    opt = toolkit.Adam(model.parameters(), lr=lr, clip=1.0)

    def step(_):
        idx = np.arange(len(X)) if batch is None else rng.integers(0, len(X), batch)
        x = np.ascontiguousarray(X[idx].T[:, :, None], dtype=np.float32)
        out, _ = model(x)
        loss, d_last = toolkit.mse_loss(out[-1, :, 0], y[idx])
        d_out = np.zeros_like(out)
        d_out[-1, :, 0] = d_last
        model.zero_grad()
        model.backward(d_out)
        opt.step(model.grads)
        return loss, len(idx)

    log = toolkit.train_loop(step, steps=steps, desc=desc, progress=progress, unit="windows")
    return model.eval(), log


def _predict(model, X):
    out, _ = model.step_state(np.ascontiguousarray(X.T[:, :, None], dtype=np.float32))
    return out[-1, :, 0].astype(np.float64)


def _plot_timeseries(path, wave, airline):
    """Write the two prediction-vs-truth panels to `path`; returns None or a note."""
    try:
        from matplotlib.backends.backend_agg import FigureCanvasAgg
        from matplotlib.figure import Figure
    except ImportError:
        return ("note: matplotlib is not installed, so no plot was written "
                "(pip install 'fastlstm[plot]' to get one)")
    fig = Figure(figsize=(10, 7), dpi=100)
    FigureCanvasAgg(fig)
    ax1, ax2 = fig.subplots(2, 1)
    t, truth, pred, width = wave
    ax1.plot(t, truth, color="0.6", lw=1, label="truth (noisy)")
    ax1.plot(t, pred, color="C0", lw=1.2, label="LSTM prediction")
    ax1.set_title("Noisy composite waveform: next value from the last "
                  f"{width} values (test part)")
    ax1.set_xlabel("time step")
    ax1.legend(loc="upper right")
    months, series, test_months, pred = airline
    ax2.plot(months, series, color="0.3", lw=1.2, label="passengers (truth)")
    ax2.plot(test_months, pred, color="C1", lw=1.5, label="LSTM one-month-ahead (test)")
    ax2.axvline(test_months[0] - 0.5 / 12, color="0.7", ls="--", lw=1)
    ax2.set_title("Monthly airline passengers 1949-1960 (thousands)")
    ax2.set_xlabel("year")
    ax2.legend(loc="upper left")
    fig.tight_layout()
    fig.savefig(path)
    return None


def run_timeseries(*, quick=False, seed=0, plot="fastlstm-timeseries.png", out=print,
                   progress=None):
    """Next-value prediction on a noisy waveform and on the airline passenger series.

    Waveform: 2,000 samples of ``data.composite_wave``; the LSTM reads the
    last 30 values and predicts the next; the first 70% of the windows train
    it, the rest test it.

    Airline passengers: the model reads the last 12 month-to-month changes of
    log(passengers) and predicts the next change (the series grows and its
    seasonal swing grows with it; in log differences both are stationary, so
    what the model learns on 1949-1956 still applies in 1957-1960). The
    prediction for month t is passengers[t-1] * exp(predicted change); the
    last 48 months (1957-1960) are the test set.

    Both report the test RMSE next to persistence (predict the last value).
    plot: path of the PNG to write (None for no plot). Returns a dict.
    """
    res = {}
    out("Time series: predict the next value from a window of past values")
    out("=" * 66)

    # --- noisy composite waveform ---
    width = 30
    wave = data.composite_wave(2000, noise=0.1, seed=seed)
    X, y = data.windows(wave, width)
    n_train = int(0.7 * len(X))
    steps = 120 if quick else 400
    out(f"\n1. Noisy composite waveform: three sines plus noise (sd 0.1), "
        f"{len(wave)} samples;\n   an LSTM (32 units) reads the last {width} values and "
        f"predicts the next ({steps} training steps).")
    model, _ = _fit_regressor(X[:n_train], y[:n_train], steps=steps, hidden=32, lr=0.01,
                              seed=seed, batch=64, progress=progress, desc="waveform")
    pred = _predict(model, X[n_train:])
    res["wave_rmse"] = _rmse(pred, y[n_train:])
    res["wave_persistence_rmse"] = _rmse(X[n_train:, -1], y[n_train:])
    out(f"   test RMSE: LSTM {res['wave_rmse']:.4f}   persistence "
        f"{res['wave_persistence_rmse']:.4f}   (noise floor about 0.1)")

    # --- airline passengers ---
    s = data.airline_passengers()
    diffs = np.diff(np.log(s))                      # diffs[k] = log s[k+1] - log s[k]
    W, n_test = 12, 48
    Xd, yd = data.windows(diffs, W)                 # yd[n] = diffs[W+n]: month W+n+1
    target = np.arange(W + 1, len(s))               # month index predicted by window n
    test = target >= len(s) - n_test
    mu, sd = yd[~test].mean(), yd[~test].std()
    steps = 200 if quick else 300
    out(f"\n2. Monthly airline passengers, 1949-1960 ({len(s)} values): an LSTM (32 units)"
        f"\n   reads the last {W} monthly changes of log(passengers) and predicts the next;"
        f"\n   trained on the months up to 1956, tested on the last {n_test} (1957-1960), "
        f"{steps} steps.")
    model, _ = _fit_regressor((Xd[~test] - mu) / sd, (yd[~test] - mu) / sd, steps=steps,
                              hidden=32, lr=0.01, seed=seed, progress=progress,
                              desc="airline")
    change = _predict(model, (Xd[test] - mu) / sd) * sd + mu
    months = target[test]
    pred_air = s[months - 1] * np.exp(change)
    res["airline_rmse"] = _rmse(pred_air, s[months])
    res["airline_persistence_rmse"] = _rmse(s[months - 1], s[months])
    # a stronger hand-made baseline, for reference: last month times the change
    # between the same two months a year earlier
    seasonal = s[months - 1] * s[months - 12] / s[months - 13]
    res["airline_seasonal_rmse"] = _rmse(seasonal, s[months])
    out(f"   test RMSE (thousands of passengers): LSTM {res['airline_rmse']:.1f}   "
        f"persistence {res['airline_persistence_rmse']:.1f}\n   (for reference, the "
        f"seasonal rule 'last month x last year's change for this month': "
        f"{res['airline_seasonal_rmse']:.1f})")
    out("\n   month     truth  LSTM  persistence")
    for m in months[-12:]:
        yr, mo = divmod(m, 12)
        k = np.searchsorted(months, m)
        out(f"   {1949 + yr}-{mo + 1:02d}   {s[m]:5.0f} {pred_air[k]:5.0f} {s[m - 1]:8.0f}")

    better = (res["wave_rmse"] < res["wave_persistence_rmse"]
              and res["airline_rmse"] < res["airline_persistence_rmse"])
    out("\nThe LSTM beats persistence on both series." if better else
        "\nThe LSTM did not beat persistence on both series this time.")
    res["plot"] = None
    if plot:
        yr = 1949 + np.arange(len(s)) / 12.0
        t = np.arange(n_train, len(X)) + width
        note = _plot_timeseries(plot, (t[:300], y[n_train:][:300], pred[:300], width),
                                (yr, s, yr[months], pred_air))
        if note:
            out(note)
        else:
            res["plot"] = os.fspath(plot)
            out(f"Plot of prediction against truth written to {plot}")
    return res


# ================================================================ letters ===

def _letter_model(seed, hidden=32):
    return toolkit.SequenceModel("lstm", 26, hidden, vocab_size=26, embed_dim=16, seed=seed)


def _accuracy_table(out, per_letter, title):
    out(title)
    items = [f"{a}->{ALPHABET[ALPHABET.index(a) + 1]} {100 * v:3.0f}%"
             for a, v in per_letter.items()]
    for i in range(0, len(items), 5):
        out("   " + "   ".join(items[i:i + 5]))


def run_letters(*, quick=False, seed=0, out=print, progress=None):
    """Learn the alphabet three ways; every letter must reach 100% accuracy.

    1. one letter -> the next (A->B ... Y->Z), a one-step sequence;
    2. a window of 1 to 5 letters -> the letter after it: a ragged batch run
       with ``lengths``; accuracy per letter over every window;
    3. stateful: the alphabet read one letter per call with the recurrent
       state carried from call to call; trained by truncated BPTT over the
       alphabet in chunks of 5 letters, the state carried across chunks;
       then the model writes the whole alphabet from "A" alone, feeding each
       prediction back in, one call per letter.

    Returns a dict with the per-letter accuracies of each part and the
    generated alphabet.
    """
    res = {}
    ids = np.arange(26)
    out("Letters: learn to predict the next letter of the alphabet")
    out("=" * 58)

    # --- 1. one letter -> next ---
    steps = 150 if quick else 300
    model = _letter_model(seed)
    opt = toolkit.Adam(model.parameters(), lr=0.05, clip=5.0)
    x1, y1 = ids[None, :-1], ids[1:]

    def step1(_):
        logits, _ = model(x1)
        loss, d = toolkit.cross_entropy(logits[0], y1)
        model.zero_grad()
        model.backward(d[None])
        opt.step(model.grads)
        return loss, 25

    toolkit.train_loop(step1, steps=steps, desc="one letter", progress=progress, unit="pairs")
    logits, _ = model.step_state(x1)
    pred = logits[0].argmax(axis=1)
    acc1 = {ALPHABET[i]: float(pred[i] == y1[i]) for i in range(25)}
    res["one_letter"] = acc1
    out(f"\n1. One letter -> the next (LSTM, 32 units, {steps} full-batch steps).")
    out("   learned mapping: " + " ".join(f"{ALPHABET[i]}{ALPHABET[pred[i]]}"
                                          for i in range(25)))
    _accuracy_table(out, acc1, "   accuracy per letter:")

    # --- 2. a window of up to 5 letters -> next ---
    maxlen = 5
    steps = 200 if quick else 400
    model = _letter_model(seed + 1)
    opt = toolkit.Adam(model.parameters(), lr=0.02, clip=5.0)
    rng = np.random.default_rng(seed)

    def windows(targets, lens):
        """Padded (maxlen, B) windows ending just before each target, and the lengths."""
        x = np.zeros((maxlen, len(targets)), np.int64)
        for b, (t, n) in enumerate(zip(targets, lens)):
            x[:n, b] = np.arange(t - n, t)
        return x

    def step2(_):
        t = rng.integers(1, 26, 64)
        n = rng.integers(1, maxlen + 1, 64)
        n = np.minimum(n, t)
        x = windows(t, n)
        logits, _ = model(x, lengths=n)
        last = logits[n - 1, np.arange(len(t))]
        loss, d = toolkit.cross_entropy(last, t)
        dl = np.zeros_like(logits)
        dl[n - 1, np.arange(len(t))] = d
        model.zero_grad()
        model.backward(dl)
        opt.step(model.grads)
        return loss, len(t)

    toolkit.train_loop(step2, steps=steps, desc="windows", progress=progress, unit="windows")
    t_all = np.array([t for t in range(1, 26) for n in range(1, min(maxlen, t) + 1)])
    n_all = np.array([n for t in range(1, 26) for n in range(1, min(maxlen, t) + 1)])
    logits, _ = model.step_state(windows(t_all, n_all), lengths=n_all)
    ok = logits[n_all - 1, np.arange(len(t_all))].argmax(axis=1) == t_all
    acc2 = {ALPHABET[t - 1]: float(ok[t_all == t].mean()) for t in range(1, 26)}
    res["window"] = acc2
    out(f"\n2. A window of 1 to {maxlen} letters -> the next letter (ragged batches "
        f"with lengths, {steps} steps);\n   tested on all {len(t_all)} windows.")
    _accuracy_table(out, acc2, "   accuracy per (last) letter:")

    # --- 3. stateful, one letter per call ---
    chunk = 5
    passes = 60 if quick else 120
    model = _letter_model(seed + 2)
    opt = toolkit.Adam(model.parameters(), lr=0.02, clip=5.0)
    chunks = toolkit.stream_chunks(ids, 1, chunk)
    state = [None]

    def step3(_):
        x, y, first = next(chunks)
        if first:
            state[0] = None
        logits, state[0] = model(x, state[0])
        loss, d = toolkit.cross_entropy(logits, y)
        model.zero_grad()
        model.backward(d)
        opt.step(model.grads)
        return loss, x.size

    n_chunks = math.ceil(25 / chunk)
    toolkit.train_loop(step3, steps=passes * n_chunks, desc="stateful", progress=progress,
                       unit="letters")
    st, hits = None, []
    for i in range(25):                       # one call per letter, state carried
        logits, st = model.step_state(np.array([[i]]), st)
        hits.append(int(logits[0, 0].argmax()) == i + 1)
    acc3 = {ALPHABET[i]: float(hits[i]) for i in range(25)}
    st, letter, written = None, 0, "A"
    for _ in range(25):                       # write the alphabet from "A" alone
        logits, st = model.step_state(np.array([[letter]]), st)
        letter = int(logits[0, 0].argmax())
        written += ALPHABET[letter]
    res["stateful"] = acc3
    res["stateful_written"] = written
    out(f"\n3. Stateful: one letter per call, the state carried between calls (trained "
        f"by truncated\n   BPTT over the alphabet in chunks of {chunk} letters, state "
        f"carried across chunks, {passes} passes).")
    _accuracy_table(out, acc3, "   accuracy per letter, fed one letter per call:")
    out(f"   from 'A' alone, feeding back its own predictions: {written}")

    res["all_correct"] = (all(v == 1.0 for part in ("one_letter", "window", "stateful")
                              for v in res[part].values()) and written == ALPHABET)
    out("\nEvery letter is predicted correctly in all three set-ups." if res["all_correct"]
        else "\nSome letters are still wrong: train longer (drop --quick).")
    return res


# =============================================================== language ===

#: model and training settings of the language tutorial and the demo
#: (the learning rate falls linearly to lr * (1 - decay) over the run)
LANGUAGE_CONFIG = dict(cell="lstm", hidden=128, layers=2, seq_len=64, batch=32, lr=0.01,
                       decay=0.9)
_QUICK_STEPS = 400


def _show_samples(out, text, check, n=10):
    lines = text.split("\n")[:-1] if check else text.split("\n")
    for s in lines[:n]:
        mark = ("  ok " if tinylang.is_grammatical(s) else "  -- ") if check else "  "
        out(f"{mark}{s}")


def _builtin_corpus(n_train, seed):
    train = tinylang.generate_text(n_train, seed=seed)
    val = tinylang.generate_text(max(20000, n_train // 20), seed=seed + 1_000_003)
    return train, val


def run_language(text_path=None, *, quick=False, minutes=None, steps=None, seed=0,
                 out=print, progress=None, _budget_seconds=None):
    """Train the tiny language learner (a character-level LSTM) and measure it.

    text_path: None for the built-in tiny language (a fresh training text and
    a separate validation text, both drawn from the grammar), or a UTF-8 file
    whose last 10% is held out. Training stops after `steps` steps or
    `minutes` minutes (default: 400 steps with quick, else 2 minutes).

    Prints sampled text, the validation bits per character and, for the
    built-in language, its exact entropy rate and the share of sampled
    sentences that are grammatical. Returns a dict of the figures and the
    trained CharLM under "lm".
    """
    cfg = dict(LANGUAGE_CONFIG)
    if quick and steps is None and minutes is None:
        steps = _QUICK_STEPS
    if steps is None and minutes is None and _budget_seconds is None:
        minutes = 2.0
    builtin = text_path is None
    res = {"builtin": builtin}
    if builtin:
        rate, h_sent, chars = tinylang.entropy_rate()
        n_train = 300_000 if quick else 2_000_000
        train, val = _builtin_corpus(n_train, seed)
        res["entropy_rate"] = rate
        out("The tiny language: sentences from a seeded probabilistic grammar (agreement, "
            "nested\nrelative clauses, statements and questions), one per line, e.g.")
        for s, _ in tinylang.sample_sentences(3, seed=seed + 7):
            out(f"  {s}")
        out(f"Its entropy rate, exact from the grammar: {rate:.4f} bits per character "
            f"({h_sent:.2f} bits per\nsentence, {chars:.2f} characters per sentence with "
            f"the newline): no model can do better.")
    else:
        text = textmodel.read_text(text_path)
        train, val = textmodel.split_text(text, 0.1)
        out(f"Text: {os.fspath(text_path)}, {len(text):,} characters; the last 10% "
            f"({len(val):,}) is held out.")
    vocab = textmodel.Vocab(train + val)
    lm = textmodel.CharLM.new(vocab, cfg["cell"], cfg["hidden"], cfg["layers"], seed)
    res["vocab_size"] = len(vocab)
    if _budget_seconds is not None:
        minutes = max(_budget_seconds, 1.0) / 60.0
    budget = f"{steps} steps" if steps is not None else f"{minutes:.3g} minutes"
    layers = f"{cfg['layers']} layer{'s' if cfg['layers'] > 1 else ''}"
    out(f"\nModel: {cfg['cell'].upper()}, {layers} of {cfg['hidden']} units, "
        f"{lm.model.num_parameters():,} parameters, {len(vocab)} characters;\n"
        f"training on {len(train):,} characters ({cfg['batch']} streams, chunks of "
        f"{cfg['seq_len']}, state carried across chunks),\nAdam lr {cfg['lr']} falling "
        f"to {cfg['lr'] * (1 - cfg['decay']):g}, {budget}.")
    start = lm.evaluate(val)
    lm, log = textmodel.train_char_lm(
        train, vocab=vocab, lm=lm, seq_len=cfg["seq_len"], batch=cfg["batch"], lr=cfg["lr"],
        steps=steps, minutes=minutes, seed=seed, progress=progress, desc="language",
        decay=cfg["decay"])
    res.update(steps=log.steps, seconds=log.seconds, chars_per_second=log.items_per_second,
               first_loss=log.losses[0], final_loss=log.mean_loss(last=20),
               start_val_nats=start, config=cfg)
    out(f"Trained {log.steps:,} steps in {log.seconds:.0f} s ({log.items / 1e6:.1f}M "
        f"characters, {log.items_per_second:,.0f} characters/s); training loss "
        f"{log.losses[0]:.2f} -> {log.mean_loss(last=20):.2f} nats/char.")

    nats = lm.evaluate(val)
    res["val_nats"] = nats
    res["val_bits"] = textmodel.bits(nats)
    prime = textmodel.warmup_context(val)   # sample as a continuation of real text
    sample = lm.generate(3000 if builtin else 600, temperature=0.8, prime=prime, seed=seed)
    res["sample"] = sample
    out("\nSampled text (temperature 0.8):")
    _show_samples(out, sample, builtin, n=10 if builtin else 12)
    if builtin:
        g, n = tinylang.grammatical_share(sample)
        g1, n1 = tinylang.grammatical_share(lm.generate(3000, temperature=1.0, prime=prime,
                                                        seed=seed + 1))
        res.update(grammatical=g, sampled=n, grammatical_share=g / max(n, 1),
                   grammatical_share_t1=g1 / max(n1, 1))
        out(f"\nGrammatical: {g} of {n} sampled sentences ({100 * g / max(n, 1):.0f}%) at "
            f"temperature 0.8; {100 * g1 / max(n1, 1):.0f}% of {n1} at temperature 1.0.")
        # the grammar's own score on the same validation text: the best any model
        # can do on it (it differs from the entropy rate by the text's sampling noise)
        oracle = -sum(tinylang.sentence_log2prob(line)
                      for line in val.split(tinylang.SEPARATOR)[:-1]) / len(val)
        res["val_oracle_bits"] = oracle
        out(f"Validation: {res['val_bits']:.4f} bits per character ({nats:.4f} nats per "
            f"character).\nThe language's entropy rate is {res['entropy_rate']:.4f} bits per "
            f"character, and the grammar itself\nscores {oracle:.4f} on this validation text: "
            f"the model is {res['val_bits'] - oracle:.4f} bits per character above the best "
            f"possible.")
    else:
        out(f"\nValidation: {res['val_bits']:.4f} bits per character ({nats:.4f} nats per "
            f"character).")
    res["lm"] = lm
    return res


# ================================================================= memory ===

def _memory_batch(rng, batch, gap, n_symbols=4, n_distractors=4):
    """Sequences [symbol, gap distractors, query] (gap + 2, B) and the symbols (B,)."""
    x = np.empty((gap + 2, batch), np.int64)
    sym = rng.integers(0, n_symbols, batch)
    x[0] = sym
    x[1:gap + 1] = n_symbols + rng.integers(0, n_distractors, (gap, batch))
    x[gap + 1] = n_symbols + n_distractors
    return x, sym


def run_memory(*, quick=False, seed=0, gaps=None, steps=None, out=print, progress=None):
    """Plain RNN vs LSTM vs GRU: recall the first symbol after a gap of N distractors.

    A sequence is one of 4 symbols, then N random distractors (4 other
    symbols), then a query mark; the answer, read at the query, is the first
    symbol (chance: 25%). For each cell and each N a fresh model (32 units)
    is trained on gaps drawn uniformly from 1..N, which gives every cell the
    same easy cases to start from, then tested on 1,000 new sequences, half
    with a gap of N - 1 and half with N. (Both parities, because a plain RNN
    often keeps a trace of the symbol in a mode that flips sign at every
    step, which reads right after an odd number of steps and wrong after an
    even one; over both it averages out to chance.) The LSTM starts with a
    forget-gate bias of 2, so that it keeps its cell state by default.
    Returns a dict {"accuracy": {cell: {gap: accuracy}}, "gaps", "chance"}.
    """
    gaps = list(gaps or ((10, 100) if quick else (5, 20, 50, 100)))
    steps = steps or (400 if quick else 1000)
    K, D, H = 4, 4, 32
    out("Memory: recall the first symbol after N distractors (plain RNN vs LSTM vs GRU)")
    out("=" * 78)
    out(f"Sequences: one of {K} symbols, N random distractors, a query; chance is "
        f"{100 / K:.0f}%.\nEach cell: {H} units, trained {steps} steps (batches of 32, gaps "
        f"1..N),\ntested on 1,000 new sequences with gaps N-1 and N.\n")
    acc = {}
    for cell in ("rnn", "lstm", "gru"):
        acc[cell] = {}
        for gap in gaps:
            rng = np.random.default_rng([seed, gap])
            model = toolkit.SequenceModel(cell, K, H, vocab_size=K + D + 1, embed_dim=8,
                                          seed=[seed, gap, 1])
            if cell == "lstm":
                model.set_forget_bias(2.0)
            opt = toolkit.Adam(model.parameters(), lr=0.01, clip=1.0)

            def step(_):
                x, y = _memory_batch(rng, 32, int(rng.integers(1, gap + 1)), K, D)
                logits, _ = model(x)
                loss, d = toolkit.cross_entropy(logits[-1], y)
                dl = np.zeros_like(logits)
                dl[-1] = d
                model.zero_grad()
                model.backward(dl)
                opt.step(model.grads)
                return loss, x.shape[1]

            toolkit.train_loop(step, steps=steps, desc=f"{cell} gap {gap}", progress=progress,
                               unit="seqs")
            hits = 0
            for k, g in enumerate((max(gap - 1, 1), gap)):
                x, y = _memory_batch(np.random.default_rng([seed, gap, k + 2]), 500, g, K, D)
                logits, _ = model.step_state(x)
                hits += int((logits[-1].argmax(axis=1) == y).sum())
            acc[cell][gap] = hits / 1000
    names = {"rnn": "plain RNN", "lstm": "LSTM", "gru": "GRU"}
    out("accuracy      " + "".join(f"{'N=' + str(g):>8}" for g in gaps))
    for cell in acc:
        out(f"{names[cell]:12}  " + "".join(f"{100 * acc[cell][g]:7.0f}%" for g in gaps))
    g = gaps[-1]
    out(f"\nAt N={g} the plain RNN is at {100 * acc['rnn'][g]:.0f}% (chance {100 / K:.0f}%) "
        f"while the LSTM is at {100 * acc['lstm'][g]:.0f}% and the GRU at "
        f"{100 * acc['gru'][g]:.0f}%:\nthe gradient through a tanh recurrence fades "
        "step by step, while the LSTM's cell state\nand the GRU's update gate carry "
        "the symbol (and its gradient) across the gap.")
    return {"accuracy": acc, "gaps": gaps, "chance": 1.0 / K}


# =================================================================== demo ===

def _time_training_step(lm, chunks, impl):
    """Wall time of one training step (forward, loss, backward, Adam) on `impl`."""
    model = lm.model
    model.impl = impl
    model.train()
    opt = toolkit.Adam(model.parameters(), lr=1e-4)
    x, y, _ = next(chunks)
    t0 = time.perf_counter()
    logits, _ = model(x)
    _, d = toolkit.cross_entropy(logits, y)
    model.zero_grad()
    model.backward(d)
    opt.step(model.grads)
    elapsed = time.perf_counter() - t0
    model.impl = None
    return elapsed


def measure_speedup(cfg, vocab, text, seed=0, rounds=5):
    """Time training steps of one model on the C kernels and on the NumPy reference.

    A fresh CharLM of configuration `cfg` trains on chunks of `text`. After
    a warm-up step on each, the two implementations alternate for `rounds`
    rounds, so both see the same machine load, and the fastest step of each
    is kept (the least disturbed by other processes). Returns (seconds per
    step on the C kernels, seconds per step on the reference).
    """
    lm = textmodel.CharLM.new(vocab, cfg["cell"], cfg["hidden"], cfg["layers"], seed)
    chunks = toolkit.stream_chunks(vocab.encode(text), cfg["batch"], cfg["seq_len"])
    _time_training_step(lm, chunks, None)
    _time_training_step(lm, chunks, reference)
    fast, ref = [], []
    for _ in range(rounds):
        fast.append(_time_training_step(lm, chunks, None))
        ref.append(_time_training_step(lm, chunks, reference))
    return min(fast), min(ref)


def run_demo(*, minutes=2.0, quick=False, seed=0, out=print, progress=None):
    """The main job: the tiny language learner in about `minutes` minutes, and its speed.

    Trains the language tutorial's model on the built-in tiny language
    (training gets what is left of the budget after the set-up, less a
    reserve for the evaluation), prints sampled sentences, the share that is
    grammatical, the validation bits per character next to the entropy rate,
    and how much faster the training runs than on the NumPy reference
    (measured by timing a few training steps of the same model on both).
    quick: a seconds-long run (400 training steps). Returns the language dict plus
    "step_seconds_fast", "step_seconds_reference" and "speedup".
    """
    t0 = time.perf_counter()
    out(f"fastlstm demo: an LSTM on fastlstm's C kernels learns the built-in tiny language"
        f"{' (quick run)' if quick else f' in about {minutes:g} minutes'}\n")
    if quick:
        res = run_language(quick=True, seed=seed, out=out, progress=progress)
    else:
        reserve = 15.0 if minutes >= 1 else 5.0
        res = run_language(seed=seed, out=out, progress=progress,
                           _budget_seconds=60.0 * minutes - reserve - (time.perf_counter() - t0))
    cfg = res["config"]
    lm = res["lm"]
    text = tinylang.generate_text(100_000, seed=seed + 17)
    fast, ref = measure_speedup(cfg, lm.vocab, text, seed=seed, rounds=3 if quick else 6)
    res.update(step_seconds_fast=fast, step_seconds_reference=ref, speedup=ref / fast)
    verdict = (f"{ref / fast:.1f} times as fast" if ref >= fast else
               f"{fast / ref:.1f} times slower (is the machine busy?)")
    out(f"\nSpeed: one training step ({cfg['batch']} streams x {cfg['seq_len']} characters: "
        f"forward, backward, Adam;\nbest of {3 if quick else 6}, alternating) takes "
        f"{1000 * fast:.1f} ms on the C kernels and {1000 * ref:.1f} ms on the NumPy "
        f"reference\nkernels: the training runs {verdict} on fastlstm's kernels.")
    if not quick:
        out(f"At that ratio, the {res['seconds'] / 60:.1f} minutes of training above would "
            f"have taken about {res['seconds'] * ref / fast / 60:.1f} minutes on the "
            "reference.")
    out(f"\nTotal time: {time.perf_counter() - t0:.0f} s.")
    return res


#: tutorial name -> function
TUTORIALS = {"timeseries": run_timeseries, "letters": run_letters, "language": run_language,
             "memory": run_memory}
