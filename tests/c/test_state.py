"""State and batch norm, compiled: the `batch_norm` layer against a plain NumPy reference of
Keras 3 BatchNormalization (tests/reference/numpy_ops.py), the rule that only train_step
changes state (and not when it skips a step), Model.state, and checkpoints with state.

Tolerances: float32 kernels against float64 references over a few hundred values: the
forward outputs are O(1) and agree to ~1e-6; gradients are read back from one sgd step with
lr = 1 (params - new params), so they carry the rounding of the params themselves (~1e-7
relative of O(1) values); 1e-4 leaves a wide margin and still catches any wrong term."""
from __future__ import annotations

import numpy as np
import pytest

from cnnc import pipeline
from cnnc.runtime.checkpoint import CheckpointMismatch
from cnnc.runtime.model import NonFiniteError
from tests.reference import numpy_ops as ref

BN = """model bn_layer
input x: f32[N, 5, 4, 3]
input t: f32[N, 5, 4, 6]
scope mix {
  param w: f32[3, 6] = glorot_uniform()
  h = reshape(matmul(reshape(x, [-1, 3]), w), [-1, 5, 4, 6])
}
y = batch_norm(h, momentum=0.9, name="bn")
output y
loss = reduce_sum(y * t)
optimizer = sgd(lr=1.0)
"""


@pytest.fixture(scope="module")
def bn(out_root):
    return pipeline.compile(BN, out_root / "bn_layer")


def _batch(seed, n=3):
    rng = np.random.default_rng(seed)
    return (rng.standard_normal((n, 5, 4, 3)).astype(np.float32) * 2 + 1,
            rng.standard_normal((n, 5, 4, 6)).astype(np.float32))


def test_batch_norm_declares_keras_weights(bn):
    m = bn.Model(seed=0)
    assert sorted(m.params) == ["bn/beta", "bn/gamma", "mix/w"]
    assert sorted(m.state) == ["bn/moving_mean", "bn/moving_variance"]
    np.testing.assert_array_equal(m.params["bn/gamma"], np.ones(6, np.float32))
    np.testing.assert_array_equal(m.params["bn/beta"], np.zeros(6, np.float32))
    np.testing.assert_array_equal(m.state["bn/moving_mean"], np.zeros(6, np.float32))
    np.testing.assert_array_equal(m.state["bn/moving_variance"], np.ones(6, np.float32))
    assert all(m.state[k].dtype == np.float32 and m.state[k].flags.writeable for k in m.state)
    assert not any(k.endswith(("moving_mean", "moving_variance")) for k in m.optimizer_state)


