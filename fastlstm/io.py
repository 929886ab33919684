"""Save and load fastlstm.nn modules as ``.npz`` files, without pickle.

A file holds every parameter array under its torch name plus one entry,
``__fastlstm_config__``: a 0-d unicode array with a JSON object

    {"format": "fastlstm-module-v1", "class": "LSTM", "dtype": "float32",
     "args": {"input_size": ..., "hidden_size": ..., ...}}

``load`` reads it with ``numpy.load(allow_pickle=False)``, checks the tag, the
configuration, the keys, the dtypes and the shapes, and raises ValueError
naming the problem for a corrupted, truncated or foreign file.
"""

import json
import os
import uuid
import zipfile

import numpy as np

from . import _checks, nn

__all__ = ["save", "load", "FORMAT", "CONFIG_KEY"]

#: the format tag written into (and required from) every file
FORMAT = "fastlstm-module-v1"
#: the npz entry holding the JSON configuration
CONFIG_KEY = "__fastlstm_config__"

_CLASSES = {cls.__name__: cls for cls in (nn.LSTM, nn.GRU, nn.RNN, nn.LSTMCell, nn.GRUCell,
                                          nn.RNNCell)}


def save(path, module):
    """Write `module` (an LSTM, GRU, RNN, LSTMCell, GRUCell or RNNCell) to `path` as npz.

    The file is written exactly at `path` (no ".npz" is appended): first to a
    temporary file in the same directory, then moved into place, so an error
    never leaves a half-written file. Only the parameters and the constructor
    configuration are saved (not gradients, caches or the random state).
    """
    if type(module) not in _CLASSES.values():
        raise TypeError("module: expected a fastlstm LSTM, GRU, RNN, LSTMCell, GRUCell or "
                        f"RNNCell, got {type(module).__module__}.{type(module).__qualname__}")
    config = {"format": FORMAT, "class": type(module).__name__,
              "dtype": module.dtype.name, "args": module._config()}
    arrays = {CONFIG_KEY: np.array(json.dumps(config, sort_keys=True))}
    arrays.update(module._params)
    atomic_savez(path, arrays)


def atomic_savez(path, arrays):
    """np.savez `arrays` to exactly `path`, atomically: written to a fresh file
    next to it, then renamed over it, so a failure never leaves a partial file
    or clobbers an old one."""
    path = os.path.abspath(os.fspath(path))
    # a fresh name next to the target ("x": never reuse a file), created with the
    # usual umask-based permissions, then atomically renamed over the target
    tmp = os.path.join(os.path.dirname(path),
                       f".{os.path.basename(path)}.{uuid.uuid4().hex}.tmp")
    try:
        with open(tmp, "xb") as f:
            np.savez(f, **arrays)
        os.replace(tmp, path)
    except BaseException:
        try:
            os.unlink(tmp)
        except OSError:
            pass
        raise

def _bad(path, why):
    return ValueError(f"{os.fspath(path)!s}: not a valid fastlstm module file: {why}")


def _read(path):
    """-> dict name -> array of every entry of the npz at path (errors as ValueError)."""
    with open(path, "rb") as f:  # a missing or unreadable file raises OSError as usual
        try:
            data = np.load(f, allow_pickle=False)
        except ValueError as e:
            raise _bad(path, f"not an npz archive ({e})") from None
        except (OSError, EOFError, zipfile.BadZipFile) as e:
            raise _bad(path, f"unreadable or truncated ({type(e).__name__}: {e})") from None
        if not isinstance(data, np.lib.npyio.NpzFile):
            raise _bad(path, "a single .npy array, not an npz archive")
        with data:
            out = {}
            for k in data.files:
                try:
                    out[k] = data[k]
                except ValueError as e:  # object arrays need pickle
                    raise _bad(path, f"entry {k!r} cannot be read without pickle or is "
                                     f"malformed ({e})") from None
                except Exception as e:  # CRC errors, truncated members, bad headers
                    raise _bad(path, f"entry {k!r} is corrupted "
                                     f"({type(e).__name__}: {e})") from None
            return out


def _config(path, arrays):
    if CONFIG_KEY not in arrays:
        raise _bad(path, f"no {CONFIG_KEY!r} entry (a foreign npz file?)")
    raw = arrays.pop(CONFIG_KEY)
    if raw.shape != () or raw.dtype.kind != "U":
        raise _bad(path, f"{CONFIG_KEY!r} must be a 0-d unicode string array, got dtype "
                         f"{raw.dtype} and shape {raw.shape}")
    try:
        config = json.loads(str(raw))
    except ValueError as e:
        raise _bad(path, f"{CONFIG_KEY!r} is not valid JSON ({e})") from None
    if not isinstance(config, dict):
        raise _bad(path, f"{CONFIG_KEY!r} must be a JSON object")
    if config.get("format") != FORMAT:
        raise _bad(path, f"format tag {config.get('format')!r}, expected {FORMAT!r}")
    if config.get("class") not in _CLASSES:
        raise _bad(path, f"unknown module class {config.get('class')!r}, expected one of "
                         f"{', '.join(_CLASSES)}")
    if config.get("dtype") not in ("float32", "float64"):
        raise _bad(path, f"dtype {config.get('dtype')!r}, expected 'float32' or 'float64'")
    if not isinstance(config.get("args"), dict):
        raise _bad(path, "'args' must be a JSON object of constructor arguments")
    return config


def load(path):
    """Read a module written by ``save``; returns it in eval mode.

    Never unpickles. Raises ValueError (naming the problem) when the file is
    not an npz archive, is truncated or corrupted, lacks the fastlstm format
    tag, or its configuration, parameter names, dtypes or shapes are wrong;
    OSError when it cannot be opened.
    """
    arrays = _read(path)
    config = _config(path, arrays)
    cls = _CLASSES[config["class"]]
    try:
        module = cls(**config["args"], dtype=np.dtype(config["dtype"]))
    except (TypeError, ValueError) as e:
        raise _bad(path, f"invalid {config['class']} configuration {config['args']!r} "
                         f"({e})") from None
    expected = module._params
    mismatch = _checks.key_mismatch(expected, arrays, "missing parameters",
                                    "unexpected entries")
    if mismatch:
        raise _bad(path, mismatch)
    for k, target in expected.items():
        v = arrays[k]
        if v.dtype != module.dtype:
            raise _bad(path, f"parameter {k!r} has dtype {v.dtype}, expected {module.dtype}")
        if v.shape != target.shape:
            raise _bad(path, f"parameter {k!r} has shape {v.shape}, expected {target.shape}")
    module.load_state_dict(arrays)
    return module.eval()
