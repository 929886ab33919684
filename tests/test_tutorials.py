"""Every tutorial and command in its quick mode: learning must happen.

The runs are seeded, so they are reproducible; no test depends on timing.
"""

import math
import re
import sys

import numpy as np
import pytest

from fastlstm import cli, textmodel, tinylang, tutorials


@pytest.fixture(autouse=True)
def no_progress(monkeypatch):
    monkeypatch.setenv("FASTLSTM_PROGRESS", "0")


def _lines():
    lines = []
    return lines, lambda *a: lines.append(" ".join(str(x) for x in a))


# ---------------------------------------------------------------- tutorials ---

def test_letters_reach_100_percent(capsys):
    res = tutorials.run_letters(quick=True, seed=0, out=lambda *a: None)
    for part in ("one_letter", "window", "stateful"):
        assert len(res[part]) == 25
        assert all(v == 1.0 for v in res[part].values()), part
    assert res["stateful_written"] == tutorials.ALPHABET
    assert res["all_correct"]
    # the same through the command line
    assert cli.main(["tutorial", "letters", "--quick"]) == 0
    out = capsys.readouterr().out
    assert "learned mapping: AB BC CD" in out and "Y->Z 100%" in out
    assert "ABCDEFGHIJKLMNOPQRSTUVWXYZ" in out


def test_timeseries_beats_persistence(tmp_path):
    lines, out = _lines()
    plot = tmp_path / "ts.png"
    res = tutorials.run_timeseries(quick=True, seed=0, plot=plot, out=out)
    assert res["wave_rmse"] < 0.8 * res["wave_persistence_rmse"]
    assert res["airline_rmse"] < 0.6 * res["airline_persistence_rmse"]
    assert res["airline_persistence_rmse"] == pytest.approx(48.04, abs=0.01)
    text = "\n".join(lines)
    assert "persistence" in text and "1960-12" in text
    try:
        import matplotlib  # noqa: F401
    except ImportError:
        assert res["plot"] is None and "matplotlib is not installed" in text
    else:
        assert res["plot"] == str(plot) and plot.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_timeseries_without_matplotlib_prints_a_note(tmp_path, monkeypatch):
    for mod in ("matplotlib", "matplotlib.figure", "matplotlib.backends.backend_agg"):
        monkeypatch.setitem(sys.modules, mod, None)   # makes the import fail
    path = tmp_path / "p.png"
    note = tutorials._plot_timeseries(path, None, None)
    assert "matplotlib is not installed" in note and "fastlstm[plot]" in note
    assert not path.exists()


def test_memory_task_separates_rnn_from_lstm():
    lines, out = _lines()
    res = tutorials.run_memory(quick=True, seed=0, out=out)
    acc, (short, long_) = res["accuracy"], res["gaps"]
    assert long_ >= 100
    for cell in ("rnn", "lstm", "gru"):
        assert acc[cell][short] >= 0.95, cell          # a short gap is easy for all
    assert acc["lstm"][long_] >= 0.9 and acc["gru"][long_] >= 0.9
    assert acc["rnn"][long_] <= 0.4                     # chance is 0.25
    assert any(line.startswith("plain RNN") for line in "\n".join(lines).splitlines())


def test_demo_learns_the_tiny_language():
    lines, out = _lines()
    res = tutorials.run_demo(quick=True, seed=0, out=out)
    text = "\n".join(lines)
    assert res["final_loss"] < 0.2 * res["first_loss"]
    assert res["val_nats"] < 0.3 * res["start_val_nats"]
    assert res["entropy_rate"] == pytest.approx(tinylang.entropy_rate()[0])
    assert res["val_oracle_bits"] == pytest.approx(res["entropy_rate"], abs=0.03)
    assert res["val_oracle_bits"] < res["val_bits"] < res["val_oracle_bits"] + 0.15
    assert res["grammatical_share"] > 0.6 and res["sampled"] >= 40
    assert res["speedup"] > 0 and res["step_seconds_reference"] > 0
    for needle in ("Sampled text", "Grammatical:", "bits per character", "entropy rate",
                   "NumPy reference"):
        assert needle in text
    assert sum(1 for line in lines[0].splitlines()) == 1


# ------------------------------------------------------------ the commands ---

