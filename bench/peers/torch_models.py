"""The benchmark models written by hand in PyTorch.

TensorFlow semantics are kept (same layer shapes, padding, bias placement,
losses and optimisers); tensors are NCHW as PyTorch wants, optionally stored
channels_last ("cl" layout: torch.channels_last on model and inputs).
Strided SAME convs pad as TF does (the odd cell after: bottom/right); batch norm
is nn.BatchNorm2d with Keras' momentum 0.99 and epsilon 1e-3.
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

    class ConvBn(nn.Module):
        """conv (TF SAME padding) + optional bias + optional batch norm; depthwise when groups."""

        def __init__(self, cin, cout, k, stride=1, bias=True, bn=True, depthwise=False):
            super().__init__()
            self.k, self.stride = k, stride
            self.conv = nn.Conv2d(cin, cout, k, stride, (k - 1) // 2 if stride == 1 else 0, bias=bias,
                                  groups=cin if depthwise else 1)
            self.bn = nn.BatchNorm2d(cout, eps=1e-3, momentum=0.01) if bn else None

        def forward(self, x):
            if self.stride > 1:                   # TF SAME: pad_total split with the odd cell after
                pads = []
                for size in (x.shape[3], x.shape[2]):
                    total = max((-(-size // self.stride) - 1) * self.stride + self.k - size, 0)
                    pads += [total // 2, total - total // 2]
                if any(pads):
                    x = F.pad(x, pads)
            x = self.conv(x)
            return self.bn(x) if self.bn is not None else x

    class ResNet20(nn.Module):
        """Keras' CIFAR-10 resnet_v1, depth 20 (examples/resnet20.cnn)."""

        def __init__(self):
            super().__init__()
            self.conv0 = ConvBn(3, 16, 3)
            self.blocks, cin = nn.ModuleList(), 16
            for stage, width in enumerate((16, 32, 64)):
                for block in range(3):
                    stride = 2 if stage and not block else 1
                    b = nn.Module()
                    b.conv1, b.conv2 = ConvBn(cin, width, 3, stride), ConvBn(width, width, 3)
                    b.projection = ConvBn(cin, width, 1, stride, bn=False) if stride == 2 else None
                    self.blocks.append(b)
                    cin = width
            self.classifier = nn.Linear(64, 10)

        def forward(self, x):
            x = F.relu(self.conv0(x))
            for b in self.blocks:
                r = b.conv2(F.relu(b.conv1(x)))
                x = F.relu((b.projection(x) if b.projection is not None else x) + r)
            return self.classifier(x.mean(dim=(2, 3)))

        def loss(self, logits, labels):           # Keras' l2(1e-4) on every conv kernel
            l2 = sum((m.weight * m.weight).sum() for m in self.modules() if isinstance(m, nn.Conv2d))
            return F.cross_entropy(logits, labels) + 1e-4 * l2

    class MobileNet(nn.Module):
        """MobileNet v1 width 0.25 at 96x96, 5 classes (examples/mobilenet.cnn)."""

        def __init__(self):
            super().__init__()
            self.conv1, layers, cin = ConvBn(3, 8, 3, 2, bias=False), [], 8
            for stride, cout in spec.MOBILENET_BLOCKS:
                layers += [ConvBn(cin, cin, 3, stride, bias=False, depthwise=True), ConvBn(cin, cout, 1, bias=False)]
                cin = cout
            self.layers = nn.ModuleList(layers)
            self.classifier = nn.Linear(256, 5)

        def forward(self, x):
            x = F.relu6(self.conv1(x))
            for layer in self.layers:
                x = F.relu6(layer(x))
            return self.classifier(F.dropout(x.mean(dim=(2, 3)), 0.001, self.training))

        def loss(self, logits, labels):
            return F.cross_entropy(logits, labels)

    return {"mnist": Mnist, "flowers": Flowers, "textcnn": TextCnn, "resnet20": ResNet20,
            "mobilenet": MobileNet}[name]()


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
    elif len(info["shape"]) == 3:                 # images: NHWC data seen as NCHW
        x = torch.rand(batch, *info["shape"], generator=g).permute(0, 3, 1, 2)
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
