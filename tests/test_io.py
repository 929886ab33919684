"""fastlstm.save / fastlstm.load: round trips, and corrupted or foreign files rejected."""

import json
import os
import zipfile

import numpy as np
import pytest

import fastlstm
from fastlstm import io as flio
from fastlstm.nn import GRU, LSTM, RNN, GRUCell, LSTMCell, RNNCell

MODULES = [
    lambda: LSTM(3, 4, num_layers=2, bidirectional=True, seed=0),
    lambda: LSTM(3, 4, num_layers=2, bias=False, batch_first=True, dropout=0.25,
                 dtype=np.float64, seed=1),
    lambda: GRU(3, 5, num_layers=2, bidirectional=True, seed=2),
    lambda: RNN(2, 4, 3, "relu", bidirectional=True, dtype=np.float64, seed=3),
    lambda: LSTMCell(3, 4, seed=4),
    lambda: GRUCell(3, 4, bias=False, dtype=np.float64, seed=5),
    lambda: RNNCell(3, 4, nonlinearity="relu", seed=6),
]


def _input(m):
    rng = np.random.default_rng(0)
    shape = (2, m.input_size) if hasattr(m, "clear_cache") else (5, 2, m.input_size)
    return rng.standard_normal(shape).astype(m.dtype)


def _saved(tmp_path, name="m.npz"):
    path = tmp_path / name
    fastlstm.save(path, LSTM(3, 4, num_layers=2, bidirectional=True, seed=0))
    return path


@pytest.mark.parametrize("make", MODULES, ids=["lstm-bi2", "lstm-f64-bf-nobias", "gru-bi2",
                                               "rnn-relu3", "lstmcell", "grucell", "rnncell"])
def test_round_trip(tmp_path, make):
    m = make()
    path = tmp_path / "model.npz"
    fastlstm.save(str(path), m)
    assert sorted(os.listdir(tmp_path)) == ["model.npz"]  # no temporary left behind
    m2 = fastlstm.load(path)
    assert type(m2) is type(m) and not m2.training
    assert m2._config() == m._config() and m2.dtype == m.dtype and repr(m2) == repr(m)
    assert list(m2.state_dict()) == list(m.state_dict())
    for k, v in m.state_dict().items():
        assert m2.parameters()[k].dtype == v.dtype
        np.testing.assert_array_equal(m2.parameters()[k], v)
    x = _input(m)
    m.eval()
    a, b = m(x), m2(x)
    np.testing.assert_array_equal(np.asarray(a[0]), np.asarray(b[0]))


def test_save_overwrites_and_writes_exact_path(tmp_path):
    path = tmp_path / "model.bin"
    fastlstm.save(path, GRU(3, 4, seed=0))
    m = GRU(3, 4, seed=1)
    fastlstm.save(path, m)
    assert sorted(os.listdir(tmp_path)) == ["model.bin"]
    np.testing.assert_array_equal(fastlstm.load(path).parameters()["weight_hh_l0"],
                                  m.parameters()["weight_hh_l0"])


def test_save_failure_leaves_no_file(tmp_path):
    with pytest.raises(TypeError, match="module: expected a fastlstm LSTM"):
        fastlstm.save(tmp_path / "x.npz", object())
    with pytest.raises(OSError):
        fastlstm.save(tmp_path / "missing-dir" / "x.npz", GRU(3, 4))
    assert os.listdir(tmp_path) == []


def test_failed_write_keeps_the_old_file(tmp_path, monkeypatch):
    path = tmp_path / "model.npz"
    old = GRU(3, 4, seed=0)
    fastlstm.save(path, old)

    def broken_savez(f, **arrays):
        f.write(b"PK\x03\x04 half an archive")
        raise OSError("disk full")

    monkeypatch.setattr(flio.np, "savez", broken_savez)
    with pytest.raises(OSError, match="disk full"):
        fastlstm.save(path, GRU(3, 4, seed=1))
    monkeypatch.undo()
    assert os.listdir(tmp_path) == ["model.npz"]
    np.testing.assert_array_equal(fastlstm.load(path).parameters()["weight_ih_l0"],
                                  old.parameters()["weight_ih_l0"])


def test_file_layout_is_plain_npz(tmp_path):
    path = _saved(tmp_path)
    with np.load(path, allow_pickle=False) as f:
        config = json.loads(str(f[flio.CONFIG_KEY]))
        assert f[flio.CONFIG_KEY].dtype.kind == "U"
        assert f["weight_ih_l1_reverse"].shape == (16, 8)
    assert config == {"format": "fastlstm-module-v1", "class": "LSTM", "dtype": "float32",
                      "args": {"input_size": 3, "hidden_size": 4, "num_layers": 2,
                               "bias": True, "batch_first": False, "dropout": 0.0,
                               "bidirectional": True}}


def test_missing_file_is_oserror(tmp_path):
    with pytest.raises(FileNotFoundError):
        fastlstm.load(tmp_path / "nope.npz")


@pytest.mark.parametrize("keep", [0, 10, 100, 0.5, -10])
def test_truncated_file_rejected(tmp_path, keep):
    path = _saved(tmp_path)
    data = path.read_bytes()
    n = int(len(data) * keep) if isinstance(keep, float) else keep % len(data)
    path.write_bytes(data[:n])
    with pytest.raises(ValueError, match="not a valid fastlstm module file"):
        fastlstm.load(path)


