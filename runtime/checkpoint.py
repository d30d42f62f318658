"""Checkpoints: a model's whole training state in one .npz file, written atomically.

A save goes to a temp file in the same directory, is fsynced, then renamed over the target, so a
crash or Ctrl-C never leaves a corrupt or missing last checkpoint. Loading checks every array
before touching the model, so a failed load leaves the model as it was."""

from __future__ import annotations

import contextlib
import json
import math
import os
import re
import time
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
    """Write params, state, optimizer state, step, lr, rng state, fingerprint and `extra` to `path` atomically."""
    path = os.fspath(path)
    params, opt = dict(model.params), dict(model.optimizer_state)
    state = dict(getattr(model, "state", {}))
    meta = {
        "format": FORMAT, "version": FORMAT_VERSION, "model": model.name,
        "fingerprint": model.fingerprint, "step": int(model.step), "lr": float(model.lr),
        "params": list(params), "optimizer_state": list(opt), "extra": extra,
    }
    if state:               # a model without state writes what earlier versions wrote
        meta["state"] = list(state)
    meta_bytes = json.dumps(meta, default=_json_default).encode()  # fails before any file is touched
    # Arrays get index keys; their scoped names live in the metadata, so any name is safe.
    arrays = {f"param_{i}": np.asarray(v) for i, v in enumerate(params.values())}
    arrays.update({f"opt_{i}": np.asarray(v) for i, v in enumerate(opt.values())})
    arrays.update({f"state_{i}": np.asarray(v) for i, v in enumerate(state.values())})
    arrays["rng_state"] = np.asarray(getattr(model, "rng_state", np.zeros(0, np.uint64)))
    arrays[_META] = np.frombuffer(meta_bytes, dtype=np.uint8)

    directory = os.path.dirname(os.path.abspath(path))
    os.makedirs(directory, exist_ok=True)
    _sweep(directory, os.path.basename(path))
    fd, tmp = tempfile.mkstemp(prefix=f".{os.path.basename(path)}.{os.getpid()}.", suffix=".tmp",
                               dir=directory)
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


STALE_SECONDS = 3600     # a temp file without a live writer's pid is left alone this long


def _sweep(directory: str, base: str) -> None:
    """Delete temp files that killed saves of `base` left behind: those whose writer (the pid in
    the name) is gone, or, for names without one, older than STALE_SECONDS."""
    pattern = re.compile(re.escape(f".{base}.") + r"(?:(\d+)\.)?[^/]*\.tmp")
    try:
        names = os.listdir(directory)
    except OSError:
        return
    for name in names:
        m = pattern.fullmatch(name)
        if not m:
            continue
        full = os.path.join(directory, name)
        try:
            if m.group(1) is not None:
                if _alive(int(m.group(1))):
                    continue
            elif time.time() - os.path.getmtime(full) < STALE_SECONDS:
                continue
            os.unlink(full)
        except OSError:
            pass


def _alive(pid: int) -> bool:
    if pid == os.getpid():
        return True
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except (PermissionError, OverflowError, ValueError):
        return True
    return True


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


MAX_META_BYTES = 64 << 20          # the JSON header: names, extra (history, callbacks)
MAX_ARRAY_VALUES = 1 << 32         # one array; a header claiming more is refused before allocating


def _header(zf: zipfile.ZipFile, member: str, path: str):
    """(shape, dtype) of one stored .npy array, read from its header alone (nothing allocated)."""
    try:
        with zf.open(member + ".npy") as f:
            version = np.lib.format.read_magic(f)
            if version == (1, 0):
                shape, fortran, dtype = np.lib.format.read_array_header_1_0(f)
            elif version in ((2, 0), (3, 0)):
                shape, fortran, dtype = np.lib.format.read_array_header_2_0(f)
            else:
                raise ValueError(f"unsupported .npy version {version}")
    except KeyError:
        raise CheckpointError(f"checkpoint {path}: entry `{member}` is missing") from None
    if dtype.hasobject:
        raise CheckpointError(f"checkpoint {path}: entry `{member}` holds Python objects "
                              "(cnnc never loads pickled data)")
    return tuple(int(d) for d in shape), dtype


def _array(zf: zipfile.ZipFile, member: str, path: str) -> np.ndarray:
    with zf.open(member + ".npy") as f:
        return np.lib.format.read_array(f, allow_pickle=False)


