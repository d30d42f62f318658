"""A compiled model seen from Python: params as NumPy views into the C slabs, checked inputs,
and the four entry points (forward, backward, train_step, eval_step).

NumPy owns every byte: the param, gradient and optimizer slabs are allocated once per Model,
the workspace once per batch size (a few sizes are cached); C only borrows pointers. This
module uses the built extension and its manifest only, never the compiler."""
from __future__ import annotations

import functools
import math
import os
import re
import threading
import weakref
from collections import OrderedDict

import numpy as np

DTYPES = {"f32": np.dtype(np.float32), "i32": np.dtype(np.int32), "bool": np.dtype(np.uint8)}
C_ARRAY = {"f32": "float[]", "i32": "int32_t[]", "bool": "uint8_t[]"}   # passes as a pointer
WORKSPACE_CACHE = 4      # batch sizes whose workspace is kept


def available_cores() -> int:
    """The cores this process may run on (its CPU affinity), not the machine's total."""
    try:
        return len(os.sched_getaffinity(0))
    except (AttributeError, OSError):
        return os.cpu_count() or 1


def default_threads() -> int:
    """OMP_NUM_THREADS (its first entry) when it is a whole number, else every available core;
    never more than the available cores."""
    first = os.environ.get("OMP_NUM_THREADS", "").split(",")[0].strip()
    n = int(first) if first.isdigit() and int(first) > 0 else available_cores()
    return min(n, available_cores())


# libgomp's worker threads do not survive fork(): a child that enters a parallel region the
# parent had used waits for them forever. In a forked child every model runs on one thread.
_FORKED = False


_MODELS: "weakref.WeakSet[Model]" = weakref.WeakSet()


def _after_fork_in_child() -> None:
    global _FORKED
    _FORKED = True
    for m in list(_MODELS):          # a lock held by a parent's thread would never be released
        m._lock = threading.RLock()


if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_after_fork_in_child)


def _serialized(method):
    """Run a Model method under the model's lock: one call at a time per Model, because a call
    uses the model's workspace, gradient slab and step counter."""
    @functools.wraps(method)
    def locked(self, *args, **kwargs):
        with self._lock:
            return method(self, *args, **kwargs)
    return locked


class InputError(ValueError):
    """A missing, unknown, wrongly typed or wrongly shaped input (or output gradient)."""


class NonFiniteError(FloatingPointError):
    """A training step met NaN or Inf and was skipped: `input` names the input that held it, or
    is None when the inputs were finite and training diverged. `loss` is the step's loss."""

    def __init__(self, message: str, *, loss: float, input: str | None):
        super().__init__(message)
        self.loss, self.input = loss, input


def type_str(dtype: str, shape) -> str:
    return f"{dtype}[{', '.join(str(d) for d in shape)}]"


def _sym(d) -> int | None:
    """The coefficient of N in a manifest dim ("N", "2*N"), or None for a fixed size."""
    if isinstance(d, int):
        return None
    m = re.fullmatch(r"(?:(\d+)\*)?N", str(d))
    return int(m.group(1) or 1) if m else None


class _Lazy:
    """A message part formatted only if it is printed."""

    def __init__(self, f, *args):
        self.f, self.args = f, args

    def __str__(self) -> str:
        return self.f(*self.args)


# --------------------------------------------------------------------------- initializers


def _fans(shape) -> tuple[float, float]:
    """TF's fan rule: a conv filter [kh, kw, in, out] has fan_in kh*kw*in, fan_out kh*kw*out."""
    if len(shape) == 0:
        return 1.0, 1.0
    if len(shape) == 1:
        return float(shape[0]), float(shape[0])
    if len(shape) == 2:
        return float(shape[0]), float(shape[1])
    receptive = math.prod(shape[:-2])
    return float(shape[-2] * receptive), float(shape[-1] * receptive)


