"""The cnnc-c column: the model exported as a standalone C library (`cnnc export --c`), built
with its own Makefile as a shared library (OPENMP=1, -march=native: as cnnc's own build) and
called through ctypes. The same kernels as the cnnc column without Python's per-call work
(input checks, cffi, the model lock), so the gap between the two is that overhead.

Inference only; the params are the cnnc column's initial ones (seed 0)."""
from __future__ import annotations

import ctypes
import shutil
import subprocess
import tempfile
from pathlib import Path

import numpy as np

from bench import cnnc_runner

TRAINS = False
CTYPES = {"f32": np.float32, "i32": np.int32, "bool": np.uint8}


def available():
    ok, reason = cnnc_runner.available()
    if not ok:
        return ok, reason
    if shutil.which("make") is None or shutil.which("cc") is None:
        return False, "missing: make or cc (the library builds with them)"
    return True, ""


def version():
    from cnnc import __version__
    return __version__


def train_step_fn(name, batch, layout=None):
    raise RuntimeError("the exported C library does not train")


def library(name: str, out: Path | None = None):
    """Export `name` (seed-0 params) into `out` (a temp dir by default), build lib<model>.so
    with make; returns (ctypes library, Model, symbol)."""
    from cnnc import pipeline
    module, _ = cnnc_runner._compile(name)
    model = module.Model(seed=0)
    out = Path(out or tempfile.mkdtemp(prefix=f"cnnc-c-{name}-"))
    text = cnnc_runner.spec_text(name)
    graph = pipeline.check(text, filename=f"{name}.cnn")
    pipeline.export_c(graph, pipeline.load_source(text, f"{name}.cnn"), model.params, out, "seed 0")
    sym = model.manifest["symbol"]
    r = subprocess.run(["make", "-C", str(out), "OPENMP=1", f"lib{sym}.so"], capture_output=True, text=True)
    if r.returncode != 0:
        raise RuntimeError(f"make failed: {r.stdout[-2000:]}{r.stderr[-2000:]}")
    return ctypes.CDLL(str(out / f"lib{sym}.so")), model, sym


def infer_fn(name, batch, layout=None):
    """One call of <model>_run on a fixed batch, through ctypes."""
    lib, model, sym = library(name)
    data = cnnc_runner._batch(model, name, batch, np.random.default_rng(0))
    inputs = [np.ascontiguousarray(data[k]) for k in model.feature_inputs]
    outputs = []
    for o in model.manifest["outputs"]:
        shape = [batch if d == "N" else d for d in o["shape"]]
        outputs.append(np.empty(shape, CTYPES[o["dtype"]]))
    create = getattr(lib, f"{sym}_create")
    create.restype = ctypes.c_void_p
    ctx = ctypes.c_void_p(create(batch))
    run = getattr(lib, f"{sym}_run")
    run.argtypes = [ctypes.c_void_p] * (1 + len(inputs) + len(outputs)) + [ctypes.c_int]
    args = [ctx] + [ctypes.c_void_p(a.ctypes.data) for a in inputs + outputs] + [batch]
    keep = (inputs, outputs, lib)                  # alive as long as the callable

    def infer():
        status = run(*args)
        if status:
            raise RuntimeError(f"{sym}_run returned {status}")
        return keep[1]
    return infer
