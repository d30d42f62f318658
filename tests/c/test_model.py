"""A compiled model end to end: params, forward/backward against the reference, gradient
checks, optimizer updates against TF's rules, dropout, input validation, batch sizes."""
from __future__ import annotations

import numpy as np
import pytest

from cnnc.compiler.ir import Optimizer
from cnnc.runtime.model import InputError
from tests.reference import numpy_ops as ref

from .conftest import assert_close, batch, build_once, small_cnn, small_cnn_reference

OPTIMIZERS = {
    "sgd": Optimizer("sgd", (("lr", 0.1),)),
    "momentum": Optimizer("momentum", (("lr", 0.05), ("momentum", 0.9))),
    "adam": Optimizer("adam", (("lr", 0.01), ("beta1", 0.9), ("beta2", 0.999), ("epsilon", 1e-7))),
}


@pytest.fixture(scope="module")
def mod(out_root):
    return build_once("small_sgd", small_cnn("small", OPTIMIZERS["sgd"]), out_root)


@pytest.fixture(scope="module")
def smooth(out_root):
    """tanh instead of relu: smooth, for finite differences."""
    return build_once("smooth", small_cnn("smooth", OPTIMIZERS["sgd"], act="tanh", label="f32"), out_root)


# --------------------------------------------------------------------------- params


def test_params_are_seeded_and_follow_their_initializers(mod):
    a, b, c = mod.Model(seed=3), mod.Model(seed=3), mod.Model(seed=4)
    for k in a.params:
        np.testing.assert_array_equal(a.params[k], b.params[k])
        assert a.params[k].dtype == np.float32
    assert not np.array_equal(a.params["conv/w"], c.params["conv/w"])
    assert np.abs(a.params["conv/w"]).max() <= 2 * 0.3            # truncated_normal(stddev=0.3)
    limit = np.sqrt(6 / (36 + 3))                                  # glorot_uniform, fan 36 -> 3
    assert np.abs(a.params["fc/w"]).max() <= limit and np.abs(a.params["fc/w"]).max() > 0.5 * limit
    np.testing.assert_array_equal(a.params["conv/b"], np.full(4, 0.1, np.float32))
    np.testing.assert_array_equal(a.params["fc/b"], np.zeros(3, np.float32))


def test_param_writes_reach_c(mod):
    m = mod.Model()
    m.params["fc/w"][...] = 0.0
    m.params["fc/b"][...] = [1.0, 2.0, 3.0]
    out = m.forward(x=batch(2)["x"])["logits"]
    np.testing.assert_array_equal(out, np.tile(np.float32([1, 2, 3]), (2, 1)))


def test_protocol_attributes(mod):
    m = mod.Model()
    assert m.name == "small" and m.fingerprint == mod.manifest["fingerprint"]
    assert m.inputs == {"x": ("f32", (None, 6, 6, 2)), "y": ("i32", (None,))}
    assert m.feature_inputs == ["x"] and m.label_inputs == ["y"]
    assert m.outputs == ["logits"] and m.metric_names == ["accuracy"]
    assert m.step == 0 and m.lr == pytest.approx(0.1)
    assert set(mod.manifest["memory"]) >= {"params_bytes", "workspace"}


# --------------------------------------------------------------------------- forward / backward


def test_forward_matches_reference(mod):
    m = mod.Model(seed=1)
    x = batch(5)["x"]
    assert_close(m.forward(x=x)["logits"], small_cnn_reference(m.params, x))


def test_backward_matches_reference_vjp(mod):
    m = mod.Model(seed=1)
    p = {k: v.astype(np.float64) for k, v in m.params.items()}
    x = batch(4)["x"]
    d = np.random.default_rng(5).standard_normal((4, 3)).astype(np.float32)
    got = m.backward({"x": x}, {"logits": d})
    # the reference chain, layer by layer
    c = ref.bias_add(ref.conv2d(x, p["conv/w"], (1, 1), "SAME"), p["conv/b"])
    r = ref.relu(c)
    pooled = ref.avg_pool(r, (2, 2), (2, 2), "VALID")
    h = pooled.reshape(4, 36)
    dh, dfc = ref.matmul_vjp(h, p["fc/w"], d)
    dpool = ref.avg_pool_vjp(r, dh.reshape(pooled.shape), (2, 2), (2, 2), "VALID")
    dc = ref.relu_vjp(c, dpool)
    dx, dw = ref.conv2d_vjp(x, p["conv/w"], dc, (1, 1), "SAME")
    for name, want in [("fc/w", dfc), ("fc/b", d.sum(0)), ("conv/b", dc.sum((0, 1, 2))), ("conv/w", dw), ("x", dx)]:
        assert_close(got[name], want, what=name)
    assert set(got) == {"conv/w", "conv/b", "fc/w", "fc/b", "x"}


