"""Checkpoints: a model's whole training state in one .npz file, written atomically.

A save goes to a temp file in the same directory, is fsynced, then renamed over the target, so a
crash or Ctrl-C never leaves a corrupt or missing last checkpoint. Loading checks every array
before touching the model, so a failed load leaves the model as it was."""

from __future__ import annotations

import json
import os
import tempfile
import warnings
import zipfile

import numpy as np

FORMAT = "cnnc-checkpoint"
FORMAT_VERSION = 1
_META = "cnnc_meta"


class CheckpointError(Exception):
    """A file is missing, unreadable, or not a cnnc checkpoint."""


class CheckpointMismatch(CheckpointError):
    """A checkpoint's arrays do not fit the model; `problems` holds one line per bad array."""

    def __init__(self, message: str, problems: list[str]):
        super().__init__(message)
        self.problems = problems


def _json_default(obj):
    if isinstance(obj, np.generic):
        return obj.item()
    if isinstance(obj, np.ndarray):
        return obj.tolist()
    raise TypeError(f"checkpoint `extra` must be JSON-able; got {type(obj).__name__}: {obj!r}")


def _shape_str(shape) -> str:
    return f"f32[{', '.join(str(d) for d in shape)}]"


def save(path, model, extra=None) -> str:
    """Write params, optimizer state, step, lr, rng state, fingerprint and `extra` to `path` atomically."""
    path = os.fspath(path)
    params, opt = dict(model.params), dict(model.optimizer_state)
    meta = {
        "format": FORMAT, "version": FORMAT_VERSION, "model": model.name,
        "fingerprint": model.fingerprint, "step": int(model.step), "lr": float(model.lr),
        "params": list(params), "optimizer_state": list(opt), "extra": extra,
    }
    meta_bytes = json.dumps(meta, default=_json_default).encode()  # fails before any file is touched
    # Arrays get index keys; their scoped names live in the metadata, so any name is safe.
    arrays = {f"param_{i}": np.asarray(v) for i, v in enumerate(params.values())}
    arrays.update({f"opt_{i}": np.asarray(v) for i, v in enumerate(opt.values())})
    arrays["rng_state"] = np.asarray(getattr(model, "rng_state", np.zeros(0, np.uint64)))
    arrays[_META] = np.frombuffer(meta_bytes, dtype=np.uint8)

    directory = os.path.dirname(os.path.abspath(path))
    os.makedirs(directory, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{os.path.basename(path)}.", suffix=".tmp", dir=directory)
    try:
        with os.fdopen(fd, "wb") as f:
            np.savez(f, **arrays)
            f.flush()
            os.fsync(f.fileno())
        os.chmod(tmp, os.stat(path).st_mode & 0o777 if os.path.exists(path) else 0o644)
        os.replace(tmp, path)
    except BaseException:  # includes KeyboardInterrupt: never leave the temp file behind
        try:
            os.unlink(tmp)
        except FileNotFoundError:
            pass
        raise
    _fsync_dir(directory)
    return path


def _fsync_dir(directory: str) -> None:
    """Make the rename itself durable (POSIX); a no-op where directories cannot be opened."""
    try:
        fd = os.open(directory, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


def read(path) -> tuple[dict, dict, dict, np.ndarray]:
    """Read a checkpoint fully: (metadata, params, optimizer_state, rng_state); CheckpointError if bad."""
    path = os.fspath(path)
    if not os.path.exists(path):
        raise CheckpointError(f"checkpoint {path} does not exist")
    try:
        with np.load(path, allow_pickle=False) as npz:
            if _META not in npz.files:
                raise CheckpointError(f"{path} is not a cnnc checkpoint (no `{_META}` entry)")
            meta = json.loads(npz[_META].tobytes().decode())
            if not isinstance(meta, dict) or meta.get("format") != FORMAT:
                raise CheckpointError(f"{path} is not a cnnc checkpoint (format {meta.get('format')!r})")
            if meta.get("version", 0) > FORMAT_VERSION:
                raise CheckpointError(f"{path} is checkpoint format {meta['version']}, newer than this "
                                      f"cnnc reads ({FORMAT_VERSION}); upgrade cnnc")
            params = {n: npz[f"param_{i}"] for i, n in enumerate(meta["params"])}
            opt = {n: npz[f"opt_{i}"] for i, n in enumerate(meta["optimizer_state"])}
            rng_state = npz["rng_state"]
    except CheckpointError:
        raise
    except AttributeError as e:  # np.load gave a plain .npy array, not an archive
        raise CheckpointError(f"{path} is not a cnnc checkpoint (not an .npz archive)") from e
    except (zipfile.BadZipFile, EOFError, OSError, ValueError, KeyError, TypeError) as e:
        raise CheckpointError(f"{path} is not a readable cnnc checkpoint (truncated or corrupt?): "
                              f"{type(e).__name__}: {e}") from e
    return meta, params, opt, rng_state


def read_extra(path) -> dict:
    """The `extra` dict stored in a checkpoint, without a model (e.g. to find the epoch to resume)."""
    return read(path)[0].get("extra") or {}


def _compare(kind: str, saved: dict, current: dict) -> tuple[list[str], list[str]]:
    """Problem lines and the names that can be copied, comparing saved arrays with the model's."""
    problems, ok = [], []
    for name, arr in current.items():
        if name not in saved:
            problems.append(f"{kind}{name}: missing from checkpoint (model {_shape_str(arr.shape)})")
        elif saved[name].shape != arr.shape:
            problems.append(f"{kind}{name}: checkpoint {_shape_str(saved[name].shape)}, "
                            f"model {_shape_str(arr.shape)}")
        else:
            ok.append(name)
    for name, arr in saved.items():
        if name not in current:
            problems.append(f"{kind}{name}: unexpected in checkpoint (checkpoint "
                            f"{_shape_str(arr.shape)}), not in model")
    return problems, ok


def load(path, model, strict: bool = True) -> dict:
    """Restore a checkpoint into `model` in place and return its `extra` dict.

    strict: any missing, unexpected or reshaped param or optimizer array raises CheckpointMismatch
    listing all of them; otherwise the arrays that fit are loaded and the rest reported in a warning."""
    path = os.fspath(path)
    meta, params, opt, rng_state = read(path)
    p_problems, p_ok = _compare("", params, model.params)
    o_problems, o_ok = _compare("optimizer state ", opt, model.optimizer_state)
    problems = p_problems + o_problems
    fp_note = None
    if meta.get("fingerprint") != model.fingerprint:
        fp_note = (f"note: the checkpoint was written for a different spec (model "
                   f"`{meta.get('model')}`, fingerprint {meta.get('fingerprint')}; this model is "
                   f"`{model.name}`, fingerprint {model.fingerprint})")
    if problems:
        message = (f"checkpoint {path} does not fit model `{model.name}` ({len(problems)} "
                   f"problem{'s' if len(problems) != 1 else ''}):\n  " + "\n  ".join(problems)
                   + (f"\n{fp_note}" if fp_note else ""))
        if strict:
            raise CheckpointMismatch(message, problems)
        warnings.warn(message + "\nloaded only the arrays that fit (strict=False)", stacklevel=2)
    elif fp_note:
        warnings.warn(f"checkpoint {path}: {fp_note}; all array names and shapes match, loading it",
                      stacklevel=2)
    for name in p_ok:
        model.params[name][...] = params[name]
    for name in o_ok:
        model.optimizer_state[name][...] = opt[name]
    model.step = int(meta["step"])
    model.lr = float(meta["lr"])
    if hasattr(model, "rng_state"):
        model.rng_state = rng_state.astype(np.uint64, copy=True)
    return meta.get("extra") or {}
