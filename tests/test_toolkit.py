"""The training toolkit: layer and loss gradients, optimizers, clipping, TBPTT, sampling,
the train loop and checkpoints."""

import os
import time
import zipfile

import numpy as np
import pytest

import fastlstm
from fastlstm import reference, toolkit


def numgrad(f, x, eps=1e-6):
    """Central finite differences of the scalar f() with respect to the array x (in place)."""
    g = np.zeros_like(x)
    it = np.nditer(x, flags=["multi_index"])
    for _ in it:
        i = it.multi_index
        old = x[i]
        x[i] = old + eps
        fp = f()
        x[i] = old - eps
        fm = f()
        x[i] = old
        g[i] = (fp - fm) / (2 * eps)
    return g


@pytest.fixture(autouse=True)
def no_progress(monkeypatch):
    monkeypatch.setenv("FASTLSTM_PROGRESS", "0")


# ----------------------------------------------------------------- layers ---

def test_linear_gradients(rng):
    lin = toolkit.Linear(5, 3, dtype=np.float64, seed=0)
    x = rng.standard_normal((4, 2, 5))
    w = rng.standard_normal((4, 2, 3))

    def loss():
        return float((lin.eval()(x) * w).sum())

    lin.train()
    y = lin(x)
    assert y.shape == (4, 2, 3)
    np.testing.assert_allclose(y, x @ lin.params["weight"].T + lin.params["bias"])
    dx = lin.backward(w)
    np.testing.assert_allclose(dx, numgrad(loss, x), rtol=1e-6, atol=1e-8)
    for k in ("weight", "bias"):
        np.testing.assert_allclose(lin.grads[k], numgrad(loss, lin.params[k]), rtol=1e-6,
                                   atol=1e-8)


def test_linear_backward_needs_training_forward():
    lin = toolkit.Linear(2, 2).eval()
    lin(np.zeros((1, 2), np.float32))
    with pytest.raises(RuntimeError):
        lin.backward(np.zeros((1, 2), np.float32))


def test_embedding_gradients_accumulate_repeated_ids(rng):
    emb = toolkit.Embedding(6, 3, dtype=np.float64, seed=0)
    ids = np.array([[1, 2], [1, 5], [0, 1]])
    w = rng.standard_normal((3, 2, 3))
    out = emb(ids)
    np.testing.assert_array_equal(out, emb.params["weight"][ids])
    assert emb.backward(w) is None
    g = numgrad(lambda: float((emb.params["weight"][ids] * w).sum()), emb.params["weight"])
    np.testing.assert_allclose(emb.grads["weight"], g, rtol=1e-6, atol=1e-8)
    np.testing.assert_allclose(emb.grads["weight"][1], w[0, 0] + w[1, 0] + w[2, 1])
    with pytest.raises(ValueError):
        emb(np.array([6]))
    with pytest.raises(TypeError):
        emb(np.array([0.5]))


# ----------------------------------------------------------------- losses ---

def test_cross_entropy_value_and_gradient(rng):
    logits = rng.standard_normal((3, 4, 5))
    t = rng.integers(0, 5, (3, 4))
    mask = rng.random((3, 4)) > 0.3
    loss, d = toolkit.cross_entropy(logits, t, mask)
    p = np.exp(logits) / np.exp(logits).sum(-1, keepdims=True)
    nll = -np.log(np.take_along_axis(p, t[..., None], -1))[..., 0]
    assert loss == pytest.approx((nll * mask).sum() / mask.sum())
    g = numgrad(lambda: toolkit.cross_entropy(logits, t, mask)[0], logits)
    np.testing.assert_allclose(d, g, rtol=1e-5, atol=1e-9)
    assert d.dtype == logits.dtype
    # huge logits stay finite
    big, dbig = toolkit.cross_entropy(np.array([[1000.0, -1000.0]]), np.array([1]))
    assert big == pytest.approx(2000.0) and np.all(np.isfinite(dbig))


def test_mse_gradient(rng):
    pred = rng.standard_normal((4, 3))
    target = rng.standard_normal((4, 3))
    loss, d = toolkit.mse_loss(pred, target)
    assert loss == pytest.approx(np.mean((pred - target) ** 2))
    np.testing.assert_allclose(d, numgrad(lambda: toolkit.mse_loss(pred, target)[0], pred),
                               rtol=1e-6, atol=1e-9)


# -------------------------------------------------------- sequence model ---

