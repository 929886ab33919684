"""The training subcommands of the `fastlstm` command: demo, tutorial, train-text, generate.

``add_parsers`` adds them to the command's argparse subparsers and ``run``
carries one out. Every expected failure (bad options, unusable text files,
invalid checkpoints, characters outside a model's vocabulary) ends in a
one-line ``fastlstm: error: ...`` on stderr and a non-zero exit, never a
traceback, and leaves existing files untouched.
"""

import argparse
import math
import os
import sys

__all__ = ["Parser", "add_parsers", "run", "COMMANDS"]

#: the subcommands this module handles
COMMANDS = ("demo", "tutorial", "train-text", "generate")


class Parser(argparse.ArgumentParser):
    """An ArgumentParser whose errors are one line: ``fastlstm: error: ...``."""

    def error(self, message):
        self.exit(2, f"fastlstm: error: {message} (see '{self.prog} --help')\n")


# ---------------------------------------------------------- option types ---

def _positive_int(s):
    try:
        v = int(s)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a positive integer, got {s!r}") from None
    if v < 1:
        raise argparse.ArgumentTypeError(f"expected a positive integer, got {s!r}")
    return v


def _positive_float(s):
    try:
        v = float(s)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a positive number, got {s!r}") from None
    if not (math.isfinite(v) and v > 0):
        raise argparse.ArgumentTypeError(f"expected a positive number, got {s!r}")
    return v


def _fraction(s):
    try:
        v = float(s)
    except ValueError:
        v = float("nan")
    if not 0.0 < v < 1.0:
        raise argparse.ArgumentTypeError(f"expected a number between 0 and 1 (exclusive), "
                                         f"got {s!r}")
    return v


def _seed(s):
    try:
        v = int(s)
    except ValueError:
        v = -1
    if v < 0:
        raise argparse.ArgumentTypeError(f"expected a non-negative integer, got {s!r}")
    return v


# --------------------------------------------------------------- parsers ---