def test_garbage_and_flipped_bytes_rejected(tmp_path):
    path = tmp_path / "junk.npz"
    path.write_bytes(np.random.default_rng(0).bytes(2000))
    with pytest.raises(ValueError, match="not a valid fastlstm module file"):
        fastlstm.load(path)
    path = _saved(tmp_path)
    data = bytearray(path.read_bytes())
    with zipfile.ZipFile(path) as z:  # corrupt the payload of one member
        info = z.getinfo("weight_hh_l0.npy")
    pos = info.header_offset + 30 + len(info.filename) + 200
    data[pos] ^= 0xFF
    path.write_bytes(bytes(data))
    with pytest.raises(ValueError, match="weight_hh_l0.*corrupted"):
        fastlstm.load(path)


def test_foreign_files_rejected(tmp_path):
    path = tmp_path / "foreign.npz"
    np.savez(path, a=np.zeros(3))
    with pytest.raises(ValueError, match="no '__fastlstm_config__' entry"):
        fastlstm.load(path)
    npy = tmp_path / "single.npy"
    np.save(npy, np.zeros(3))
    with pytest.raises(ValueError, match="not an npz archive"):
        fastlstm.load(npy)
    torch = pytest.importorskip("torch")
    pt = tmp_path / "model.pt"
    torch.save(torch.nn.LSTM(3, 4).state_dict(), pt)  # a zip of pickles
    with pytest.raises(ValueError, match="not a valid fastlstm module file"):
        fastlstm.load(pt)


def _rewrite(path, **changes):
    """Re-save the npz at path with some entries replaced (None deletes)."""
    with np.load(path, allow_pickle=False) as f:
        arrays = {k: f[k] for k in f.files}
    for k, v in changes.items():
        if v is None:
            del arrays[k]
        else:
            arrays[k] = v
    with open(path, "wb") as fh:
        np.savez(fh, **arrays)


def _config_of(path):
    with np.load(path, allow_pickle=False) as f:
        return json.loads(str(f[flio.CONFIG_KEY]))


def test_pickle_needing_entries_rejected(tmp_path):
    path = _saved(tmp_path)
    obj = np.empty(2, dtype=object)
    obj[:] = [{"a": 1}, None]
    _rewrite(path, weight_ih_l0=obj)
    with pytest.raises(ValueError, match="'weight_ih_l0' cannot be read without pickle"):
        fastlstm.load(path)
    path = _saved(tmp_path, "cfg.npz")
    cfg = np.empty((), dtype=object)
    cfg[()] = _config_of(path)
    _rewrite(path, **{flio.CONFIG_KEY: cfg})
    with pytest.raises(ValueError, match="cannot be read without pickle"):
        fastlstm.load(path)


@pytest.mark.parametrize("mutate, match", [
    (lambda c: c.update(format="fastlstm-module-v0"), "format tag 'fastlstm-module-v0'"),
    (lambda c: c.pop("format"), "format tag None"),
    (lambda c: c.update({"class": "Transformer"}), "unknown module class 'Transformer'"),
    (lambda c: c.update(dtype="int8"), "dtype 'int8'"),
    (lambda c: c.update(args=[3, 4]), "'args' must be a JSON object"),
    (lambda c: c["args"].update(hidden_size=-1), "invalid LSTM configuration"),
    (lambda c: c["args"].update(colour="blue"), "invalid LSTM configuration"),
    (lambda c: c["args"].update(hidden_size=5), "'weight_ih_l0' has shape"),
    (lambda c: c["args"].update(num_layers=3), "missing parameters weight_ih_l2"),
    (lambda c: c["args"].update(bias=False), "unexpected entries bias_ih_l0"),
    (lambda c: c.update(dtype="float64"), "'weight_ih_l0' has dtype float32, expected float64"),
])
def test_bad_config_rejected(tmp_path, mutate, match):
    path = _saved(tmp_path)
    cfg = _config_of(path)
    mutate(cfg)
    _rewrite(path, **{flio.CONFIG_KEY: np.array(json.dumps(cfg))})
    with pytest.raises(ValueError, match=match):
        fastlstm.load(path)


@pytest.mark.parametrize("value, match", [
    (np.array("{not json"), "not valid JSON"),
    (np.array("[1, 2]"), "must be a JSON object"),
    (np.array(["{}", "{}"]), "0-d unicode string array"),
    (np.zeros(3), "0-d unicode string array"),
])
def test_bad_config_entry_rejected(tmp_path, value, match):
    path = _saved(tmp_path)
    _rewrite(path, **{flio.CONFIG_KEY: value})
    with pytest.raises(ValueError, match=match):
        fastlstm.load(path)


def test_bad_parameter_entries_rejected(tmp_path):
    path = _saved(tmp_path)
    _rewrite(path, bias_hh_l1=None)
    with pytest.raises(ValueError, match="missing parameters bias_hh_l1"):
        fastlstm.load(path)
    path = _saved(tmp_path, "b.npz")
    _rewrite(path, bias_hh_l1=np.zeros(15, np.float32))
    with pytest.raises(ValueError, match=r"'bias_hh_l1' has shape \(15,\), expected \(16,\)"):
        fastlstm.load(path)
    path = _saved(tmp_path, "c.npz")
    _rewrite(path, extra=np.zeros(1))
    with pytest.raises(ValueError, match="unexpected entries extra"):
        fastlstm.load(path)