@pytest.mark.parametrize("cell", ["lstm", "gru", "rnn"])
def test_sequence_model_gradients_with_carried_state(cell, rng):
    """Full model (embedding -> 2-layer stack -> head) against finite differences,
    with an initial state carried in from a previous chunk."""
    m = toolkit.SequenceModel(cell, 4, 5, 2, vocab_size=7, embed_dim=3, dtype=np.float64,
                              seed=1)
    x = rng.integers(0, 7, (6, 3))
    _, state = m.step_state(rng.integers(0, 7, (4, 3)))
    y = rng.integers(0, 4, (6, 3))

    def loss():
        logits, _ = m.step_state(x, state)
        return toolkit.cross_entropy(logits, y)[0]

    logits, _ = m(x, state)
    _, d = toolkit.cross_entropy(logits, y)
    m.zero_grad()
    m.backward(d)
    grads = m.grads
    for name, p in m.parameters().items():
        np.testing.assert_allclose(grads[name], numgrad(loss, p), rtol=1e-5, atol=1e-8,
                                   err_msg=name)


def test_sequence_model_reference_impl_gives_the_same_numbers(rng):
    m = toolkit.SequenceModel("lstm", 3, 6, vocab_size=5, dtype=np.float64, seed=0)
    x = rng.integers(0, 5, (7, 2))
    d = rng.standard_normal((7, 2, 3))
    out_fast, _ = m(x)
    m.backward(d)
    g_fast = {k: v.copy() for k, v in m.grads.items()}
    m.zero_grad()
    m.impl = reference
    out_ref, _ = m(x)
    m.backward(d)
    np.testing.assert_allclose(out_fast, out_ref, rtol=1e-10)
    for k, v in m.grads.items():
        np.testing.assert_allclose(g_fast[k], v, rtol=1e-9, atol=1e-12)
    m.impl = None
    assert m.impl is not reference


def test_forget_bias():
    m = toolkit.SequenceModel("lstm", 2, 4, 2, input_size=3, seed=0)
    m.set_forget_bias(2.0)
    p = m.parameters()
    for layer in (0, 1):
        b = p[f"rnn.bias_ih_l{layer}"] + p[f"rnn.bias_hh_l{layer}"]
        np.testing.assert_allclose(b[4:8], 2.0)
    with pytest.raises(ValueError):
        toolkit.SequenceModel("gru", 2, 4, input_size=3).set_forget_bias(1.0)


# ------------------------------------------------------------- optimizers ---

def test_clip_grad_norm():
    g = {"a": np.array([3.0, 0.0]), "b": np.array([[4.0]])}
    assert toolkit.clip_grad_norm(g, 10.0) == pytest.approx(5.0)
    np.testing.assert_array_equal(g["a"], [3.0, 0.0])          # below the limit: unchanged
    assert toolkit.clip_grad_norm(g, 1.0) == pytest.approx(5.0)
    np.testing.assert_allclose(g["a"], [0.6, 0.0])
    np.testing.assert_allclose(g["b"], [[0.8]])
    assert toolkit.clip_grad_norm(g, None) == pytest.approx(1.0)


def test_sgd_and_momentum():
    p = {"w": np.array([1.0, -2.0])}
    opt = toolkit.SGD(p, lr=0.1)
    opt.step({"w": np.array([1.0, 1.0])})
    np.testing.assert_allclose(p["w"], [0.9, -2.1])
    p = {"w": np.array([0.0])}
    opt = toolkit.SGD(p, lr=1.0, momentum=0.5)
    opt.step({"w": np.array([1.0])})
    opt.step({"w": np.array([1.0])})
    np.testing.assert_allclose(p["w"], [-(1.0 + 1.5)])


def test_adam_first_steps_and_clipping():
    p = {"w": np.array([1.0, 1.0, 1.0])}
    opt = toolkit.Adam(p, lr=0.01)
    opt.step({"w": np.array([1e-3, -5.0, 0.0])})
    # the first bias-corrected Adam step moves every coordinate by about lr * sign(g)
    np.testing.assert_allclose(p["w"], [0.99, 1.01, 1.0], atol=1e-5)
    p = {"w": np.array([0.0, 0.0])}
    opt = toolkit.Adam(p, lr=0.1, clip=1.0)
    g = {"w": np.array([30.0, 40.0])}
    opt.step(g)
    assert opt.last_norm == pytest.approx(50.0)
    np.testing.assert_allclose(g["w"], [0.6, 0.8])               # clipped in place
    with pytest.raises(ValueError):
        toolkit.Adam(p, lr=0.0)