def add_parsers(sub):
    """Add demo, tutorial, train-text and generate to argparse subparsers `sub`."""
    p = sub.add_parser(
        "demo", help="the main job: the tiny language learner in about two minutes",
        description="Train a character-level LSTM on the built-in tiny language, then print "
                    "sampled sentences, the share that is grammatical, the validation bits per "
                    "character next to the language's entropy rate, and how much faster the "
                    "training runs than on the NumPy reference kernels.")
    p.add_argument("--minutes", type=_positive_float, default=2.0,
                   help="total time to aim for, training included (default: 2)")
    p.add_argument("--quick", action="store_true", help="a seconds-long run")
    p.add_argument("--seed", type=_seed, default=0, help="random seed (default: 0)")

    p = sub.add_parser("tutorial", help="run a tutorial: timeseries, letters, language, memory",
                       description="Tutorials that train recurrent networks on fastlstm's "
                                   "kernels and report measured outcomes.")
    tsub = p.add_subparsers(dest="name", required=True, metavar="NAME")

    def tut(name, help_):
        t = tsub.add_parser(name, help=help_, description=help_)
        t.add_argument("--quick", action="store_true", help="a seconds-long run")
        t.add_argument("--seed", type=_seed, default=0, help="random seed (default: 0)")
        return t

    t = tut("timeseries", "next-value prediction on a noisy waveform and the airline "
                          "passengers 1949-1960, against persistence")
    t.add_argument("--plot", default="fastlstm-timeseries.png", metavar="PATH",
                   help="PNG file for the plot (default: fastlstm-timeseries.png; needs "
                        "matplotlib)")
    t.add_argument("--no-plot", action="store_true", help="do not write a plot")
    tut("letters", "learn the alphabet: next letter from one, from a window, statefully")
    t = tut("language", "the tiny language learner, on the built-in tiny language or "
                        "any text")
    t.add_argument("--text", metavar="FILE", help="a UTF-8 text file instead of the built-in "
                                                  "tiny language")
    g = t.add_mutually_exclusive_group()
    g.add_argument("--minutes", type=_positive_float, help="training time (default: 2)")
    g.add_argument("--steps", type=_positive_int, help="training steps")
    t = tut("memory", "plain RNN vs LSTM vs GRU recalling a symbol after N distractors")
    t.add_argument("--steps", type=_positive_int,
                   help="training steps per model (default: 1000, 400 with --quick)")

    p = sub.add_parser(
        "train-text", help="train a character-level language model on a UTF-8 text",
        description="Train a character-level language model on a UTF-8 text file. The last "
                    "part of the text (--val-fraction) is held out; at the end the validation "
                    "loss is printed in nats and bits per character and the model is saved "
                    "with its vocabulary.")
    p.add_argument("file", metavar="FILE", help="UTF-8 text file")
    p.add_argument("--cell", choices=("lstm", "gru", "rnn"), default="lstm")
    p.add_argument("--hidden", type=_positive_int, default=256, help="units per layer (256)")
    p.add_argument("--layers", type=_positive_int, default=2, help="recurrent layers (2)")
    p.add_argument("--seq-len", type=_positive_int, default=100,
                   help="characters per truncated-BPTT chunk (100)")
    p.add_argument("--batch", type=_positive_int, default=32, help="parallel streams (32)")
    p.add_argument("--lr", type=_positive_float, default=0.002, help="Adam learning rate")
    g = p.add_mutually_exclusive_group()
    g.add_argument("--steps", type=_positive_int, help="training steps (default: 2000)")
    g.add_argument("--minutes", type=_positive_float, help="training time in minutes")
    p.add_argument("--val-fraction", type=_fraction, default=0.1,
                   help="share of the text held out at its end (0.1)")
    p.add_argument("--seed", type=_seed, default=0, help="random seed (0)")
    p.add_argument("--out", default="model.npz", help="checkpoint to write (model.npz)")

    p = sub.add_parser("generate", help="write text from a train-text checkpoint",
                       description="Sample text from a checkpoint written by train-text.")
    p.add_argument("model", metavar="MODEL", help="checkpoint (.npz) from train-text")
    p.add_argument("--length", type=_positive_int, default=500,
                   help="characters to generate (500)")
    p.add_argument("--temperature", type=_positive_float, default=0.8,
                   help="sampling temperature: lower is more conservative (0.8)")
    p.add_argument("--prime", help="text to start from, printed before the sample (default: "
                                   "continue from the end of the training text, not printed)")
    p.add_argument("--seed", type=_seed, default=0, help="random seed (0)")


# --------------------------------------------------------------- running ---

def run(args, out=print):
    """Carry out a parsed subcommand; returns the exit code (0)."""
    from . import textmodel, toolkit

    try:
        if args.command == "demo":
            return _demo(args, out)
        if args.command == "tutorial":
            return _tutorial(args, out)
        if args.command == "train-text":
            return _train_text(args, out)
        if args.command == "generate":
            return _generate(args, out)
    except (textmodel.TextError, toolkit.CheckpointError) as e:
        _exit(str(e))
    except OSError as e:
        where = f"{e.filename}: " if getattr(e, "filename", None) else ""
        _exit(f"{where}{e.strerror or e}")
    except MemoryError:
        _exit("out of memory: the model or the text is too large for this machine")
    except KeyboardInterrupt:
        _exit("interrupted", 130)
    raise AssertionError(args.command)


def _exit(message, code=1):
    sys.stdout.flush()
    sys.stderr.write(f"fastlstm: error: {message}\n")
    raise SystemExit(code)


def _demo(args, out):
    from . import tutorials
    tutorials.run_demo(minutes=args.minutes, quick=args.quick, seed=args.seed, out=out)
    return 0


