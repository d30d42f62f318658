"""Shapes of the benchmark models and their analytical FLOP counts.

The counts are multiply-accumulates (MACs) of the convolutions and matmuls
per example, derived from the layer shapes below; FLOPs = 2 * MACs.
Element-wise ops, pooling and the loss are ignored (they are a few percent).
A training step is counted as 3x the forward pass (forward, grad wrt inputs,
grad wrt weights).
"""

# Keras' CIFAR-10 ResNet-20 v1 (examples/resnet20.cnn): a 3x3 conv, three stages of three
# residual blocks (two 3x3 convs each; a 1x1 stride-2 projection where a stage halves the size).
def _resnet20():
    layers, size, cin = [("conv", 32, 32, 3, 3, 3, 16)], 32, 16
    for stage, width in enumerate((16, 32, 64)):
        for block in range(3):
            if stage and not block:
                size //= 2
                layers.append(("conv", size, size, 1, 1, cin, width))      # projection
            layers += [("conv", size, size, 3, 3, cin, width), ("conv", size, size, 3, 3, width, width)]
            cin = width
    return layers + [("dense", 64, 10)]


# MobileNet v1 width 0.25 at 96x96 (examples/mobilenet.cnn): a 3x3 stride-2 conv, then 13
# blocks of a 3x3 depthwise conv (stride s) and a 1x1 conv to c_out channels.
MOBILENET_BLOCKS = ((1, 16), (2, 32), (1, 32), (2, 64), (1, 64), (2, 128), (1, 128), (1, 128),
                    (1, 128), (1, 128), (1, 128), (2, 256), (1, 256))


def _mobilenet():
    layers, size, cin = [("conv", 48, 48, 3, 3, 3, 8)], 48, 8
    for stride, cout in MOBILENET_BLOCKS:
        size //= stride
        layers += [("dwconv", size, size, 3, 3, cin), ("conv", size, size, 1, 1, cin, cout)]
        cin = cout
    return layers + [("dense", 256, 5)]


# Layer lists: ("conv", out_h, out_w, k_h, k_w, c_in, c_out), ("dwconv", out_h, out_w, k_h, k_w,
# channels) or ("dense", n_in, n_out).
LAYERS = {
    "mnist": [
        ("conv", 28, 28, 3, 3, 1, 32),
        ("conv", 14, 14, 3, 3, 32, 64),
        ("dense", 3136, 10),
    ],
    "flowers": [
        ("conv", 100, 100, 5, 5, 3, 32),
        ("conv", 50, 50, 5, 5, 32, 64),
        ("conv", 25, 25, 3, 3, 64, 128),
        ("conv", 12, 12, 3, 3, 128, 128),
        ("dense", 4608, 1024),
        ("dense", 1024, 512),
        ("dense", 512, 5),
    ],
    "textcnn": [
        ("conv", 81, 1, 20, 50, 1, 10),
        ("conv", 22, 1, 20, 10, 1, 10),
        ("dense", 10, 15),
    ],
    "resnet20": _resnet20(),
    "mobilenet": _mobilenet(),
}

# Input description, used to make synthetic batches.
INPUTS = {
    "mnist": {"shape": (784,), "classes": 10, "labels": "onehot", "optimizer": "sgd"},
    "flowers": {"shape": (100, 100, 3), "classes": 5, "labels": "sparse", "optimizer": "sgd"},
    "textcnn": {"shape": (100,), "classes": 15, "labels": "sparse", "optimizer": "adam",
                "vocab": 10000, "embed": 50},
    # the rows only: ResNet-20 trains at batch 128; MobileNet trains at 32 and serves one
    "resnet20": {"shape": (32, 32, 3), "classes": 10, "labels": "sparse", "optimizer": "adam",
                 "rows": ("train_b128",)},
    "mobilenet": {"shape": (96, 96, 3), "classes": 5, "labels": "sparse", "optimizer": "adam",
                  "rows": ("train_b32", "latency_b1")},
}

MODELS = tuple(LAYERS)
LEARNING_RATE = 0.001


def layer_macs(layer):
    if layer[0] == "conv":
        _, oh, ow, kh, kw, cin, cout = layer
        return oh * ow * kh * kw * cin * cout
    if layer[0] == "dwconv":
        _, oh, ow, kh, kw, c = layer
        return oh * ow * kh * kw * c
    _, n_in, n_out = layer
    return n_in * n_out


def forward_flops(model):
    """FLOPs of one forward pass of one example."""
    return 2 * sum(layer_macs(layer) for layer in LAYERS[model])


def train_flops(model):
    """FLOPs of one training step per example (~3x forward)."""
    return 3 * forward_flops(model)


if __name__ == "__main__":
    for name in MODELS:
        print(f"{name:8s} forward {forward_flops(name) / 1e6:9.2f} MFLOP/example, "
              f"train {train_flops(name) / 1e6:9.2f} MFLOP/example")
