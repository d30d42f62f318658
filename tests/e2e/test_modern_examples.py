"""examples/resnet20.cnn and examples/mobilenet.cnn: their parameter counts against the Keras
models they transcribe (counted here by arithmetic from the Keras architectures, in plain
Python), and a few training steps each on random data (the models are checked, compiled and
trained; learning itself is tested on small models elsewhere).

The builds use -O1 (CNNC_CFLAGS): the C is the same, and a 20-layer model compiles in a
quarter of the -O3 time."""
from __future__ import annotations

import numpy as np
import pytest

from cnnc import pipeline
from cnnc.compiler import summary

from .conftest import EXAMPLES


def conv_params(k, c_in, c_out, bias=True):
    return k * k * c_in * c_out + (c_out if bias else 0)


def keras_resnet_v1_counts(depth=20, classes=10):
    """(trainable, non-trainable) of the Keras CIFAR-10 example's resnet_v1: resnet_layer is
    Conv2D (with bias) + BatchNormalization (gamma, beta trainable; moving mean and variance
    not); blocks of two resnet_layers, a 1x1 projection (conv only) where a stage starts with
    stride 2; Dense(classes) on the pooled features."""
    blocks = (depth - 2) // 6
    trainable = conv_params(3, 3, 16) + 2 * 16
    fixed = 2 * 16
    c_in, filters = 16, 16
    for stage in range(3):
        for block in range(blocks):
            trainable += conv_params(3, c_in, filters) + conv_params(3, filters, filters) + 2 * (2 * filters)
            fixed += 2 * (2 * filters)
            if stage > 0 and block == 0:
                trainable += conv_params(1, c_in, filters)
            c_in = filters
        filters *= 2
    trainable += c_in * classes + classes
    return trainable, fixed


def keras_mobilenet_v1_counts(alpha=0.25, classes=5):
    """(trainable, non-trainable) of Keras' MobileNet(alpha) without its top, plus a
    Dense(classes) on the pooled features: convs without bias, each followed by a
    BatchNormalization."""
    filters = [(64, 1), (128, 2), (128, 1), (256, 2), (256, 1), (512, 2)] + [(512, 1)] * 5 + \
              [(1024, 2), (1024, 1)]
    c = int(32 * alpha)
    trainable, fixed = conv_params(3, 3, c, bias=False) + 2 * c, 2 * c
    for f, _ in filters:
        p = int(f * alpha)
        trainable += 9 * c + 2 * c + c * p + 2 * p          # depthwise 3x3, BN, pointwise 1x1, BN
        fixed += 2 * c + 2 * p
        c = p
    return trainable + c * classes + classes, fixed


def test_keras_resnet20_counts_by_arithmetic():
    """The figures Keras' model.summary() prints for resnet_v1(depth=20)."""
    assert keras_resnet_v1_counts() == (273_066, 1_376)
    assert sum(keras_resnet_v1_counts()) == 274_442


def test_keras_mobilenet_counts_by_arithmetic():
    """Keras' MobileNet(alpha=0.25, include_top=False) has 218,544 params, 5,472 of them
    non-trainable; the 5-way dense head adds 256 * 5 + 5."""
    trainable, fixed = keras_mobilenet_v1_counts()
    assert (trainable - (256 * 5 + 5), fixed) == (213_072, 5_472)


@pytest.mark.parametrize("name,counts", [("resnet20", keras_resnet_v1_counts()),
                                         ("mobilenet", keras_mobilenet_v1_counts())])
def test_check_reports_the_keras_counts(name, counts):
    g = pipeline.check(EXAMPLES / f"{name}.cnn")
    assert (summary.param_count(g), summary.state_count(g)) == counts
    text = summary.render(g, f"{name}.cnn")
    trainable, fixed = counts
    assert f"trainable params: {trainable:,} " in text
    assert f"non-trainable params: {fixed:,} (state" in text
    assert f"total params: {trainable + fixed:,}" in text


@pytest.fixture(scope="module")
def built(tmp_path_factory):
    out = tmp_path_factory.mktemp("modern_examples")
    cache = {}

    def get(name):
        if name not in cache:
            with pytest.MonkeyPatch.context() as mp:
                mp.setenv("CNNC_CFLAGS", "-O1")
                cache[name] = pipeline.compile(EXAMPLES / f"{name}.cnn", out / name)
        return cache[name]
    return get


@pytest.mark.parametrize("name,size,classes", [("resnet20", 32, 10), ("mobilenet", 96, 5)])
def test_example_trains_a_few_steps(built, name, size, classes):
    model = built(name).Model(seed=0)
    rng = np.random.default_rng(0)
    x = rng.uniform(0, 1, (8, size, size, 3)).astype(np.float32)
    y = rng.integers(0, classes, 8).astype(np.int32)
    state = {k: v.copy() for k, v in model.state.items()}
    history = model.fit({"x": x, "y": y}, epochs=3, batch_size=4, verbose=0)
    losses = history.history["loss"]
    assert model.step == 6 and all(np.isfinite(losses))
    assert losses[-1] < losses[0]                     # 8 examples: it starts to memorise them
    moved = [k for k in state if not np.array_equal(model.state[k], state[k])]
    assert sorted(moved) == sorted(state)             # every moving statistic was updated
    probs = model.predict(x, batch_size=4)["probabilities"]
    assert probs.shape == (8, classes)
    np.testing.assert_allclose(probs.sum(axis=1), 1.0, rtol=1e-5)