def _check_meta(meta, path: str) -> dict:
    """Every field of the metadata, with its type, or CheckpointError naming the first bad one."""
    if not isinstance(meta, dict) or meta.get("format") != FORMAT:
        got = meta.get("format") if isinstance(meta, dict) else type(meta).__name__
        raise CheckpointError(f"{path} is not a cnnc checkpoint (format {got!r})")
    version = meta.get("version", 0)
    if not _is_int(version) or version < 1:
        raise CheckpointError(f"checkpoint {path}: field `version` must be a whole number >= 1, got {version!r}")
    if version > FORMAT_VERSION:
        raise CheckpointError(f"{path} is checkpoint format {version}, newer than this "
                              f"cnnc reads ({FORMAT_VERSION}); upgrade cnnc")

    def need(field, ok, want):
        if field not in meta:
            raise CheckpointError(f"checkpoint {path}: field `{field}` is missing")
        if not ok(meta[field]):
            raise CheckpointError(f"checkpoint {path}: field `{field}` must be {want}, got {meta[field]!r:.80}")

    names = lambda v: isinstance(v, list) and all(isinstance(x, str) for x in v) and len(set(v)) == len(v)
    need("model", lambda v: isinstance(v, str), "a string")
    need("fingerprint", lambda v: isinstance(v, str), "a string")
    need("step", lambda v: _is_int(v) and v >= 0, "a whole number >= 0")
    need("lr", lambda v: isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v) and v >= 0,
         "a finite number >= 0")
    need("params", names, "a list of distinct names")
    need("optimizer_state", names, "a list of distinct names")
    need("extra", lambda v: v is None or isinstance(v, dict), "an object or null")
    meta.setdefault("state", [])          # written only by models with state (and not before it existed)
    need("state", names, "a list of distinct names")
    return meta


def _is_int(v) -> bool:
    return isinstance(v, int) and not isinstance(v, bool)


class _Archive:
    """An open checkpoint: validated metadata and the shape and dtype of every array, before
    any array is read."""

    def __init__(self, path: str):
        self.path = path
        if not os.path.exists(path):
            raise CheckpointError(f"checkpoint {path} does not exist")
        try:
            self.zf = zipfile.ZipFile(path)
        except (zipfile.BadZipFile, OSError, EOFError) as e:
            if path.endswith(".npy") or _is_npy(path):
                raise CheckpointError(f"{path} is not a cnnc checkpoint (not an .npz archive)") from e
            raise CheckpointError(f"{path} is not a readable cnnc checkpoint (truncated or corrupt?): "
                                  f"{type(e).__name__}: {e}") from e
        try:
            self._read_headers()
        except CheckpointError:
            self.zf.close()
            raise
        except (zipfile.BadZipFile, EOFError, OSError, ValueError, KeyError, TypeError,
                UnicodeDecodeError) as e:
            self.zf.close()
            raise CheckpointError(f"{path} is not a readable cnnc checkpoint (truncated or corrupt?): "
                                  f"{type(e).__name__}: {e}") from e

    def _read_headers(self) -> None:
        path, zf = self.path, self.zf
        names = set(zf.namelist())
        if _META + ".npy" not in names:
            raise CheckpointError(f"{path} is not a cnnc checkpoint (no `{_META}` entry)")
        shape, dtype = _header(zf, _META, path)
        if dtype != np.uint8 or len(shape) != 1 or shape[0] > MAX_META_BYTES:
            raise CheckpointError(f"checkpoint {path}: entry `{_META}` must be at most "
                                  f"{MAX_META_BYTES} bytes of JSON, got {dtype} {list(shape)}")
        meta = json.loads(_array(zf, _META, path).tobytes().decode())
        self.meta = _check_meta(meta, path)
        self.members = {}           # (kind, name) -> (member, shape)
        for kind, prefix, field in (("param", "param", "params"), ("opt", "opt", "optimizer_state"),
                                    ("state", "state", "state")):
            for i, name in enumerate(self.meta[field]):
                member = f"{prefix}_{i}"
                shape, dtype = _header(zf, member, path)
                what = {"param": "param", "opt": "optimizer state", "state": "state"}[kind]
                if dtype != np.float32:
                    raise CheckpointError(f"checkpoint {path}: {what} `{name}` must be float32, got {dtype}")
                if math.prod(shape) > MAX_ARRAY_VALUES:
                    raise CheckpointError(f"checkpoint {path}: {what} `{name}` claims shape {list(shape)}, "
                                          f"more than {MAX_ARRAY_VALUES} values")
                self.members[(kind, name)] = (member, shape)
        self.rng_shape = None
        if "rng_state.npy" in names:
            shape, dtype = _header(zf, "rng_state", path)
            if dtype != np.uint64 or len(shape) != 1 or shape[0] > 2:
                raise CheckpointError(f"checkpoint {path}: `rng_state` must be at most 2 uint64 values, "
                                      f"got {dtype} {list(shape)}")
            self.rng_shape = shape

    def shapes(self, kind: str) -> dict:
        return {name: shape for (k, name), (_, shape) in self.members.items() if k == kind}

    def read(self, kind: str, names) -> dict:
        out = {}
        for name in names:
            member, shape = self.members[(kind, name)]
            arr = _array(self.zf, member, self.path)
            if arr.shape != shape:       # the header said one thing, the data another
                raise CheckpointError(f"checkpoint {self.path}: `{name}` is truncated")
            out[name] = arr
        return out

    def rng_state(self) -> np.ndarray:
        if self.rng_shape is None:
            return np.zeros(0, np.uint64)
        return _array(self.zf, "rng_state", self.path)

    def close(self) -> None:
        self.zf.close()