def test_train_gradient_matches_finite_differences(smooth):
    """float32 C loss, central differences with eps 1e-2 on 6 coordinates of each param.

    Truncation error is O(eps^2 * L''') ~ 1e-4 and float32 rounding of a loss ~1 gives
    ~1e-7/eps = 1e-5, so 2% relative plus 2e-3 absolute is loose enough and still catches
    any wrong or missing term (those are O(|grad|))."""
    m = smooth.Model(seed=2)
    data = batch(4, seed=1, label="f32")
    m.lr = 0.0                                    # train_step computes the gradient, updates nothing
    m.train_step(**data)
    grads = {k: v.copy() for k, v in m.grads.items()}
    rng = np.random.default_rng(0)
    eps = 1e-2
    for name, w in m.params.items():
        for idx in [tuple(rng.integers(0, s) for s in w.shape) for _ in range(6)]:
            saved = w[idx]
            w[idx] = saved + eps
            up = m.eval_step(**data)["loss"]
            w[idx] = saved - eps
            down = m.eval_step(**data)["loss"]
            w[idx] = saved
            fd = (up - down) / (2 * eps)
            assert abs(fd - grads[name][idx]) <= 2e-3 + 2e-2 * abs(fd), (name, idx, fd, grads[name][idx])


def test_backward_zero_for_inputs_outputs_do_not_use(smooth):
    m = smooth.Model()
    g = m.backward({"x": batch(2)["x"]}, {"logits": np.ones((2, 3), np.float32)})
    np.testing.assert_array_equal(g["y"], np.zeros((2, 3), np.float32))   # y only feeds the loss


# --------------------------------------------------------------------------- optimizers


def _numpy_update(kind, hyper, w, g, state, t, lr):
    """TF's update rules in float64."""
    w, g = w.astype(np.float64), g.astype(np.float64)
    if kind == "sgd":
        return w - lr * g, state
    if kind == "momentum":
        a = hyper["momentum"] * state[0] + g
        return w - lr * a, [a]
    b1, b2, eps = hyper["beta1"], hyper["beta2"], hyper["epsilon"]
    lr_t = lr * np.sqrt(1 - b2 ** t) / (1 - b1 ** t)
    m = b1 * state[0] + (1 - b1) * g
    v = b2 * state[1] + (1 - b2) * g * g
    return w - lr_t * m / (np.sqrt(v) + eps), [m, v]


@pytest.mark.parametrize("kind", sorted(OPTIMIZERS))
def test_optimizer_updates_follow_tf_rules(kind, out_root):
    mod = build_once(f"small_{kind}", small_cnn(f"small_{kind}", OPTIMIZERS[kind]), out_root)
    m = mod.Model(seed=0)
    hyper = dict(OPTIMIZERS[kind].hyper)
    slots = mod.manifest["optimizer"]["slots"]
    state = {k: [np.zeros(v.shape) for _ in slots] for k, v in m.params.items()}
    for step in range(1, 4):
        if step == 3:
            m.lr = hyper["lr"] / 2                 # lr is read at run time: schedules work
        before = {k: v.copy() for k, v in m.params.items()}
        m.train_step(**batch(6, seed=step))
        assert m.step == step
        for k in m.params:
            want, state[k] = _numpy_update(kind, hyper, before[k], m.grads[k], state[k], step, m.lr)
            # one float32 rounding per operation on values ~1: 1e-6 relative, plus Adam's
            # division by sqrt(v) for tiny v, hence the absolute term
            np.testing.assert_allclose(m.params[k], want, rtol=1e-5, atol=1e-6, err_msg=f"{kind} {k} step {step}")
            for s, slot in enumerate(slots):
                np.testing.assert_allclose(m.optimizer_state[f"{slot}/{k}"], state[k][s], rtol=1e-5, atol=1e-7)


def test_training_reduces_loss(mod):
    m = mod.Model(seed=0)
    data = batch(32, seed=9)
    first = m.eval_step(**data)["loss"]
    for _ in range(30):
        m.train_step(**data)
    after = m.eval_step(**data)
    assert after["loss"] < 0.7 * first
    assert 0.0 <= after["accuracy"] <= 1.0


# --------------------------------------------------------------------------- dropout


@pytest.fixture(scope="module")
def dropped(out_root):
    return build_once("dropped", small_cnn("dropped", OPTIMIZERS["sgd"], dropout=0.5), out_root)