def test_adam_trains_a_regression(rng):
    lin = toolkit.Linear(3, 1, dtype=np.float64, seed=0)
    true_w = np.array([[1.0, -2.0, 0.5]])
    x = rng.standard_normal((64, 3))
    y = x @ true_w.T + 0.3
    opt = toolkit.Adam(lin.parameters(), lr=0.05)
    first = None
    for _ in range(300):
        loss, d = toolkit.mse_loss(lin(x), y)
        first = first if first is not None else loss
        lin.zero_grad()
        lin.backward(d)
        opt.step(lin.grads)
    assert loss < 1e-3 * first
    np.testing.assert_allclose(lin.params["weight"], true_w, atol=0.02)


# ---------------------------------------------------------------- sampling ---

def test_sampling_is_seeded_and_follows_the_temperature():
    logits = np.log(np.array([0.5, 0.3, 0.2]))
    a = [toolkit.sample_index(logits, 1.0, np.random.default_rng(3)) for _ in range(5)]
    rng1, rng2 = np.random.default_rng(7), np.random.default_rng(7)
    s1 = [toolkit.sample_index(logits, 0.8, rng1) for _ in range(50)]
    s2 = [toolkit.sample_index(logits, 0.8, rng2) for _ in range(50)]
    assert s1 == s2 and len(set(a)) == 1
    rng = np.random.default_rng(0)
    counts = np.bincount([toolkit.sample_index(logits, 1.0, rng) for _ in range(20000)], None, 3)
    np.testing.assert_allclose(counts / 20000, [0.5, 0.3, 0.2], atol=0.015)
    cold = [toolkit.sample_index(logits, 0.01, rng) for _ in range(200)]
    assert set(cold) == {0}
    batch = toolkit.sample_index(np.tile(logits, (4, 1)), 1.0, np.random.default_rng(1))
    assert batch.shape == (4,) and set(batch) <= {0, 1, 2}
    with pytest.raises(ValueError):
        toolkit.sample_index(logits, 0.0)
    np.testing.assert_allclose(toolkit.softmax(logits), [0.5, 0.3, 0.2])


# ------------------------------------------------------------------- TBPTT ---

def test_stream_chunks_cover_the_streams_in_order():
    ids = np.arange(23)
    gen = toolkit.stream_chunks(ids, batch_size=2, seq_len=4)
    seen = []
    for _ in range(3):
        x, y, first = next(gen)
        np.testing.assert_array_equal(y, x + 1)
        seen.append((x.copy(), first))
    assert [f for _, f in seen] == [True, False, False]
    # 22 usable positions -> 2 streams of 11: [0..10], [11..21], chunks of 4, 4, 3
    np.testing.assert_array_equal(np.concatenate([x for x, _ in seen])[:, 0], np.arange(11))
    np.testing.assert_array_equal(np.concatenate([x for x, _ in seen])[:, 1],
                                  np.arange(11, 22))
    x, _, first = next(gen)                                     # a new pass starts
    assert first and x[0, 0] == 0
    with pytest.raises(ValueError):
        next(toolkit.stream_chunks(np.arange(2), 2, 4))


def test_stateful_training_carries_state(rng):
    """Carrying the state across chunks equals running the whole sequence at once."""
    m = toolkit.SequenceModel("gru", 3, 5, vocab_size=4, dtype=np.float64, seed=0).eval()
    x = rng.integers(0, 4, (12, 2))
    whole, _ = m(x)
    a, st = m(x[:5])
    b, _ = m(x[5:], st)
    np.testing.assert_allclose(np.concatenate([a, b]), whole, rtol=1e-12)


# -------------------------------------------------------------- train loop ---

def test_train_loop_stops_after_steps_or_minutes():
    calls = []

    def step(i):
        calls.append(i)
        return 1.0 / (i + 1), 10

    log = toolkit.train_loop(step, steps=5, progress=False)
    assert calls == [0, 1, 2, 3, 4] and log.steps == 5 and log.items == 50
    assert log.losses[-1] == pytest.approx(0.2)
    calls.clear()
    log = toolkit.train_loop(step, minutes=1e-9, progress=False)     # time is up at once
    assert log.steps == 1 and calls == [0]                           # the first step runs
    with pytest.raises(ValueError):
        toolkit.train_loop(step)


def test_train_loop_stops_cleanly_on_ctrl_c():
    def step(i):
        if i == 3:
            raise KeyboardInterrupt
        return 1.0, 1

    log = toolkit.train_loop(step, steps=10, progress=False)
    assert log.interrupted and log.steps == 3