def _write_text(path, n=30000, seed=9):
    """A small UTF-8 text: tiny-language sentences with some non-ASCII lines."""
    base = tinylang.generate_text(n, seed=seed).splitlines()
    extra = ["Café au lait — naïve façade.", "Ünïcödé: ε = 0.5 ≤ 1"]
    lines = [s if i % 9 else extra[(i // 9) % 2] for i, s in enumerate(base)]
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return path


def test_language_tutorial_on_a_text_file(tmp_path, capsys):
    f = _write_text(tmp_path / "story.txt", n=20000)
    assert cli.main(["tutorial", "language", "--quick", "--text", str(f), "--steps",
                     "120"]) == 0
    out = capsys.readouterr().out
    m = re.search(r"training loss (\d+\.\d+) -> (\d+\.\d+) nats/char", out)
    assert m and float(m.group(2)) < 0.5 * float(m.group(1))
    assert re.search(r"Validation: \d\.\d{4} bits per character", out)
    assert "Grammatical" not in out          # only the built-in language has a grammar


def test_train_text_and_generate_round_trip(tmp_path, capsys):
    f = _write_text(tmp_path / "corpus.txt")
    model = tmp_path / "m.npz"
    assert cli.main(["train-text", str(f), "--hidden", "64", "--layers", "1", "--steps", "150",
                     "--seq-len", "50", "--lr", "0.01", "--out", str(model)]) == 0
    out = capsys.readouterr().out
    m = re.search(r"training loss (\d+\.\d+) -> (\d+\.\d+) nats/char", out)
    assert m and float(m.group(2)) < 0.4 * float(m.group(1))
    val = [line for line in out.splitlines() if line.startswith("validation loss:")]
    assert len(val) == 1
    nats, bits = map(float, re.findall(r"(\d+\.\d+) (?:nats|bits)", val[0]))
    assert bits == pytest.approx(nats / math.log(2), abs=2e-4)
    assert nats < 0.5 * math.log(40)

    lm, meta = textmodel.CharLM.load(model)
    assert "é" in lm.vocab.index and meta["steps"] == 150
    assert meta["start"] and meta["start"] in f.read_text(encoding="utf-8")

    assert cli.main(["generate", str(model), "--length", "300", "--seed", "1"]) == 0
    g1 = capsys.readouterr().out
    assert len(g1) == 300 + 1                                  # print adds the newline
    assert cli.main(["generate", str(model), "--length", "300", "--seed", "1"]) == 0
    assert capsys.readouterr().out == g1                       # seeded
    assert cli.main(["generate", str(model), "--length", "80", "--seed", "2", "--prime",
                     "Café", "--temperature", "0.5"]) == 0
    g2 = capsys.readouterr().out
    assert g2.startswith("Café") and len(g2) == 4 + 80 + 1
    assert g1.count("\n") >= 5                                # it writes lines

    # a time budget instead of steps
    model2 = tmp_path / "m2.npz"
    assert cli.main(["train-text", str(f), "--hidden", "16", "--layers", "1", "--minutes",
                     "0.01", "--cell", "gru", "--out", str(model2)]) == 0
    assert "validation loss:" in capsys.readouterr().out and model2.exists()


@pytest.fixture
def workspace(tmp_path):
    """A folder with good and bad inputs and an existing checkpoint that must survive."""
    (tmp_path / "good.txt").write_text(tinylang.generate_text(3000, seed=1), encoding="utf-8")
    (tmp_path / "empty.txt").write_bytes(b"")
    (tmp_path / "blank.txt").write_text("   \n\n", encoding="utf-8")
    (tmp_path / "binary.txt").write_bytes(b"\x89PNG\r\n\x1a\n\x00\x00\x00\rIHDR")
    (tmp_path / "latin1.txt").write_bytes("Café crème".encode("latin-1"))
    (tmp_path / "tiny.txt").write_text("ab", encoding="utf-8")
    lm = textmodel.CharLM.new(textmodel.Vocab("abc \n"), "lstm", 8, 1, seed=0)
    lm.save(tmp_path / "model.npz", extra={"start": "\n"})
    raw = (tmp_path / "model.npz").read_bytes()
    (tmp_path / "truncated.npz").write_bytes(raw[:300])
    np.savez(tmp_path / "foreign.npz", x=np.arange(3))
    (tmp_path / "out.npz").write_bytes(b"precious")
    return tmp_path


BAD = [
    ["train-text", "{d}/missing.txt"],
    ["train-text", "{d}/empty.txt"],
    ["train-text", "{d}/blank.txt"],
    ["train-text", "{d}/binary.txt"],
    ["train-text", "{d}/latin1.txt"],
    ["train-text", "{d}/tiny.txt"],
    ["train-text", "{d}"],
    ["train-text", "{d}/good.txt", "--hidden", "-5"],
    ["train-text", "{d}/good.txt", "--layers", "0"],
    ["train-text", "{d}/good.txt", "--steps", "0"],
    ["train-text", "{d}/good.txt", "--minutes", "-1"],
    ["train-text", "{d}/good.txt", "--lr", "inf"],
    ["train-text", "{d}/good.txt", "--batch", "two"],
    ["train-text", "{d}/good.txt", "--val-fraction", "1"],
    ["train-text", "{d}/good.txt", "--cell", "transformer"],
    ["train-text", "{d}/good.txt", "--seed", "-1"],
    ["train-text", "{d}/good.txt", "--steps", "5", "--minutes", "1"],
    ["train-text", "{d}/good.txt", "--out", "{d}"],
    ["train-text", "{d}/good.txt", "--out", "{d}/no/such/dir/m.npz"],
    ["train-text", "{d}/good.txt", "--out", "{d}/good.txt"],
    ["generate", "{d}/missing.npz"],
    ["generate", "{d}/truncated.npz"],
    ["generate", "{d}/foreign.npz"],
    ["generate", "{d}/good.txt"],
    ["generate", "{d}/model.npz", "--prime", "xyz"],
    ["generate", "{d}/model.npz", "--prime", ""],
    ["generate", "{d}/model.npz", "--length", "0"],
    ["generate", "{d}/model.npz", "--temperature", "-0.5"],
    ["demo", "--minutes", "0"],
    ["tutorial"],
    ["tutorial", "nonsense"],
    ["tutorial", "memory", "--steps", "-3"],
    ["tutorial", "language", "--text", "{d}/binary.txt"],
    ["tutorial", "timeseries", "--plot", "{d}/no/such/dir/p.png"],
    ["frobnicate"],
    [],
]


@pytest.mark.parametrize("argv", BAD, ids=[" ".join(a[:4]) or "(none)" for a in BAD])
def test_bad_input_is_a_one_line_error(argv, workspace, capsys):
    before = {p.name: p.read_bytes() for p in workspace.iterdir() if p.is_file()}
    args = [a.format(d=workspace) for a in argv]
    with pytest.raises(SystemExit) as e:
        cli.main(args)
    assert e.value.code not in (0, None)
    err = capsys.readouterr().err
    assert err.startswith("fastlstm: error: ") and err.count("\n") == 1, err
    assert "Traceback" not in err
    after = {p.name: p.read_bytes() for p in workspace.iterdir() if p.is_file()}
    assert after == before                                    # nothing written or changed


def test_commands_pass_their_options(monkeypatch, tmp_path):
    calls = {}

    def fake(name):
        def f(*args, **kw):
            calls[name] = (args, kw)
        return f

    for name in ("run_demo", "run_timeseries", "run_letters", "run_language", "run_memory"):
        monkeypatch.setattr(tutorials, name, fake(name))
    assert cli.main(["demo", "--minutes", "0.5", "--seed", "4"]) == 0
    assert calls["run_demo"][1] == dict(minutes=0.5, quick=False, seed=4,
                                        out=calls["run_demo"][1]["out"])
    assert cli.main(["demo", "--quick"]) == 0 and calls["run_demo"][1]["quick"]
    assert cli.main(["tutorial", "memory", "--quick", "--seed", "3", "--steps", "7"]) == 0
    kw = calls["run_memory"][1]
    assert kw["quick"] and kw["seed"] == 3 and kw["steps"] == 7
    assert cli.main(["tutorial", "timeseries", "--no-plot"]) == 0
    assert calls["run_timeseries"][1]["plot"] is None
    p = tmp_path / "x.png"
    assert cli.main(["tutorial", "timeseries", "--quick", "--plot", str(p)]) == 0
    assert calls["run_timeseries"][1]["plot"] == str(p)
    assert cli.main(["tutorial", "language", "--minutes", "0.1"]) == 0
    args, kw = calls["run_language"]
    assert args == (None,) and kw["minutes"] == 0.1 and kw["steps"] is None


def test_help_lists_the_commands(capsys):
    with pytest.raises(SystemExit) as e:
        cli.main(["--help"])
    assert e.value.code == 0
    out = capsys.readouterr().out
    for name in ("demo", "tutorial", "train-text", "generate", "selfcheck"):
        assert name in out
