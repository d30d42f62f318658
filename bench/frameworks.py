"""The benchmark's columns: which implementation and layout each one runs.

A column is a (framework module, layout) pair. Every framework module offers
available(), version(), TRAINS, train_step_fn(model, batch, layout) and
infer_fn(model, batch, layout); the cnnc hook is adapted to that shape here.
"""

import importlib

# column name -> (module, layout)
COLUMNS = {
    "cnnc": ("bench.frameworks", "native"),        # adapted cnnc_runner, below
    "cnnc-c": ("bench.cnnc_c", "native"),          # the exported C library, through ctypes
    "torch-nchw": ("bench.peers.torch_models", "nchw"),
    "torch-cl": ("bench.peers.torch_models", "cl"),
    "tf": ("bench.peers.tf_models", "nhwc"),
    "ort": ("bench.peers.onnx_export", "nchw"),
    "ort-cnnc": ("bench.cnnc_onnx", "nhwc"),       # ORT on cnnc's own ONNX export
}

DEFAULT_BASELINE = "cnnc"


def framework(column):
    """(module, layout) of a column; the module is imported but its framework is not."""
    module, layout = COLUMNS[column]
    return importlib.import_module(module), layout


# ---- cnnc adapter: the layout argument is ignored (cnnc picks its own). ----

TRAINS = True


def _runner():
    from bench import cnnc_runner
    return cnnc_runner


def available():
    try:
        return _runner().available()
    except Exception as exc:
        return False, f"cnnc_runner failed: {type(exc).__name__}: {exc}"


def version():
    try:
        from importlib.metadata import version as dist_version
        return dist_version("cnnc")
    except Exception:
        return "source tree"


def train_step_fn(name, batch, layout=None):
    return _runner().train_step_fn(name, batch)


def infer_fn(name, batch, layout=None):
    return _runner().infer_fn(name, batch)


def compile_times(name):
    return _runner().compile_times(name)