def _is_npy(path: str) -> bool:
    try:
        with open(path, "rb") as f:
            return f.read(6) == b"\x93NUMPY"
    except OSError:
        return False


@contextlib.contextmanager
def _opened(path):
    """An open checkpoint; a read error inside the block becomes a CheckpointError naming it."""
    ar = _Archive(os.fspath(path))
    try:
        yield ar
    except CheckpointError:
        raise
    except (zipfile.BadZipFile, EOFError, OSError, ValueError, KeyError) as e:
        raise CheckpointError(f"{ar.path} is not a readable cnnc checkpoint (truncated or corrupt?): "
                              f"{type(e).__name__}: {e}") from e
    finally:
        ar.close()


def read(path) -> tuple[dict, dict, dict, np.ndarray]:
    """Read a checkpoint fully: (metadata, params, optimizer_state, rng_state); CheckpointError if
    bad. The state arrays are in `read_state`."""
    with _opened(path) as ar:
        params = ar.read("param", ar.meta["params"])
        opt = ar.read("opt", ar.meta["optimizer_state"])
        return ar.meta, params, opt, ar.rng_state()


def read_state(path) -> dict:
    """A checkpoint's state arrays (batch norm's moving statistics, ...) by full name."""
    with _opened(path) as ar:
        return ar.read("state", ar.meta["state"])


def read_extra(path) -> dict:
    """The `extra` dict stored in a checkpoint, without a model (e.g. to find the epoch to resume)."""
    return read(path)[0].get("extra") or {}


def _compare(kind: str, saved: dict, current: dict) -> tuple[list[str], list[str]]:
    """Problem lines and the names that can be copied, comparing saved shapes with the model's."""
    problems, ok = [], []
    for name, arr in current.items():
        if name not in saved:
            problems.append(f"{kind}{name}: missing from checkpoint (model {_shape_str(arr.shape)})")
        elif tuple(saved[name]) != arr.shape:
            problems.append(f"{kind}{name}: checkpoint {_shape_str(saved[name])}, "
                            f"model {_shape_str(arr.shape)}")
        else:
            ok.append(name)
    for name, shape in saved.items():
        if name not in current:
            problems.append(f"{kind}{name}: unexpected in checkpoint (checkpoint "
                            f"{_shape_str(shape)}), not in model")
    return problems, ok


def load(path, model, strict: bool = True) -> dict:
    """Restore a checkpoint into `model` in place and return its `extra` dict.

    Every field, dtype and shape is checked (shapes from the arrays' headers, before any array
    is read) and every array read before the first is copied, so a failed load leaves the model
    as it was. strict: any missing, unexpected or reshaped param, state or optimizer array raises
    CheckpointMismatch listing all of them; otherwise the arrays that fit are loaded and the
    rest reported in a warning."""
    with _opened(path) as ar:
        return _load(ar, model, strict)


def _load(ar: _Archive, model, strict: bool) -> dict:
    path, meta = ar.path, ar.meta
    p_problems, p_ok = _compare("", ar.shapes("param"), model.params)
    o_problems, o_ok = _compare("optimizer state ", ar.shapes("opt"), model.optimizer_state)
    s_problems, s_ok = _compare("state ", ar.shapes("state"), getattr(model, "state", {}))
    problems = p_problems + s_problems + o_problems
    fp_note = None
    if meta["fingerprint"] != model.fingerprint:
        fp_note = (f"note: the checkpoint was written for a different spec (model "
                   f"`{meta['model']}`, fingerprint {meta['fingerprint']}; this model is "
                   f"`{model.name}`, fingerprint {model.fingerprint})")
    if problems:
        message = (f"checkpoint {path} does not fit model `{model.name}` ({len(problems)} "
                   f"problem{'s' if len(problems) != 1 else ''}):\n  " + "\n  ".join(problems)
                   + (f"\n{fp_note}" if fp_note else ""))
        if strict:
            raise CheckpointMismatch(message, problems)
    params = ar.read("param", p_ok)          # everything is read before anything is copied
    opt = ar.read("opt", o_ok)
    state = ar.read("state", s_ok)
    rng_state = ar.rng_state()
    if problems:
        warnings.warn(message + "\nloaded only the arrays that fit (strict=False)", stacklevel=3)
    elif fp_note:
        warnings.warn(f"checkpoint {path}: {fp_note}; all array names and shapes match, loading it",
                      stacklevel=3)
    for name in p_ok:
        model.params[name][...] = params[name]
    for name in s_ok:
        model.state[name][...] = state[name]
    for name in o_ok:
        model.optimizer_state[name][...] = opt[name]
    model.step = int(meta["step"])
    model.lr = float(meta["lr"])
    if hasattr(model, "rng_state") and rng_state.size:
        model.rng_state = rng_state.astype(np.uint64, copy=True)
    return meta.get("extra") or {}