def _tutorial(args, out):
    from . import tutorials
    kw = dict(quick=args.quick, seed=args.seed, out=out)
    if args.name == "timeseries":
        plot = None if args.no_plot else args.plot
        if plot:
            _check_output_path(plot)
        tutorials.run_timeseries(plot=plot, **kw)
    elif args.name == "letters":
        tutorials.run_letters(**kw)
    elif args.name == "language":
        if args.text is not None:
            from . import textmodel
            textmodel.read_text(args.text)  # fail early on an unusable file
        tutorials.run_language(args.text, minutes=args.minutes, steps=args.steps, **kw)
    elif args.name == "memory":
        tutorials.run_memory(steps=args.steps, **kw)
    return 0


def _check_output_path(path, inputs=()):
    """Fail early (before any training) if `path` cannot be written as a file."""
    path = os.fspath(path)
    if os.path.isdir(path):
        _exit(f"{path}: is a directory; give a file name to write")
    parent = os.path.dirname(os.path.abspath(path))
    if not os.path.isdir(parent):
        _exit(f"{path}: the directory {parent} does not exist")
    if not os.access(parent, os.W_OK):
        _exit(f"{path}: cannot write in {parent}")
    for p in inputs:
        if os.path.exists(path) and os.path.samefile(path, p):
            _exit(f"{path}: the output would overwrite the input {p}")


def _train_text(args, out):
    from . import textmodel

    text = textmodel.read_text(args.file)
    _check_output_path(args.out, inputs=[args.file])
    train, val = textmodel.split_text(text, args.val_fraction)
    vocab = textmodel.Vocab(text)
    steps = args.steps if args.steps is not None or args.minutes is not None else 2000
    budget = f"{steps:,} steps" if steps else f"{args.minutes:g} minutes"
    out(f"{args.file}: {len(text):,} characters, {len(vocab)} distinct; training on "
        f"{len(train):,}, validating on the last {len(val):,}.")
    out(f"Model: {args.cell.upper()}, {args.layers} layer(s) of {args.hidden} units; "
        f"{args.batch} streams, chunks of {args.seq_len}, Adam lr {args.lr:g}, {budget}.")
    lm, log = textmodel.train_char_lm(
        train, vocab=vocab, cell=args.cell, hidden=args.hidden, layers=args.layers,
        seq_len=args.seq_len, batch=args.batch, lr=args.lr, steps=steps,
        minutes=args.minutes, seed=args.seed, desc="train-text")
    stop = " (interrupted)" if log.interrupted else ""
    out(f"Trained {log.steps:,} steps{stop} in {log.seconds:.1f} s "
        f"({log.items_per_second:,.0f} characters/s); training loss {log.losses[0]:.3f} -> "
        f"{log.mean_loss(last=20):.3f} nats/char.")
    nats = lm.evaluate(val)
    out(f"validation loss: {nats:.4f} nats per character, {textmodel.bits(nats):.4f} bits per "
        "character")
    start = textmodel.warmup_context(train)
    lm.save(args.out, extra={"start": start, "cell": args.cell, "steps": log.steps,
                             "val_nats": nats, "source": os.path.basename(args.file)})
    out(f"Saved {args.out} (vocabulary of {len(vocab)} characters included).")
    return 0


def _generate(args, out):
    from . import textmodel

    lm, meta = textmodel.CharLM.load(args.model)
    if args.prime is not None:
        if args.prime == "":
            _exit("--prime: give at least one character")
        prime = args.prime
    else:  # continue from the end of the training text, stored in the checkpoint
        prime = meta.get("start") if isinstance(meta.get("start"), str) else ""
        if not prime or any(c not in lm.vocab.index for c in prime):
            prime = "\n" if "\n" in lm.vocab.index else lm.vocab.chars[0]
    try:
        lm.vocab.encode(prime)
    except textmodel.TextError as e:
        _exit(f"--prime: {e}")
    text = lm.generate(args.length, temperature=args.temperature, prime=prime, seed=args.seed)
    shown = prime if args.prime is not None else ""
    out(shown + text)
    return 0
