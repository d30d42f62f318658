"""The benchmark models written by hand in PyTorch.

TensorFlow semantics are kept (same layer shapes, padding, bias placement,
losses and optimisers); tensors are NCHW as PyTorch wants, optionally stored
channels_last ("cl" layout: torch.channels_last on model and inputs).
torch is imported lazily: available() reports a missing install.
"""

import os

from bench import models as spec
from bench.harness import default_threads, set_torch_threads

LAYOUTS = ("nchw", "cl")
TRAINS = True

_torch = None


def _import():
    global _torch
    if _torch is None:
        import torch
        _torch = torch
        set_torch_threads(torch, int(os.environ.get("OMP_NUM_THREADS", default_threads())))
    return _torch


def available():
    try:
        _import()
        return True, ""
    except Exception as exc:  # ImportError, or a broken install
        return False, f"missing: {type(exc).__name__}: {exc}"


def version():
    return _import().__version__


# --------------------------------------------------------------------------
# Models
# --------------------------------------------------------------------------

def _build(name):
    torch = _import()
    nn, F = torch.nn, torch.nn.functional

    def weight(*shape):
        return nn.Parameter(nn.init.trunc_normal_(torch.empty(*shape), std=0.1, a=-0.2, b=0.2))

    def bias(n):
        return nn.Parameter(torch.full((n,), 0.1))

    class Mnist(nn.Module):
        def __init__(self):
            super().__init__()
            self.w1, self.b1 = weight(32, 1, 3, 3), bias(32)
            self.w2, self.b2 = weight(64, 32, 3, 3), bias(64)
            self.wd, self.bd = weight(3136, 10), bias(10)

        def forward(self, x):
            x = x.view(-1, 28, 28, 1).permute(0, 3, 1, 2)        # NHWC -> NCHW
            x = _layout(x, self.channels_last)
            # The original adds the bias after the relu: relu(conv) + bias.
            x = F.relu(F.conv2d(x, self.w1, padding=1)) + self.b1.view(1, -1, 1, 1)
            x = F.max_pool2d(x, 2, 2)
            x = F.relu(F.conv2d(x, self.w2, padding=1)) + self.b2.view(1, -1, 1, 1)
            x = F.max_pool2d(x, 2, 2)                             # [N, 64, 7, 7]
            x = x.permute(0, 2, 3, 1).reshape(-1, 3136)           # TF's NHWC flatten order
            return x @ self.wd + self.bd

        def loss(self, logits, labels):                           # labels: one-hot float
            return F.cross_entropy(logits, labels)

    class Flowers(nn.Module):
        def __init__(self):
            super().__init__()
            self.w1, self.b1 = weight(32, 3, 5, 5), bias(32)
            self.w2, self.b2 = weight(64, 32, 5, 5), bias(64)
            self.w3 = weight(128, 64, 3, 3)
            self.w4 = weight(128, 128, 3, 3)
            self.wd1, self.bd1 = weight(4608, 1024), bias(1024)
            self.wd2, self.bd2 = weight(1024, 512), bias(512)
            self.wd3, self.bd3 = weight(512, 5), bias(5)

        def forward(self, x):                                     # x: NCHW (maybe channels_last)
            x = F.max_pool2d(F.relu(F.conv2d(x, self.w1, self.b1, padding=2)), 2, 2)
            x = F.max_pool2d(F.relu(F.conv2d(x, self.w2, self.b2, padding=2)), 2, 2)
            x = F.max_pool2d(F.relu(F.conv2d(x, self.w3, padding=1)), 2, 2)
            x = F.max_pool2d(F.relu(F.conv2d(x, self.w4, padding=1)), 2, 2)  # [N,128,6,6]
            x = x.permute(0, 2, 3, 1).reshape(-1, 4608)
            x = F.dropout(F.relu(x @ self.wd1 + self.bd1), 0.5, self.training)
            x = F.dropout(F.relu(x @ self.wd2 + self.bd2), 0.5, self.training)
            return x @ self.wd3 + self.bd3

        def loss(self, logits, labels):                           # labels: int64 class ids
            l2 = sum((w * w).sum() / 2 for w in (self.wd1, self.wd2, self.wd3))
            return F.cross_entropy(logits, labels) + 0.0001 * l2

    class TextCnn(nn.Module):
        def __init__(self):
            super().__init__()
            self.embedding = nn.Parameter(torch.empty(10000, 50).uniform_(-1.0, 1.0))
            self.w1, self.b1 = weight(10, 1, 20, 50), bias(10)
            self.w2, self.b2 = weight(10, 1, 20, 10), bias(10)
            self.wd, self.bd = weight(10, 15), bias(15)

        def forward(self, ids):
            x = F.embedding(ids, self.embedding).unsqueeze(1)     # [N, 1, 100, 50]
            x = _layout(x, self.channels_last)
            x = F.relu(F.conv2d(x, self.w1, self.b1))             # [N, 10, 81, 1]
            # TF max_pool ksize 4 stride 2 SAME on 81 rows: pad 1 above, 2 below.
            x = F.pad(x, (0, 0, 1, 2), value=float("-inf"))
            x = F.max_pool2d(x, (4, 1), (2, 1))                   # [N, 10, 41, 1]
            x = x.permute(0, 3, 2, 1)                             # TF perm [0,1,3,2]: [N, 1, 41, 10]
            x = _layout(x, self.channels_last)
            x = F.relu(F.conv2d(x, self.w2, self.b2))             # [N, 10, 22, 1]
            x = x.amax(dim=(2, 3))                                # reduce_max + squeeze: [N, 10]
            return x @ self.wd + self.bd

        def loss(self, logits, labels):
            return F.cross_entropy(logits, labels)

    return {"mnist": Mnist, "flowers": Flowers, "textcnn": TextCnn}[name]()


