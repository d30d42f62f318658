"""Check that the peer implementations compute the same function.

Copies the TensorFlow model's variables into the PyTorch model (both
layouts), and checks that logits and the training loss (dropout off) agree on
the same batch; then checks the ONNX export against PyTorch. Benchmarks are
only comparable if this passes.

    python -m bench.check_peers [--models mnist,flowers,textcnn]
"""

import argparse
import os
import sys
import tempfile

import numpy as np

from bench import models as spec


def _tf_to_torch(name, tf_vars, torch_model):
    import torch
    with torch.no_grad():
        for key, var in tf_vars.items():
            value = torch.from_numpy(var.numpy())
            if value.dim() == 4:                     # HWIO -> OIHW
                value = value.permute(3, 2, 0, 1)
            param = getattr(torch_model, key)
            param.copy_(value)


def _torch_input(name, x_np, layout):
    """The TF batch (NHWC / int32 ids) as the PyTorch model's input."""
    import torch
    x = torch.from_numpy(x_np)
    if name == "textcnn":
        return x.long()
    if name == "flowers":
        x = x.permute(0, 3, 1, 2)
        return x.contiguous(memory_format=torch.channels_last if layout == "cl"
                            else torch.contiguous_format)
    return x


def check(name, tol=2e-4):
    import torch
    from bench.peers import onnx_export, tf_models, torch_models

    tf_vars = tf_models._variables(name)
    x_tf, y_tf = tf_models.make_batch(name, 8)
    logits_tf = tf_models._forward(name, tf_vars, x_tf, False).numpy()
    loss_tf = float(tf_models._loss(name, tf_vars, tf_models._forward(name, tf_vars, x_tf, False), y_tf))

    x_np = x_tf.numpy()
    y = torch.from_numpy(y_tf.numpy())
    y = y.float() if spec.INPUTS[name]["labels"] == "onehot" else y.long()
    problems = []
    for layout in torch_models.LAYOUTS:
        model = torch_models.make_model(name, layout).eval()
        _tf_to_torch(name, tf_vars, model)
        x = _torch_input(name, x_np, layout)
        with torch.no_grad():
            logits = model(x)
            loss = float(model.loss(logits, y))
        err = float(np.max(np.abs(logits.numpy() - logits_tf)))
        scale = float(np.max(np.abs(logits_tf))) + 1.0
        status = "ok" if err <= tol * scale and abs(loss - loss_tf) <= tol * (abs(loss_tf) + 1) else "MISMATCH"
        print(f"{name:8s} torch-{layout:4s} vs tf: max |dlogits| {err:.2e} "
              f"(logits spread {float(np.ptp(logits_tf)):.2f}), "
              f"loss {loss:.6f} vs {loss_tf:.6f}  {status}")
        if status != "ok":
            problems.append(f"{name} torch-{layout}")

    ok, reason = onnx_export.available()
    if ok:
        import onnxruntime as ort
        model = torch_models.make_model(name, "nchw").eval()
        _tf_to_torch(name, tf_vars, model)
        x = _torch_input(name, x_np, "nchw")
        with tempfile.TemporaryDirectory() as tmp:
            path = os.path.join(tmp, "m.onnx")
            onnx_export.export_model(model, x, path)
            sess = ort.InferenceSession(path, providers=["CPUExecutionProvider"])
            out = sess.run(None, {"x": x.numpy()})[0]
        err = float(np.max(np.abs(out - logits_tf)))
        status = "ok" if err <= tol * (float(np.max(np.abs(logits_tf))) + 1.0) else "MISMATCH"
        print(f"{name:8s} onnxruntime vs tf: max |dlogits| {err:.2e}  {status}")
        if status != "ok":
            problems.append(f"{name} ort")
    else:
        print(f"{name:8s} onnxruntime: {reason}")
    return problems


def main():
    p = argparse.ArgumentParser(description=__doc__)
    # the weight copy below knows the three tutorial models' variable names
    p.add_argument("--models", default="mnist,flowers,textcnn")
    a = p.parse_args()
    problems = []
    for name in a.models.split(","):
        problems += check(name)
    print("all peers agree" if not problems else f"MISMATCH: {', '.join(problems)}")
    sys.exit(1 if problems else 0)


if __name__ == "__main__":
    main()