def _truncated(rng, shape, mean=0.0, stddev=1.0) -> np.ndarray:
    """Normal draws; any beyond two standard deviations is drawn again (TF's truncated_normal)."""
    z = rng.standard_normal(shape)
    bad = np.abs(z) > 2.0
    while bad.any():
        z[bad] = rng.standard_normal(int(bad.sum()))
        bad = np.abs(z) > 2.0
    return mean + stddev * z


TRUNCATED_STD = 0.87962566103423978     # stddev of a unit normal truncated at +-2 (Keras)


def initial_value(rng: np.random.Generator, kind: str, args: dict, shape) -> np.ndarray:
    shape = tuple(shape)
    a = lambda k, d: float(args.get(k, d))
    if kind == "zeros":
        v = np.zeros(shape)
    elif kind == "ones":
        v = np.ones(shape)
    elif kind == "constant":
        v = np.full(shape, a("value", 0.0))
    elif kind == "random_normal":
        v = rng.normal(a("mean", 0.0), a("stddev", 1.0), shape)
    elif kind == "truncated_normal":
        v = _truncated(rng, shape, a("mean", 0.0), a("stddev", 1.0))
    elif kind == "random_uniform":
        v = rng.uniform(a("minval", 0.0), a("maxval", 1.0), shape)
    elif kind == "glorot_uniform":
        fan_in, fan_out = _fans(shape)
        limit = math.sqrt(6.0 / (fan_in + fan_out))
        v = rng.uniform(-limit, limit, shape)
    elif kind == "glorot_normal":
        fan_in, fan_out = _fans(shape)
        v = _truncated(rng, shape, 0.0, math.sqrt(2.0 / (fan_in + fan_out)) / TRUNCATED_STD)
    elif kind == "he_normal":
        fan_in, _ = _fans(shape)
        v = _truncated(rng, shape, 0.0, math.sqrt(2.0 / fan_in) / TRUNCATED_STD)
    else:
        raise ValueError(f"unknown initializer `{kind}`")
    return np.asarray(v, dtype=np.float32)


# --------------------------------------------------------------------------- the model


