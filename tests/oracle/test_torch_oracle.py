"""Optional oracle: the mnist example's forward and backward against PyTorch's CPU build.

Runs only where torch is installed (it is a benchmark extra, never a dependency); otherwise it
is skipped and says so. Same weights, NHWC permuted to NCHW. The 3x3 stride-1 SAME convs pad
1 on every side and the 2x2 stride-2 pools see even sizes, so TF's and PyTorch's padding agree.
Tolerance: float32 sums of ~3,000 products; 1e-4 relative to the largest value."""
import numpy as np
import pytest

torch = pytest.importorskip("torch", reason="torch not installed: pip install torch==2.13.0 to run the oracle")
F = torch.nn.functional


def _torch_mnist(p, x):
    t = lambda a: torch.tensor(a, requires_grad=True)  # noqa: E731
    w = {k: t(v) for k, v in p.items()}
    h = torch.tensor(x).reshape(-1, 28, 28, 1).permute(0, 3, 1, 2)
    h = F.relu(F.conv2d(h, w["conv1/weight1"].permute(3, 2, 0, 1), padding=1)) + w["conv1/bias1"][:, None, None]
    h = F.max_pool2d(h, 2, 2)
    h = F.relu(F.conv2d(h, w["conv2/weight2"].permute(3, 2, 0, 1), padding=1)) + w["conv2/bias2"][:, None, None]
    h = F.max_pool2d(h, 2, 2).permute(0, 2, 3, 1).reshape(-1, 7 * 7 * 64)
    return w, h @ w["fc/weight3"] + w["fc/bias3"]


def _rel(a, b):
    return float(np.abs(a - b).max() / (np.abs(b).max() + 1e-12))


def test_mnist_matches_pytorch(tmp_path):
    import cnnc
    from pathlib import Path
    mod = cnnc.compile(str(Path(__file__).resolve().parents[2] / "examples" / "mnist.cnn"), out_dir=tmp_path)
    model = mod.Model(seed=0)
    rng = np.random.default_rng(0)
    for k, v in model.params.items():                   # small weights keep activations O(1)
        v[...] = rng.normal(0, 0.1, v.shape).astype(np.float32)
    x = rng.random((4, 784), dtype=np.float32)
    dout = rng.standard_normal((4, 10)).astype(np.float32)
    ours = model.forward(x=x)["y_predict"]
    grads = model.backward({"x": x}, {"y_predict": dout})
    w, logits = _torch_mnist({k: v.copy() for k, v in model.params.items()}, x)
    logits.backward(torch.tensor(dout))
    assert _rel(ours, logits.detach().numpy()) < 1e-4
    for k, v in w.items():
        assert _rel(grads[k], v.grad.numpy()) < 1e-4, k