def test_dropout_off_outside_training_and_reproducible_inside(dropped):
    a, b = dropped.Model(seed=1), dropped.Model(seed=1)
    data = batch(8)
    no_drop = dropped.Model(seed=1)
    out1 = a.forward(x=data["x"])["logits"]
    np.testing.assert_array_equal(out1, a.forward(x=data["x"])["logits"])        # forward: no dropout
    assert a.eval_step(**data)["loss"] == a.eval_step(**data)["loss"]
    losses_a = [a.train_step(**data)["loss"] for _ in range(3)]
    losses_b = [b.train_step(**data)["loss"] for _ in range(3)]
    assert losses_a == losses_b                                                   # same seed, same masks
    for k in a.params:
        np.testing.assert_array_equal(a.params[k], b.params[k])
    assert losses_a[0] != pytest.approx(no_drop.eval_step(**data)["loss"], abs=1e-6)   # dropout was on
    c = dropped.Model(seed=1)
    c.reseed(7)
    assert c.train_step(**data)["loss"] != losses_a[0]
    c.rng_state = a.rng_state
    assert c.rng_state.tolist() == a.rng_state.tolist()


# --------------------------------------------------------------------------- inputs


def test_input_errors_name_the_input_and_its_type(mod):
    m = mod.Model()
    x, y = batch(4)["x"], batch(4)["y"]
    cases = [
        (dict(), "missing input `x`: it expects f32[N, 6, 6, 2]"),
        (dict(x=x, z=x), "has no input `z`"),
        (dict(x=x.astype(np.float64)), "input `x` expects f32[N, 6, 6, 2]; got float64 array of shape (4, 6, 6, 2)"),
        (dict(x=x[:, :, :5]), "input `x` expects f32[N, 6, 6, 2]; got float32 array of shape (4, 6, 5, 2)"),
        (dict(x=x.reshape(4, 72)), "input `x` expects f32[N, 6, 6, 2]"),
        (dict(x=x, y=y.astype(np.int64)), "input `y` expects i32[N]; got int64"),
        (dict(x=x, y=y[:3]), "input `y` expects i32[N] with N = 4"),
    ]
    for kwargs, message in cases:
        with pytest.raises(InputError) as e:
            m.forward(**kwargs)
        assert message in str(e.value)
        assert isinstance(e.value, ValueError)
    with pytest.raises(InputError, match="input `y`"):
        m.train_step(x=x)
    with pytest.raises(InputError, match="output gradient `logits` expects f32\\[N, 3\\]"):
        m.backward({"x": x}, {"logits": np.ones((4, 4), np.float32)})
    with pytest.raises(InputError, match="astype"):
        m.forward(x=x.astype(np.float64))


def test_non_contiguous_inputs_are_copied(mod):
    m = mod.Model(seed=2)
    big = np.random.default_rng(0).standard_normal((4, 6, 12, 2)).astype(np.float32)
    view = big[:, :, ::2]                              # strided, not contiguous
    assert not view.flags.c_contiguous
    np.testing.assert_array_equal(m.forward(x=view)["logits"], m.forward(x=view.copy())["logits"])
    fortran = np.asfortranarray(big[:, :, :6])
    np.testing.assert_array_equal(m.forward(x=fortran)["logits"], m.forward(x=big[:, :, :6].copy())["logits"])


@pytest.mark.parametrize("n", [1, 3, 32])
def test_any_batch_size_agrees_with_single_examples(mod, n):
    m = mod.Model(seed=4)
    data = batch(n, seed=n)
    whole = m.forward(x=data["x"])["logits"]
    single = np.concatenate([m.forward(x=data["x"][i:i + 1])["logits"] for i in range(n)])
    # same per-example arithmetic; only vector/scalar loop splits can differ (FMA contraction)
    np.testing.assert_allclose(whole, single, rtol=1e-6, atol=1e-6)
    grads = m.backward({"x": data["x"]}, {"logits": np.ones((n, 3), np.float32)})
    per = [m.backward({"x": data["x"][i:i + 1]}, {"logits": np.ones((1, 3), np.float32)}) for i in range(n)]
    assert_close(grads["fc/w"], sum(p["fc/w"].astype(np.float64) for p in per), rtol=1e-5)
    np.testing.assert_allclose(grads["x"], np.concatenate([p["x"] for p in per]), rtol=1e-6, atol=1e-6)


# --------------------------------------------------------------------------- runtime delegation


def test_fit_evaluate_predict_save_load(mod, tmp_path):
    m = mod.Model(seed=0)
    data = batch(40, seed=3)
    hist = m.fit(data["x"], data["y"], epochs=2, batch_size=16, verbose=0)
    assert m.step == 6
    assert len(hist.history["loss"]) == 2 if hasattr(hist, "history") else True
    ev = m.evaluate(data["x"], data["y"], batch_size=16)
    assert set(ev) == {"loss", "accuracy"}
    pred = m.predict(data["x"], batch_size=16)
    np.testing.assert_allclose(pred["logits"], m.forward(x=data["x"])["logits"], rtol=1e-6, atol=1e-6)
    path = tmp_path / "ckpt.npz"
    m.save(path)
    other = mod.Model(seed=99)
    other.load(path)
    for k in m.params:
        np.testing.assert_array_equal(other.params[k], m.params[k])
    assert other.step == m.step