class Model:
    """A compiled model: `params`, `state`, `forward`, `backward`, `train_step`, `eval_step`, `fit`, ...

    Params are initialized from the spec's initializers with a NumPy generator seeded by
    `seed`, so the same seed gives the same params. `params[name]` arrays share memory with
    C: writing into them (`model.params["w"][...] = v`) changes the model. `state[name]`
    (the spec's `state`, e.g. batch norm's moving statistics) is the same for non-trainable
    values: train_step changes it by the spec's `update`s, nothing else does."""

    def __init__(self, lib, ffi, manifest: dict, seed: int = 0):
        self._lib, self._ffi, self.manifest = lib, ffi, manifest
        self._set_threads = getattr(lib, f"{manifest['symbol']}_set_threads")
        self._lock = threading.RLock()
        self._threads = default_threads()
        _MODELS.add(self)
        m = manifest
        self.name: str = m["model"]
        self.fingerprint: str = m.get("fingerprint", "")
        size = m["params_size"]
        opt = m.get("optimizer")
        slots = opt["slots"] if opt else []
        self._params = np.zeros(size, np.float32)
        self._grads = np.zeros(size, np.float32)
        self._opt = np.zeros(max(1, len(slots) * size), np.float32)
        self._param_specs = m["params"]
        self._state_specs = m.get("state", [])
        # the state slab, and train_step's scratch for the new values (copied over once finite)
        self._state = np.zeros(max(1, m.get("state_size", 0)), np.float32)
        self._state_next = np.zeros_like(self._state)
        self.state: dict[str, np.ndarray] = {}
        for v in self._state_specs:
            n, off = math.prod(v["shape"]), v["offset"]
            self.state[v["name"]] = self._state[off:off + n].reshape(v["shape"])
        self.params: dict[str, np.ndarray] = {}
        self.grads: dict[str, np.ndarray] = {}
        self.optimizer_state: dict[str, np.ndarray] = {}
        for p in m["params"]:
            n, off = math.prod(p["shape"]), p["offset"]
            self.params[p["name"]] = self._params[off:off + n].reshape(p["shape"])
            self.grads[p["name"]] = self._grads[off:off + n].reshape(p["shape"])
            for s, slot in enumerate(slots):
                o = s * size + off
                self.optimizer_state[f"{slot}/{p['name']}"] = self._opt[o:o + n].reshape(p["shape"])
        self._input_types = {i["name"]: (i["dtype"], i["shape"]) for i in m["inputs"]}
        self._bounds = {b["input"]: b for b in m.get("bounds", [])}
        self._batch_limit = m.get("batch_limit")
        self._output_types = {o["name"]: (o["dtype"], o["shape"]) for o in m["outputs"]}
        # each declared shape's N coefficients (None for a fixed size), worked out once
        self._coeffs = {id(shape): tuple(_sym(d) for d in shape)
                        for _, shape in [*self._input_types.values(), *self._output_types.values()]}
        self._plans: dict[str, tuple] = {}
        self.inputs = {k: (dt, tuple(None if _sym(d) else d for d in shape))
                       for k, (dt, shape) in self._input_types.items()}
        self.feature_inputs: list[str] = list(m["feature_inputs"])
        self.label_inputs: list[str] = list(m["label_inputs"])
        self.outputs: list[str] = [o["name"] for o in m["outputs"]]
        self.metric_names: list[str] = [x["name"] for x in m["metrics"]]
        self.optimizer = opt
        self.lr: float = float(opt["hyper"]["lr"]) if opt else 0.0
        self.step: int = 0
        self._rng = np.zeros(2, np.uint64)
        ws = m["memory"]["workspace"]
        self._ws_fixed, self._ws_per = ws["fixed_bytes"], ws["per_example_bytes"]
        self._workspaces: OrderedDict[int, tuple] = OrderedDict()
        self._ptr = {
            "params": ffi.from_buffer("float[]", self._params),
            "grads": ffi.from_buffer("float[]", self._grads),
            "opt": ffi.from_buffer("float[]", self._opt),
            "state": ffi.from_buffer("float[]", self._state),
            "state_next": ffi.from_buffer("float[]", self._state_next),
        }
        self.init_params(seed)
        self.reseed(seed)

    @property
    def threads(self) -> int:
        """Threads this model's kernels use: every core the process may run on by default (or
        OMP_NUM_THREADS). Setting it applies to this model's later calls, from any thread; it is
        clamped to the available cores (and to what the compiled kernels support)."""
        return self._kernel_threads(self._threads)

    @threads.setter
    def threads(self, n: int) -> None:
        if isinstance(n, bool) or not isinstance(n, (int, np.integer)) or n < 1:
            raise ValueError(f"threads must be a whole number, 1 or more; got {n!r}")
        self._threads = min(int(n), available_cores())

    def _kernel_threads(self, n: int) -> int:
        """Set the calling thread's OpenMP thread count for the next kernel call; returns what the
        kernels will use (at most their compiled-in maximum; one in a forked child)."""
        return int(self._set_threads(1 if _FORKED else n))

    def __repr__(self) -> str:
        n = sum(v.size for v in self.params.values())
        return f"<cnnc model `{self.name}`: {len(self.params)} params ({n} values), step {self.step}>"

    # ---------------------------------------------------------------- state

    @_serialized
    def init_params(self, seed: int = 0) -> None:
        """(Re)initialize every param and state from its spec initializer; clears the optimizer state."""
        rng = np.random.default_rng(seed)
        for p in self._param_specs:
            init = p["init"]
            self.params[p["name"]][...] = initial_value(rng, init["kind"], init["args"], p["shape"])
        for v in self._state_specs:          # after the params: their draws stay what they were
            init = v["init"]
            self.state[v["name"]][...] = initial_value(rng, init["kind"], init["args"], v["shape"])
        self._opt[...] = 0.0
        self.step = 0

    def reseed(self, seed: int) -> None:
        """Restart the dropout stream: masks depend only on (seed, number of train steps since)."""
        self._rng[...] = (int(seed), 0)

    @property
    def rng_state(self) -> np.ndarray:
        return self._rng.copy()

    @rng_state.setter
    def rng_state(self, value) -> None:
        v = np.asarray(value, dtype=np.uint64).reshape(-1)
        self._rng[...] = 0
        self._rng[:min(2, v.size)] = v[:2]

    # ---------------------------------------------------------------- input checks

    def _check(self, given: dict, required, allowed, what="input", types=None, n=None):
        """Arrays of exactly the declared dtype and shape, contiguous, and the batch size N."""
        types = types or self._input_types
        unknown = [k for k in given if k not in allowed]
        if unknown:
            names = ", ".join(f"`{k}`" for k in allowed) or "none"
            raise InputError(f"model `{self.name}` has no {what} `{unknown[0]}`; its {what}s are {names}")
        missing = [k for k in required if k not in given]
        if missing:
            k = missing[0]
            raise InputError(f"missing {what} `{k}`: it expects {type_str(*types[k])}")
        out = {}
        for k, value in given.items():
            dtype, shape = types[k]
            arr = value if isinstance(value, np.ndarray) else np.asarray(value)
            want = _Lazy(type_str, dtype, shape)             # messages are built only on error
            got = _Lazy(lambda a: f"{a.dtype} array of shape {tuple(a.shape)}", arr)
            if arr.dtype != DTYPES[dtype]:
                hint = {"f32": "np.float32", "i32": "np.int32", "bool": "np.bool_"}[dtype]
                raise InputError(f"{what} `{k}` expects {want}; got {got} (cnnc does not cast "
                                 f"silently: pass `{k}.astype({hint})`)")
            if arr.ndim != len(shape):
                raise InputError(f"{what} `{k}` expects {want}; got {got}")
            for c, d, s in zip(self._coeffs[id(shape)], shape, arr.shape):
                if c is None:
                    if d != s:
                        raise InputError(f"{what} `{k}` expects {want}; got {got}")
                    continue
                if s % c:
                    raise InputError(f"{what} `{k}` expects {want}; got {got} ({s} is not a multiple of {c})")
                if n is None:
                    n, first = s // c, k
                elif s // c != n:
                    raise InputError(f"{what} `{k}` expects {want} with N = {n} (from `{first}`); "
                                     f"got {got}")
            if n is not None:
                self._check_batch_size(n)          # before a copy of a batch too large to run
            out[k] = np.ascontiguousarray(arr)
            if k in self._bounds and what == "input":
                self._check_range(k, out[k], self._bounds[k])
        return out, n

    def check_ranges(self, arrays: dict) -> None:
        """Range-check the labels and ids among `arrays` (whole input arrays by name): InputError
        naming the first value outside its range and its index."""
        for k, arr in arrays.items():
            if k in self._bounds:
                self._check_range(k, np.asarray(arr), self._bounds[k])

    def _check_range(self, name: str, arr: np.ndarray, b: dict) -> None:
        """Labels and ids a kernel indexes with must lie in [low, high): checked before any
        kernel runs, so a bad batch changes nothing."""
        lo, hi = b["low"], b["high"]
        if arr.size == 0 or (lo <= arr.min() and arr.max() < hi):
            return
        first = int(np.flatnonzero((arr < lo) | (arr >= hi))[0])
        where = [int(i) for i in np.unravel_index(first, arr.shape)]
        raise InputError(f"input `{name}` holds {arr.reshape(-1)[first]} at index {where}, but "
                         f"{b['what']} must lie in [{lo}, {hi}) (`{b['arg']}` of `{b['op']}`)")

    def _check_batch_size(self, n: int) -> None:
        limit = self._batch_limit
        if limit and n > limit["max_batch"]:
            raise InputError(f"a batch of {n} examples is too large for model `{self.name}`: "
                             f"`{limit['tensor']}` would hold {limit['per_example'] * n:,} values, past "
                             f"the 2^31 its kernels can index; pass at most {limit['max_batch']:,} "
                             "examples per call")

    def _batch(self, given: dict, required, allowed, n=None):
        arrays, n = self._check(given, required, allowed, n=n)
        if n is None:
            n = 1
        if n < 1:
            raise InputError("the batch is empty: every input has 0 rows")

        return arrays, n

    # ---------------------------------------------------------------- calls

    def _workspace(self, n: int):
        ws = self._workspaces.pop(n, None)
        if ws is None:
            buf = np.zeros(self._ws_fixed + self._ws_per * n + 64, np.uint8)
            start = (-buf.ctypes.data) % 64            # 64-byte aligned, as the plan assumes
            view = buf[start:start + self._ws_fixed + self._ws_per * n]
            ws = (buf, self._ffi.from_buffer("uint8_t[]", view))
            while len(self._workspaces) >= WORKSPACE_CACHE:
                self._workspaces.popitem(last=False)
        self._workspaces[n] = ws
        return ws[1]

    def _plan(self, entry: str) -> tuple:
        """An entry point's C function and, per argument, (kind, key, C array type): read from
        the manifest once."""
        if entry not in self._plans:
            spec = self.manifest["entries"].get(entry)
            if spec is None:
                raise RuntimeError(f"model `{self.name}` has no {entry}: "
                                   + ("it declares no loss" if entry in ("eval_step", "train_step") and
                                      self.manifest["loss"] is None else "it declares no optimizer"))
            plan = []
            for d in spec["args"]:
                kind = d[0]
                key = (kind, d[1] if len(d) > 1 else None)
                dtype = "f32"
                if kind == "input":
                    dtype = self._input_types[d[1]][0]
                elif kind == "output":
                    dtype = self._output_types[d[1]][0]
                plan.append((kind, key, C_ARRAY[dtype]))
            self._plans[entry] = (getattr(self._lib, spec["symbol"]), tuple(plan))
        return self._plans[entry]

    def _call(self, entry: str, n: int, arrays: dict, extra: dict):
        fn, plan = self._plan(entry)
        self._kernel_threads(self._threads)
        args = []
        for kind, key, carray in plan:
            if kind in self._ptr:
                args.append(self._ptr[kind])
            elif kind == "ws":
                args.append(self._workspace(n))
            elif kind == "N":
                args.append(n)
            elif kind in ("input", "dout"):
                args.append(self._ffi.from_buffer(carray, arrays[key]))
            elif kind in ("output", "dinput", "results"):
                args.append(self._ffi.from_buffer(carray, extra[key]))
            else:
                args.append(extra[key])
        return fn(*args)

    def _outputs_for(self, n: int) -> dict:
        return {("output", k): np.empty(self._concrete(shape, n), DTYPES[dt])
                for k, (dt, shape) in self._output_types.items()}

    def _concrete(self, shape, n: int) -> tuple[int, ...]:
        """A declared input or output shape at batch size n."""
        return tuple(d if c is None else c * n for c, d in zip(self._coeffs[id(shape)], shape))

    @_serialized
    def forward(self, **inputs) -> dict:
        """The outputs for a batch of feature inputs (dropout off). Label inputs may be given too."""
        arrays, n = self._batch(inputs, self.feature_inputs, list(self._input_types))
        outs = self._outputs_for(n)
        self._call("forward", n, {("input", k): v for k, v in arrays.items()}, outs)
        out = {k: outs[("output", k)] for k in self.outputs}
        return {k: (v.astype(bool) if self._output_types[k][0] == "bool" else v) for k, v in out.items()}

    @_serialized
    def backward(self, inputs: dict, output_grads: dict) -> dict:
        """The vector-Jacobian product of forward: d(sum(outputs * output_grads)) for every param
        and every f32 input, by name. A missing output gradient counts as zeros."""
        arrays, n = self._batch(dict(inputs), self.feature_inputs, list(self._input_types))
        f32_outs = [k for k, (dt, _) in self._output_types.items() if dt == "f32"]
        douts, _ = self._check(dict(output_grads), [], f32_outs, what="output gradient",
                               types=self._output_types, n=n)
        given = {("input", k): v for k, v in arrays.items()}
        for k in f32_outs:
            given[("dout", k)] = douts.get(k, np.zeros(self._concrete(self._output_types[k][1], n), np.float32))
        extra = {("dinput", k): np.empty(self._concrete(shape, n), np.float32)
                 for k, (dt, shape) in self._input_types.items() if dt == "f32"}
        self._call("backward", n, given, extra)
        grads = {k: v.copy() for k, v in self.grads.items()}
        grads.update({k[1]: v for k, v in extra.items()})
        return grads

    def _scalars(self, entry: str, batch: dict, extra: dict) -> tuple[dict, dict, int]:
        """(loss and metrics, the checked arrays, the entry point's status)."""
        arrays, n = self._batch(batch, list(self._input_types), list(self._input_types))
        results = np.empty(1 + len(self.metric_names), np.float32)
        extra[("results", None)] = results
        status = self._call(entry, n, {("input", k): v for k, v in arrays.items()}, extra)
        return dict(zip(["loss", *self.metric_names], (float(r) for r in results))), arrays, status

    @_serialized
    def train_step(self, **batch) -> dict:
        """One optimizer step on a batch (dropout on, batch statistics where the spec uses them);
        returns the loss and metrics before the update, and applies the spec's state `update`s.
        A step whose loss, gradient or state update is not finite changes nothing (params,
        state, optimizer state, step and dropout stream) and raises NonFiniteError saying why."""
        extra = {("lr", None): float(self.lr), ("t", None): int(self.step) + 1,
                 ("seed", None): int(self._rng[0]), ("counter", None): int(self._rng[1])}
        out, arrays, status = self._scalars("train_step", batch, extra)
        if status:
            raise self._not_finite(arrays, out["loss"])
        self.step += 1
        self._rng[1] += np.uint64(1)
        return out

    def _not_finite(self, arrays: dict, loss: float) -> "NonFiniteError":
        for k, arr in arrays.items():
            if arr.dtype == np.float32 and not np.isfinite(arr).all():
                first = int(np.flatnonzero(~np.isfinite(arr))[0])
                where = [int(i) for i in np.unravel_index(first, arr.shape)]
                return NonFiniteError(f"input `{k}` holds {arr.reshape(-1)[first]} at index {where}; "
                                      "the step was skipped and the model is unchanged", loss=loss, input=k)
        what = f"the loss is {loss}" if not math.isfinite(loss) else "a gradient is NaN or infinite"
        return NonFiniteError(f"training diverged: {what} with finite inputs (a learning rate too high?); "
                              "the step was skipped and the model is unchanged", loss=loss, input=None)

    @_serialized
    def eval_step(self, **batch) -> dict:
        """Loss and metrics on a batch, dropout off, no update."""
        return self._scalars("eval_step", batch, {})[0]

    # ---------------------------------------------------------------- loops and files

    def fit(self, *args, **kwargs):
        from . import train
        return train.fit(self, *args, **kwargs)

    def evaluate(self, *args, **kwargs):
        from . import train
        return train.evaluate(self, *args, **kwargs)

    def predict(self, *args, **kwargs):
        from . import train
        return train.predict(self, *args, **kwargs)

    @_serialized
    def save(self, path, extra=None):
        from . import checkpoint
        return checkpoint.save(path, self, extra)

    @_serialized
    def load(self, path, strict: bool = True):
        from . import checkpoint
        return checkpoint.load(path, self, strict=strict)
