"""Optional oracle: the batch_norm layer against Keras 3's BatchNormalization on TensorFlow.

Runs only where tensorflow is installed (it is never a dependency); otherwise it is skipped
and says so. One training call (batch statistics, gradients through them, moving-average
update) and one inference call (moving statistics), with the same weights. Tolerance: float32
over a few hundred values, 1e-4 relative to the largest."""
import numpy as np
import pytest

tf = pytest.importorskip("tensorflow", reason="tensorflow not installed: the Keras oracle is optional")

SPEC = """model bn_oracle
input x: f32[N, 4, 5, 3]
input t: f32[N, 4, 5, 3]
y = batch_norm(x, momentum=0.9, epsilon=0.01, name="bn")
output y
loss = reduce_sum(y * t)
optimizer = sgd(lr=1.0)
"""


def _rel(a, b):
    return float(np.abs(np.asarray(a) - np.asarray(b)).max() / (np.abs(np.asarray(b)).max() + 1e-12))


def test_batch_norm_matches_keras(tmp_path):
    import cnnc
    model = cnnc.compile(SPEC, out_dir=tmp_path).Model(seed=0)
    rng = np.random.default_rng(0)
    x = (rng.standard_normal((2, 4, 5, 3)) * 3 + 1).astype(np.float32)
    t = rng.standard_normal((2, 4, 5, 3)).astype(np.float32)
    gamma, beta = rng.uniform(0.5, 1.5, 3).astype(np.float32), rng.standard_normal(3).astype(np.float32)
    model.params["bn/gamma"][...], model.params["bn/beta"][...] = gamma, beta
    layer = tf.keras.layers.BatchNormalization(momentum=0.9, epsilon=0.01)
    layer.build(x.shape)
    layer.set_weights([gamma, beta, np.zeros(3, np.float32), np.ones(3, np.float32)])
    xt = tf.constant(x)
    with tf.GradientTape() as tape:
        tape.watch(xt)
        y = layer(xt, training=True)
        loss = tf.reduce_sum(y * t)
    dgamma, dbeta = tape.gradient(loss, [layer.gamma, layer.beta])
    ours = model.train_step(x=x, t=t)
    assert _rel(ours["loss"], loss.numpy()) < 1e-4
    assert _rel(gamma - model.params["bn/gamma"], dgamma.numpy()) < 1e-4        # lr = 1
    assert _rel(beta - model.params["bn/beta"], dbeta.numpy()) < 1e-4
    assert _rel(model.state["bn/moving_mean"], layer.moving_mean.numpy()) < 1e-4
    assert _rel(model.state["bn/moving_variance"], layer.moving_variance.numpy()) < 1e-4
    layer.set_weights([model.params["bn/gamma"], model.params["bn/beta"],
                       model.state["bn/moving_mean"], model.state["bn/moving_variance"]])
    assert _rel(model.forward(x=x)["y"], layer(xt, training=False).numpy()) < 1e-4