def _layout(x, channels_last):
    torch = _import()
    return x.contiguous(memory_format=torch.channels_last) if channels_last else x


def make_model(name, layout="nchw"):
    torch = _import()
    model = _build(name)
    model.channels_last = layout == "cl"
    if model.channels_last:
        model = model.to(memory_format=torch.channels_last)  # 4-D weights
    return model


def make_batch(name, batch, layout="nchw", seed=0):
    """Synthetic inputs and labels with the model's shapes and dtypes."""
    torch = _import()
    g = torch.Generator().manual_seed(seed)
    info = spec.INPUTS[name]
    classes = info["classes"]
    if name == "textcnn":
        x = torch.randint(0, info["vocab"], (batch, 100), generator=g)
    elif name == "flowers":
        x = torch.rand(batch, 100, 100, 3, generator=g).permute(0, 3, 1, 2)  # NHWC data
        x = x.contiguous(memory_format=torch.channels_last if layout == "cl"
                         else torch.contiguous_format)
    else:
        x = torch.rand(batch, 784, generator=g)
    y = torch.randint(0, classes, (batch,), generator=g)
    if info["labels"] == "onehot":
        y = torch.nn.functional.one_hot(y, classes).float()
    return x, y


def make_optimizer(name, model):
    torch = _import()
    if spec.INPUTS[name]["optimizer"] == "adam":
        return torch.optim.Adam(model.parameters(), lr=spec.LEARNING_RATE)
    return torch.optim.SGD(model.parameters(), lr=spec.LEARNING_RATE)


# --------------------------------------------------------------------------
# Benchmark callables
# --------------------------------------------------------------------------

def train_step_fn(name, batch, layout="nchw"):
    """A callable running one optimiser step on a fixed synthetic batch."""
    model = make_model(name, layout)
    model.train()
    opt = make_optimizer(name, model)
    x, y = make_batch(name, batch, layout)

    def step():
        opt.zero_grad(set_to_none=True)
        loss = model.loss(model(x), y)
        loss.backward()
        opt.step()
        return loss.item()

    return step


def infer_fn(name, batch, layout="nchw"):
    """A callable running one forward pass (no autograd) on a fixed batch."""
    torch = _import()
    model = make_model(name, layout)
    model.eval()
    x, _ = make_batch(name, batch, layout)

    def infer():
        with torch.inference_mode():
            return model(x)

    return infer
