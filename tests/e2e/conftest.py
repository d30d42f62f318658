"""End-to-end fixtures: specs compiled once per session into a temp build directory."""
from pathlib import Path

import numpy as np
import pytest

import cnnc

ROOT = Path(__file__).resolve().parents[2]
EXAMPLES = ROOT / "examples"

TINY_FLOWERS = """
# flowers.cnn in miniature: 16x16 RGB, 3 classes, the same kinds of layers.
model tinyflowers
input x: f32[N, 16, 16, 3]
input y: i32[N]
scope "layer1-conv1" {
  param weight: f32[3, 3, 3, 8] = truncated_normal(stddev=0.1)
  param bias: f32[8] = constant(0.0)
  relu1 = relu(bias_add(conv2d(x, weight, strides=[1, 1, 1, 1], padding="SAME"), bias))
  pool1 = max_pool(relu1, ksize=[1, 2, 2, 1], strides=[1, 2, 2, 1], padding="VALID")
}
scope "layer2-fc1" {
  param weight: f32[8*8*8, 16] = truncated_normal(stddev=0.1)
  param bias: f32[16] = constant(0.1)
  fc1 = dropout(relu(matmul(reshape(pool1, [-1, 8*8*8]), weight) + bias), rate=0.25)
  reg = l2_loss(weight)
}
scope "layer3-fc2" {
  param weight: f32[16, 3] = truncated_normal(stddev=0.1)
  param bias: f32[3] = constant(0.1)
  logits = matmul(fc1, weight) + bias
}
output logits
loss = reduce_mean(sparse_softmax_cross_entropy_with_logits(labels=y, logits=logits)) + 0.0001 * reg
metric accuracy = reduce_mean(cast(equal(argmax(logits, 1), y), f32))
optimizer = adam(lr=0.01)
"""


@pytest.fixture(scope="session")
def build_dir(tmp_path_factory):
    return tmp_path_factory.mktemp("generated")


@pytest.fixture(scope="session")
def compiled(build_dir):
    """compiled(name_or_text) -> module, each spec built once per session."""
    cache = {}

    def get(spec: str):
        if spec not in cache:
            is_text = "\n" in spec
            cache[spec] = cnnc.compile(spec if is_text else str(EXAMPLES / f"{spec}.cnn"), out_dir=build_dir)
        return cache[spec]
    return get


@pytest.fixture
def image_folder(tmp_path):
    """Three visually distinct classes of small PNGs (reddish, greenish, bluish), 12 each."""
    from PIL import Image
    rng = np.random.default_rng(0)
    root = tmp_path / "photos"
    for c, name in enumerate(["red", "green", "blue"]):
        (root / name).mkdir(parents=True)
        for i in range(12):
            img = rng.integers(0, 60, (20, 20, 3))
            img[..., c] += 150
            Image.fromarray(img.astype(np.uint8)).save(root / name / f"{i}.png")
    return root