def test_progress_enabled(monkeypatch):
    assert toolkit.progress_enabled(True) and not toolkit.progress_enabled(False)
    monkeypatch.setenv("FASTLSTM_PROGRESS", "0")
    assert not toolkit.progress_enabled()
    monkeypatch.setenv("FASTLSTM_PROGRESS", "1")
    assert toolkit.progress_enabled()


def test_train_loop_progress_bar_shows_loss_and_speed(capsys):
    def step(i):
        time.sleep(0.15)  # longer than tqdm's refresh interval, so the bar is redrawn
        return 0.5, 100

    toolkit.train_loop(step, steps=3, progress=True, desc="demo-bar")
    err = capsys.readouterr().err
    assert "demo-bar" in err and "loss" in err and "chars/s" in err


# ------------------------------------------------------------- checkpoints ---

def _model():
    return toolkit.SequenceModel("gru", 5, 6, 2, vocab_size=5, embed_dim=3, seed=2)


def test_checkpoint_round_trip(tmp_path):
    m = _model()
    path = tmp_path / "m.npz"
    toolkit.save_checkpoint(path, m, {"kind": "test", "vocab": "abcde", "n": 3})
    m2, meta = toolkit.load_checkpoint(path, kind="test")
    assert meta == {"kind": "test", "vocab": "abcde", "n": 3}
    assert m2.config() == m.config() and not m2.training
    for k, v in m.parameters().items():
        np.testing.assert_array_equal(m2.parameters()[k], v)
    with zipfile.ZipFile(path) as z:                 # plain arrays, nothing pickled
        assert all(n.endswith(".npy") for n in z.namelist())
    with pytest.raises(toolkit.CheckpointError, match="expected 'other'"):
        toolkit.load_checkpoint(path, kind="other")


def test_bad_checkpoints_are_rejected(tmp_path):
    good = tmp_path / "good.npz"
    toolkit.save_checkpoint(good, _model(), {"kind": "test"})
    raw = good.read_bytes()
    cases = {
        "text.npz": b"not a checkpoint at all",
        "truncated.npz": raw[: len(raw) // 2],
        "empty.npz": b"",
    }
    # flip bytes inside the stored arrays: the zip CRC check catches it
    corrupted = bytearray(raw)
    for i in range(len(raw) // 2, len(raw) // 2 + 64):
        corrupted[i] ^= 0xFF
    cases["corrupted.npz"] = bytes(corrupted)
    for name, data in cases.items():
        (tmp_path / name).write_bytes(data)
    np.savez(tmp_path / "foreign.npz", weights=np.zeros(3))
    np.savez(tmp_path / "pickled.npz", **{"__fastlstm_checkpoint__": np.array([{"a": 1}],
                                                                            dtype=object)})
    fastlstm.save(tmp_path / "module.npz", fastlstm.GRU(3, 4))
    m = _model()
    p = m.parameters()
    p = {k: v for k, v in p.items() if k != "head.bias"}
    np.savez(tmp_path / "missing.npz", __fastlstm_checkpoint__=np.array(
        '{"format": "fastlstm-checkpoint-v1", "meta": {}, "model": %s}'
        % str(m.config()).replace("'", '"')), **p)
    np.savez(tmp_path / "huge.npz", __fastlstm_checkpoint__=np.array(
        '{"format": "fastlstm-checkpoint-v1", "meta": {}, "model": {"cell": "lstm", '
        '"output_size": 5, "hidden_size": 1000000000, "num_layers": 1, "dtype": "float32", '
        '"vocab_size": 5, "embed_dim": 3}}'))
    for f in ["text.npz", "truncated.npz", "empty.npz", "corrupted.npz", "foreign.npz",
              "pickled.npz", "module.npz", "missing.npz", "huge.npz"]:
        with pytest.raises(toolkit.CheckpointError) as e:
            toolkit.load_checkpoint(tmp_path / f)
        assert "\n" not in str(e.value) and f in str(e.value)
    with pytest.raises(OSError):
        toolkit.load_checkpoint(tmp_path / "absent.npz")


def test_save_checkpoint_failure_leaves_the_old_file(tmp_path, monkeypatch):
    path = tmp_path / "m.npz"
    path.write_bytes(b"old")

    def boom(*a, **k):
        raise OSError("disk full")

    monkeypatch.setattr(np, "savez", boom)
    with pytest.raises(OSError):
        toolkit.save_checkpoint(path, _model(), {})
    assert path.read_bytes() == b"old"
    assert sorted(os.listdir(tmp_path)) == ["m.npz"]
