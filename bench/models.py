"""Shapes of the three benchmark models and their analytical FLOP counts.

The counts are multiply-accumulates (MACs) of the convolutions and matmuls
per example, derived from the layer shapes below; FLOPs = 2 * MACs.
Element-wise ops, pooling and the loss are ignored (they are a few percent).
A training step is counted as 3x the forward pass (forward, grad wrt inputs,
grad wrt weights).
"""

# Layer lists: ("conv", out_h, out_w, k_h, k_w, c_in, c_out) or ("dense", n_in, n_out).
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
}

# Input description, used to make synthetic batches.
INPUTS = {
    "mnist": {"shape": (784,), "classes": 10, "labels": "onehot", "optimizer": "sgd"},
    "flowers": {"shape": (100, 100, 3), "classes": 5, "labels": "sparse", "optimizer": "sgd"},
    "textcnn": {"shape": (100,), "classes": 15, "labels": "sparse", "optimizer": "adam",
                "vocab": 10000, "embed": 50},
}

MODELS = tuple(LAYERS)
LEARNING_RATE = 0.001


def layer_macs(layer):
    if layer[0] == "conv":
        _, oh, ow, kh, kw, cin, cout = layer
        return oh * ow * kh * kw * cin * cout
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
