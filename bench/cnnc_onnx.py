"""The ort-cnnc column: ONNX Runtime running cnnc's own ONNX export (`cnnc export --onnx`) of
the spec, NHWC with a symbolic batch, with the cnnc column's initial params (seed 0). Beside
the `ort` column (PyTorch's export of the hand-written peer) it shows how much of ORT's speed
comes from the graph it is given. Inference only; onnx and onnxruntime are imported lazily."""
from __future__ import annotations

import os
import tempfile

import numpy as np

from bench import cnnc_runner
from bench.harness import default_threads, ort_session_options

TRAINS = False


def available():
    try:
        import onnxruntime  # noqa: F401
        from cnnc.compiler import onnx_export  # noqa: F401  (needs the onnx package)
    except Exception as exc:
        return False, f"missing: {type(exc).__name__}: {exc}"
    return cnnc_runner.available()


def version():
    import onnxruntime
    return onnxruntime.__version__


def train_step_fn(name, batch, layout=None):
    raise RuntimeError("ONNX Runtime does not train here")


def infer_fn(name, batch, layout=None):
    import onnxruntime as ort
    from cnnc import pipeline
    from cnnc.export_cmd import write_onnx
    module, _ = cnnc_runner._compile(name)
    model = module.Model(seed=0)
    text = cnnc_runner.spec_text(name)
    threads = int(os.environ.get("OMP_NUM_THREADS", default_threads()))
    with tempfile.TemporaryDirectory() as tmp:
        path = os.path.join(tmp, f"{name}.onnx")
        write_onnx(pipeline.check(text, filename=f"{name}.cnn"), pipeline.load_source(text, f"{name}.cnn"),
                   dict(model.params), path)
        session = ort.InferenceSession(path, ort_session_options(ort, threads),
                                       providers=["CPUExecutionProvider"])
    data = cnnc_runner._batch(model, name, batch, np.random.default_rng(0))
    feed = {k: data[k] for k in model.feature_inputs}

    def infer():
        return session.run(None, feed)
    return infer
