"""The cnnc column of the benchmark: compile the example specs and time their entry points.

The benchmark's peers train flowers with SGD (as the issue's figures do), so the spec is
compiled with its optimizer line swapped for sgd(lr=0.001); mnist and textcnn run as written
(SGD and Adam). Thread count: OMP_NUM_THREADS, set by the benchmark for every column alike."""
from __future__ import annotations

import os
import re
import tempfile
import time
from pathlib import Path

import numpy as np

from bench import models as spec

EXAMPLES = Path(__file__).resolve().parents[1] / "examples"
OPTIMIZER = {"flowers": "sgd(lr=0.001)"}
_BUILD = Path(tempfile.gettempdir()) / "cnnc-bench-build"
_times: dict[str, dict] = {}


def available():
    try:
        import cnnc  # noqa: F401
        from cnnc.compiler import build  # noqa: F401
    except Exception as exc:                  # pragma: no cover - reported in the table
        return False, f"cnnc not importable: {exc}"
    return True, ""


def spec_text(name: str) -> str:
    text = (EXAMPLES / f"{name}.cnn").read_text()
    if name in OPTIMIZER:
        text = re.sub(r"^optimizer = .*$", f"optimizer = {OPTIMIZER[name]}", text, flags=re.M)
    return text


def _compile(name: str, fresh: bool = False):
    import cnnc
    out = Path(tempfile.mkdtemp(prefix="cnnc-cold-")) if fresh else _BUILD
    t = time.perf_counter()
    module = cnnc.compile(spec_text(name), out_dir=out, filename=f"{name}.cnn")
    return module, time.perf_counter() - t


def _batch(model, name: str, n: int, rng) -> dict:
    out = {}
    for key, (dtype, shape) in model.inputs.items():
        shp = (n,) + tuple(shape[1:])
        if dtype == "f32" and key in model.label_inputs:          # one-hot labels
            out[key] = np.eye(shape[-1], dtype=np.float32)[rng.integers(0, shape[-1], n)]
        elif dtype == "f32":
            out[key] = rng.random(shp, dtype=np.float32)
        else:
            high = 10000 if key in model.feature_inputs else spec.INPUTS.get(name, {}).get("classes", 10)
            out[key] = rng.integers(0, high, shp).astype(np.int32)
    return out


def train_step_fn(name: str, batch: int):
    module, _ = _compile(name)
    model = module.Model(seed=0)
    data = _batch(model, name, batch, np.random.default_rng(0))
    return lambda: model.train_step(**data)


def infer_fn(name: str, batch: int):
    module, _ = _compile(name)
    model = module.Model(seed=0)
    data = {k: v for k, v in _batch(model, name, batch, np.random.default_rng(0)).items()
            if k in model.feature_inputs}
    return lambda: model.forward(**data)


def _command_seconds(name: str, cache_dir: str) -> float:
    """`cnnc compile` of the spec into a fresh folder, as a user runs it (Python start-up and
    imports included), with the given cache folder (cnnc/cache.py)."""
    import subprocess
    import sys
    with tempfile.TemporaryDirectory(prefix="cnnc-cold-") as d:
        spec = Path(d, f"{name}.cnn")
        spec.write_text(spec_text(name))
        env = dict(os.environ, CNNC_CACHE_DIR=cache_dir)
        t = time.perf_counter()
        subprocess.run([sys.executable, "-m", "cnnc", "compile", str(spec), "-o", str(Path(d, "out"))],
                       env=env, check=True, capture_output=True)
        return time.perf_counter() - t


def compile_times(name: str) -> dict:
    """Seconds to compile the spec: `first`, the command on a machine that has never run cnnc
    (empty cache: the GEMM core, parser tables and templates are built too); `cold`, the command
    for a spec never compiled before (gcc runs on the model's own kernels); `cached`, the same
    spec again in-process (no gcc)."""
    if name not in _times:
        with tempfile.TemporaryDirectory(prefix="cnnc-cache-") as cache:
            first = _command_seconds(name, cache)
            cold = _command_seconds(name, cache)
        _compile(name)
        _, cached = _compile(name)
        _times[name] = {"first": round(first, 3), "cold": round(cold, 3), "cached": round(cached, 3)}
    return _times[name]