def test_train_step_uses_batch_statistics_and_updates_moving_ones(bn):
    m = bn.Model(seed=0)
    rng = np.random.default_rng(5)
    m.params["bn/gamma"][...] = rng.uniform(0.5, 1.5, 6)
    m.params["bn/beta"][...] = rng.standard_normal(6)
    m.state["bn/moving_mean"][...] = rng.standard_normal(6)
    m.state["bn/moving_variance"][...] = rng.uniform(0.5, 2.0, 6)
    w, gamma, beta = (m.params[k].astype(np.float64) for k in ("mix/w", "bn/gamma", "bn/beta"))
    mm, mv = (m.state[k].astype(np.float64) for k in ("bn/moving_mean", "bn/moving_variance"))
    x, t = _batch(1)
    h = (x.reshape(-1, 3).astype(np.float64) @ w).reshape(3, 5, 4, 6)
    y, mean, var = ref.keras_batch_norm_train(h, gamma, beta)
    dh, dgamma, dbeta = ref.keras_batch_norm_train_vjp(h, gamma, beta, t)
    dw = x.reshape(-1, 3).astype(np.float64).T @ dh.reshape(-1, 6)

    out = m.train_step(x=x, t=t)
    np.testing.assert_allclose(out["loss"], (y * t).sum(), rtol=1e-4)
    np.testing.assert_allclose(w - m.params["mix/w"], dw, rtol=1e-4, atol=1e-4)      # lr = 1
    np.testing.assert_allclose(gamma - m.params["bn/gamma"], dgamma, rtol=1e-4, atol=1e-4)
    np.testing.assert_allclose(beta - m.params["bn/beta"], dbeta, rtol=1e-4, atol=1e-4)
    np.testing.assert_allclose(m.state["bn/moving_mean"], ref.keras_moving_update(mm, mean, 0.9), rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(m.state["bn/moving_variance"], ref.keras_moving_update(mv, var, 0.9), rtol=1e-5)


def test_inference_paths_use_moving_statistics_and_change_nothing(bn):
    m = bn.Model(seed=0)
    x, t = _batch(2)
    m.train_step(x=x, t=t)
    m.train_step(x=x * 0.5, t=t)
    state = {k: v.copy() for k, v in m.state.items()}
    params = {k: v.copy() for k, v in m.params.items()}
    h = (x.reshape(-1, 3).astype(np.float64) @ params["mix/w"]).reshape(3, 5, 4, 6)
    want = ref.batch_normalization(h, state["bn/moving_mean"], state["bn/moving_variance"],
                                   params["bn/beta"], params["bn/gamma"], 1e-3)
    np.testing.assert_allclose(m.forward(x=x)["y"], want, rtol=1e-4, atol=1e-5)
    np.testing.assert_allclose(m.eval_step(x=x, t=t)["loss"], (want * t).sum(), rtol=1e-4)
    np.testing.assert_allclose(m.predict(x, batch_size=2)["y"], want, rtol=1e-4, atol=1e-5)
    grads = m.backward({"x": x}, {"y": t})
    assert set(grads) == {"mix/w", "bn/gamma", "bn/beta", "x", "t"}      # no state, no gradient
    # inference mode: y is affine in gamma, so dL/dgamma = sum(t * xhat) with the moving statistics
    xhat = (h - state["bn/moving_mean"]) / np.sqrt(state["bn/moving_variance"] + 1e-3)
    np.testing.assert_allclose(grads["bn/gamma"], (t * xhat).sum(axis=(0, 1, 2)), rtol=1e-4, atol=1e-4)
    for k in state:
        np.testing.assert_array_equal(m.state[k], state[k], err_msg=k)
    for k in params:
        np.testing.assert_array_equal(m.params[k], params[k], err_msg=k)


def test_writes_to_state_reach_the_model(bn):
    m = bn.Model(seed=0)
    x, _ = _batch(3)
    before = m.forward(x=x)["y"]
    m.state["bn/moving_variance"][...] = 4.0
    after = m.forward(x=x)["y"]
    np.testing.assert_allclose(after, before * np.sqrt((1 + 1e-3) / (4 + 1e-3)), rtol=1e-5, atol=1e-6)


def test_a_skipped_step_leaves_state_unchanged(bn):
    m = bn.Model(seed=0)
    x, t = _batch(4)
    m.train_step(x=x, t=t)
    state = {k: v.copy() for k, v in m.state.items()}
    bad = x.copy()
    bad[0, 0, 0, 0] = np.nan
    with pytest.raises(NonFiniteError):
        m.train_step(x=bad, t=t)
    t_bad = t.copy()
    t_bad[1, 2, 3, 4] = np.inf          # a finite forward pass, a non-finite loss
    with pytest.raises(NonFiniteError):
        m.train_step(x=x, t=t_bad)
    for k in state:
        np.testing.assert_array_equal(m.state[k], state[k], err_msg=k)
    assert m.step == 1


def test_fit_runs_the_updates(bn):
    m = bn.Model(seed=0)
    x, t = _batch(6, n=8)
    m.fit({"x": x, "t": t}, epochs=1, batch_size=4, verbose=0)
    assert m.step == 2
    assert not np.allclose(m.state["bn/moving_mean"], 0.0)


def test_checkpoints_carry_state(bn, tmp_path):
    m = bn.Model(seed=0)
    x, t = _batch(7)
    m.train_step(x=x, t=t)
    m.save(tmp_path / "a.npz")
    other = bn.Model(seed=1)
    other.load(tmp_path / "a.npz")
    for k in m.state:
        np.testing.assert_array_equal(other.state[k], m.state[k], err_msg=k)
    np.testing.assert_array_equal(other.forward(x=x)["y"], m.forward(x=x)["y"])


STATELESS = """model bn_layer
input x: f32[N, 5, 4, 3]
input t: f32[N, 5, 4, 6]
scope mix {
  param w: f32[3, 6] = glorot_uniform()
  h = reshape(matmul(reshape(x, [-1, 3]), w), [-1, 5, 4, 6])
}
scope bn {
  param gamma: f32[6] = ones()
  param beta: f32[6] = zeros()
  y = batch_normalization(h, 0.0, 1.0, beta, gamma, 0.001)
}
output y
loss = reduce_sum(y * t)
optimizer = sgd(lr=1.0)
"""


def test_a_checkpoint_without_state_is_a_clear_mismatch(bn, out_root, tmp_path):
    """A checkpoint written by a model without state (as every checkpoint before state
    existed) still loads into such a model; into a model with state it names what is missing."""
    plain = pipeline.compile(STATELESS, out_root / "bn_stateless").Model(seed=3)
    plain.save(tmp_path / "plain.npz")
    again = pipeline.compile(STATELESS, out_root / "bn_stateless").Model(seed=4)
    again.load(tmp_path / "plain.npz")
    np.testing.assert_array_equal(again.params["mix/w"], plain.params["mix/w"])
    m = bn.Model(seed=0)
    with pytest.raises(CheckpointMismatch) as e:
        m.load(tmp_path / "plain.npz")
    assert "state bn/moving_mean: missing from checkpoint" in str(e.value)
    with pytest.warns(UserWarning, match="state bn/moving_variance"):
        m.load(tmp_path / "plain.npz", strict=False)
    np.testing.assert_array_equal(m.params["mix/w"], plain.params["mix/w"])
    m.save(tmp_path / "stateful.npz")
    with pytest.raises(CheckpointMismatch, match="state bn/moving_mean: unexpected in checkpoint"):
        again.load(tmp_path / "stateful.npz")


def test_check_counts_state_as_non_trainable():
    from cnnc.compiler import summary
    text = summary.render(pipeline.check(BN), "bn_layer.cnn")
    assert "trainable params: 30 " in text              # 3*6 + 6 + 6
    assert "non-trainable params: 12 (state, 48 B); total params: 42" in text
