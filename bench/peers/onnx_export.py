"""Inference through ONNX Runtime on the PyTorch models exported to ONNX.

The PyTorch model (NCHW, eval mode: no dropout) is exported with
torch.onnx.export for a fixed batch size and run with an ORT session whose
intra-op thread count is the benchmark's thread count. Inference only.
torch, onnx and onnxruntime are imported lazily.
"""

import os
import tempfile
import warnings

from bench.harness import default_threads, ort_session_options

LAYOUTS = ("nchw",)
TRAINS = False

_ort = None


def _import():
    global _ort
    if _ort is None:
        import onnx  # noqa: F401  (the exporter needs it)
        import onnxruntime
        import torch  # noqa: F401
        _ort = onnxruntime
    return _ort


def available():
    try:
        _import()
        return True, ""
    except Exception as exc:
        return False, f"missing: {type(exc).__name__}: {exc}"


def version():
    return _import().__version__


def export_model(model, x, path):
    """Write `model` (a torch module in eval mode) traced on input `x` to `path`."""
    import torch
    with torch.no_grad(), warnings.catch_warnings():
        warnings.simplefilter("ignore")
        try:  # the TorchScript-based exporter: no extra dependency, static shapes
            torch.onnx.export(model, (x,), path, input_names=["x"], output_names=["logits"],
                              dynamo=False)
        except Exception:
            # Fall back to the default (torch.export-based) exporter.
            torch.onnx.export(model, (x,), path, input_names=["x"], output_names=["logits"])


def export(name, batch, path):
    """Write the PyTorch inference graph of `name` at batch `batch` to `path`."""
    from bench.peers import torch_models

    model = torch_models.make_model(name, "nchw").eval()
    x, _ = torch_models.make_batch(name, batch, "nchw")
    export_model(model, x, path)
    return x.numpy()


def infer_fn(name, batch, layout="nchw"):
    ort = _import()
    threads = int(os.environ.get("OMP_NUM_THREADS", default_threads()))
    with tempfile.TemporaryDirectory() as tmp:
        path = os.path.join(tmp, f"{name}_b{batch}.onnx")
        x = export(name, batch, path)
        session = ort.InferenceSession(path, ort_session_options(ort, threads),
                                       providers=["CPUExecutionProvider"])
    input_name = session.get_inputs()[0].name

    def infer():
        return session.run(None, {input_name: x})

    return infer


def train_step_fn(name, batch, layout="nchw"):
    raise NotImplementedError("onnxruntime: inference only")
