"""Autodiff without a C compiler: for each differentiable op, the gradient graph is well typed
(verify.verify) and, run by the float64 NumPy interpreter (interp.py), matches central finite
differences; then the same end to end for every example model, along a random direction.

Tolerances: float64 central differences with eps=1e-6 have truncation error ~eps^2 and
rounding error ~1e-16/eps ~ 1e-10 relative, so rtol=1e-5 / atol=1e-7 leave a wide margin
while still catching any wrong factor or transposition. Inputs are random normals, so ties
in max/relu/minimum lie far (>> eps) from the sample with probability ~1."""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from cnnc import pipeline
from cnnc.compiler import autodiff, modes, verify
from tests.reference.finite_diff import numeric_vjp

from .interp import Interpreter, concrete

EXAMPLES = Path(__file__).resolve().parents[2] / "examples"
N = 2


def build(text: str, output: str = "y"):
    """Check a spec, then add backward nodes for output `output` seeded by a new input `dout`;
    the loss is the one a training step computes (batch statistics, modes.split)."""
    g = modes.split(pipeline.check(text))
    y = g.train_loss if output == "loss" else g.outputs[output]
    dout = g.new_value("dout", y.type, "input")
    g.inputs.append(dout)
    wrt = [v for v in g.params + g.inputs if v.type.dtype == "f32" and v is not dout]
    grads = autodiff.grad(g, {y.id: dout}, wrt, "backward")
    verify.verify(g)
    return g, y, dout, wrt, grads


def feeds_for(g, rng, special=None):
    special = special or {}
    out = {}
    for v in g.state:                   # moving statistics: a variance must be positive
        out[v.name] = positive(rng, concrete(v.type.shape, N))
    for v in g.inputs + g.params:
        shape = concrete(v.type.shape, N)
        if v.name in special:
            out[v.name] = special[v.name](rng, shape)
        elif v.type.dtype == "i32":
            out[v.name] = rng.integers(0, 3, size=shape)
        else:
            out[v.name] = rng.standard_normal(shape)
    return out


def check_against_fd(text, special=None, seed=0, rtol=1e-5, atol=1e-7):
    g, y, dout, wrt, grads = build(text)
    for v in wrt:
        assert v.id in grads, f"no gradient for {v.name}"
        assert grads[v.id].type == v.type, f"d{v.name} is {grads[v.id].type}, {v.name} is {v.type}"
    rng = np.random.default_rng(seed)
    feeds = feeds_for(g, rng, special)
    interp = Interpreter(g, N, seed)
    env = interp.run(feeds)

    def forward(*xs):
        f = dict(feeds)
        f.update({v.name: x for v, x in zip(wrt, xs)})
        return interp.run(f)[y.id]

    numeric = numeric_vjp(forward, [feeds[v.name] for v in wrt], feeds["dout"], eps=1e-6)
    for v, num in zip(wrt, numeric):
        ana = env[grads[v.id].id]
        np.testing.assert_allclose(ana, num, rtol=rtol, atol=atol, err_msg=f"gradient of {v.name}")


def positive(rng, shape):
    return np.abs(rng.standard_normal(shape)) + 0.5


def distribution(rng, shape):
    e = np.exp(rng.standard_normal(shape))
    return e / e.sum(axis=-1, keepdims=True)


CASES = {
    "add_broadcast": ("input a: f32[N, 3, 4]\ninput b: f32[4]\noutput y = a + b", {}),
    "sub_broadcast": ("input a: f32[N, 3, 1]\ninput b: f32[3, 4]\noutput y = a - b", {}),
    "mul_broadcast": ("input a: f32[N, 1, 4]\ninput b: f32[N, 3, 1]\noutput y = a * b", {}),
    "div": ("input a: f32[N, 3]\ninput b: f32[3]\noutput y = a / b", {"b": positive}),
    "scalar_literals": ("input a: f32[N, 3]\noutput y = 2.0 * a - 1 / (a * a + 1.0)", {}),
    "neg": ("input a: f32[N, 3]\noutput y = -a", {}),
    "minimum": ("input a: f32[N, 4]\ninput b: f32[4]\noutput y = minimum(a, b)", {}),
    "maximum": ("input a: f32[N, 4]\ninput b: f32[N, 4]\noutput y = maximum(a, b)", {}),
    "relu": ("input a: f32[N, 5]\noutput y = relu(a)", {}),
    "sigmoid": ("input a: f32[N, 5]\noutput y = sigmoid(a)", {}),
    "tanh": ("input a: f32[N, 5]\noutput y = tanh(a)", {}),
    "leaky_relu": ("input a: f32[N, 5]\noutput y = leaky_relu(a, alpha=0.3)", {}),
    "leaky_relu_default": ("input a: f32[N, 5]\noutput y = leaky_relu(a) * a", {}),
    "relu6": ("input a: f32[N, 5]\noutput y = relu6(4.0 * a)", {}),
    "elu": ("input a: f32[N, 5]\noutput y = elu(a)", {}),
    "silu": ("input a: f32[N, 5]\noutput y = silu(a)", {}),
    "square": ("input a: f32[N, 5]\noutput y = square(a)", {}),
    "sqrt": ("input a: f32[N, 5]\noutput y = sqrt(a)", {"a": positive}),
    "rsqrt": ("input a: f32[N, 5]\noutput y = rsqrt(a)", {"a": positive}),
    "exp": ("input a: f32[N, 5]\noutput y = exp(a)", {}),
    "log": ("input a: f32[N, 5]\noutput y = log(a)", {"a": positive}),
    "abs": ("input a: f32[N, 5]\noutput y = abs(a)", {}),
    "batch_normalization": ("input a: f32[N, 3, 4]\ninput m: f32[4]\ninput v: f32[4]\ninput o: f32[4]\n"
                            "input s: f32[4]\noutput y = batch_normalization(a, m, v, o, s, 0.001)", {"v": positive}),
    "batch_normalization_scalars": ("input a: f32[N, 3]\ninput v: f32[1, 3]\n"
                                    "output y = batch_normalization(a, 0.5, v, 0.0, 2.0, variance_epsilon=0.1)",
                                    {"v": positive}),
    # training-mode batch norm: the gradient flows through the batch statistics
    "batch_statistics": ("input a: f32[N, 3, 4]\ninput s: f32[4]\nm = reduce_mean(a, axis=[0, 1])\n"
                         "v = reduce_mean(square(a - m), axis=[0, 1])\n"
                         "output y = batch_normalization(a, m, v, 0.1, s, 0.001)", {}),
    "pad_constant": ("input a: f32[N, 3, 4]\noutput y = pad(a, [[0, 0], [2, 1], [0, 3]], constant_values=2.0)", {}),
    "pad_reflect": ("input a: f32[N, 3, 4]\noutput y = pad(a, [[0, 0], [2, 1], [3, 3]], mode=\"REFLECT\")", {}),
    "pad_symmetric": ("input a: f32[N, 3, 4]\noutput y = pad(a, [[0, 0], [3, 2], [1, 4]], \"symmetric\")", {}),
    "concat_last": ("input a: f32[N, 2, 3]\ninput b: f32[N, 2, 1]\noutput y = concat([a, b, a * b], axis=-1)", {}),
    "concat_middle": ("input a: f32[N, 2, 3]\ninput b: f32[N, 4, 3]\noutput y = concat(values=[b, a], axis=1)", {}),
    "cast_f32": ("input a: f32[N, 5]\noutput y = cast(a, f32) * a", {}),
    "conv2d_same_s2": ("input x: f32[N, 5, 6, 2]\nparam w: f32[3, 2, 2, 3] = zeros()\n"
                       "output y = conv2d(x, w, strides=2, padding=\"SAME\")", {}),
    "conv2d_valid": ("input x: f32[N, 5, 5, 2]\nparam w: f32[3, 3, 2, 2] = zeros()\n"
                     "output y = conv2d(x, w, strides=[1, 1, 2, 1], padding=\"VALID\")", {}),
    "conv2d_transpose": ("input x: f32[N, 3, 3, 2]\nparam w: f32[3, 3, 4, 2] = zeros()\n"
                         "output y = conv2d_transpose(x, w, output_shape=[-1, 6, 5, 4], strides=2, "
                         "padding=\"SAME\")", {}),
    "conv2d_transpose_valid": ("input x: f32[N, 2, 2, 1]\nparam w: f32[2, 3, 2, 1] = zeros()\n"
                               "output y = conv2d_transpose(x, w, output_shape=[-1, 4, 5, 2], "
                               "strides=2, padding=\"VALID\")", {}),
    "conv2d_same_dilated": ("input x: f32[N, 6, 5, 2]\nparam w: f32[3, 2, 2, 3] = zeros()\n"
                            "output y = conv2d(x, w, 1, \"SAME\", dilations=[2, 3])", {}),
    "conv2d_valid_dilated": ("input x: f32[N, 7, 6, 2]\nparam w: f32[2, 3, 2, 2] = zeros()\n"
                             "output y = conv2d(x, w, [1, 1, 1, 1], \"VALID\", dilations=[1, 3, 2, 1])", {}),
    "conv2d_transpose_dilated": ("input x: f32[N, 3, 4, 2]\nparam w: f32[2, 2, 3, 2] = zeros()\n"
                                 "output y = conv2d_transpose(x, w, output_shape=[-1, 5, 5, 3], strides=1, "
                                 "padding=\"VALID\", dilations=[2, 1])", {}),
    "max_pool_same": ("input x: f32[N, 5, 5, 2]\noutput y = max_pool(x, 3, 2, \"SAME\")", {}),
    "max_pool_valid": ("input x: f32[N, 4, 6, 1]\noutput y = max_pool(x, [1, 2, 3, 1], [1, 2, 3, 1], \"VALID\")", {}),
    "avg_pool_same": ("input x: f32[N, 5, 4, 2]\noutput y = avg_pool(x, 3, 2, padding=\"SAME\")", {}),
    "reduce_sum_keepdims": ("input x: f32[N, 3, 4]\noutput y = reduce_sum(x, axis=[1, -1], keepdims=true)", {}),
    "reduce_mean_all": ("input x: f32[N, 3]\noutput y = reduce_mean(x)", {}),
    "reduce_max": ("input x: f32[N, 3, 4]\noutput y = reduce_max(x, axis=-1)", {}),
    "softmax": ("input x: f32[N, 5]\noutput y = softmax(x)", {}),
    "log_softmax_axis0": ("input x: f32[N, 5]\noutput y = log_softmax(x, axis=0)", {}),
    "reshape": ("input x: f32[N, 2, 6]\noutput y = reshape(x, [-1, 3, 4]) * reshape(x, [-1, 3, 4])", {}),
    "transpose": ("input x: f32[N, 2, 3]\noutput y = transpose(x, [2, 0, 1])", {}),
    "expand_squeeze": ("input x: f32[N, 3]\noutput y = expand_dims(squeeze(expand_dims(x, 1), 1), 1) * expand_dims(x, -1)", {}),
    "bias_add": ("input x: f32[N, 2, 3]\nparam b: f32[3] = zeros()\noutput y = bias_add(x, b)", {}),
    "matmul": ("input x: f32[N, 3]\nparam w: f32[3, 4] = zeros()\noutput y = matmul(x, w)", {}),
    "matmul_ta": ("param x: f32[3, 5] = zeros()\nparam w: f32[3, 4] = zeros()\n"
                  "output y = matmul(x, w, transpose_a=true)", {}),
    "matmul_tb": ("input x: f32[N, 3]\nparam w: f32[4, 3] = zeros()\n"
                  "output y = matmul(x, w, transpose_b=true)", {}),
    "matmul_tab": ("param a: f32[3, 2] = zeros()\nparam w: f32[4, 3] = zeros()\ninput x: f32[N, 4]\n"
                   "output y = matmul(matmul(a, w, transpose_a=true, transpose_b=true), x, transpose_b=true)", {}),
    "dropout_rate0": ("input x: f32[N, 6]\noutput y = dropout(x, 0.0)", {}),
    "dropout_fixed_mask": ("input x: f32[N, 6]\noutput y = dropout(x, rate=0.5)", {}),
    "embedding": ("input ids: i32[N, 3]\nparam table: f32[4, 2] = zeros()\n"
                  "output y = embedding_lookup(table, ids)", {}),
    "l2_loss": ("input x: f32[N, 3]\noutput y = l2_loss(x)", {}),
    "softmax_xent": ("input labels: f32[N, 4]\ninput logits: f32[N, 4]\n"
                     "output y = softmax_cross_entropy_with_logits(labels, logits)", {"labels": distribution}),
    "sparse_softmax_xent": ("input labels: i32[N]\ninput logits: f32[N, 3]\n"
                            "output y = sparse_softmax_cross_entropy_with_logits(labels=labels, logits=logits)", {}),
    "one_hot_times": ("input ids: i32[N]\ninput x: f32[N, 3]\noutput y = one_hot(ids, 3) * x", {}),
    "fan_out": ("input x: f32[N, 3]\noutput y = relu(x) * x + sigmoid(x)", {}),
    "depthwise_conv2d_same_s2": ("input x: f32[N, 5, 6, 2]\nparam w: f32[3, 2, 2, 3] = zeros()\n"
                                 "output y = depthwise_conv2d(x, w, strides=2, padding=\"SAME\")", {}),
    "depthwise_conv2d_valid_dilated": ("input x: f32[N, 6, 7, 3]\nparam w: f32[2, 3, 3, 1] = zeros()\n"
                                       "output y = depthwise_conv2d(x, w, [1, 1, 1, 1], \"VALID\", dilations=[2, 2])", {}),
    "depthwise_conv2d_same_dilated": ("input x: f32[N, 5, 5, 2]\nparam w: f32[3, 2, 2, 2] = zeros()\n"
                                      "output y = depthwise_conv2d(x, w, 1, \"SAME\", dilations=[1, 2, 3, 1])", {}),
    "resize_bilinear_up": ("input x: f32[N, 3, 4, 2]\noutput y = resize(x, [7, 5])", {}),
    "resize_bilinear_down": ("input x: f32[N, 7, 6, 2]\noutput y = resize(x, size=[3, 4], method=\"bilinear\")", {}),
    "resize_nearest": ("input x: f32[N, 5, 4, 2]\noutput y = resize(x, [3, 9], \"nearest\")", {}),
}


@pytest.mark.parametrize("name", sorted(CASES))
def test_op_gradient_matches_finite_differences(name):
    body, special = CASES[name]
    check_against_fd(f"model t\n{body}\n", special)


def test_every_differentiable_public_op_is_covered():
    from cnnc.compiler.ops import REGISTRY
    covered = " ".join(body for body, _ in CASES.values())
    covered += " add sub mul div neg"                       # written as + - * / and unary -
    missing = [name for name, op in REGISTRY.items()
               if op.public and (op.vjp or op.expand) and name + "(" not in covered and name not in covered.split()]
    assert not missing


# ---------------------------------------------------------------- whole examples

@pytest.mark.parametrize("path", sorted(EXAMPLES.glob("*.cnn")), ids=lambda p: p.stem)
def test_example_gradients_along_a_direction(path):
    """d/dt L(theta + t v) at t=0 by central differences equals <grad L, v>, for all params
    and f32 inputs at once (a random direction v); batch 1, dropout masks fixed."""
    g = pipeline.check(path.read_text())
    out = "loss" if g.loss is not None else next(iter(g.outputs))
    g, y, dout, wrt, grads = build(path.read_text(), out)
    for v in wrt:
        assert grads[v.id].type == v.type
    global N
    saved, N = N, 1
    try:
        rng = np.random.default_rng(1)
        feeds = feeds_for(g, rng, {"dout": lambda r, s: r.standard_normal(s)})
        for v in g.params:                                 # keep activations in a sane range
            feeds[v.name] = feeds[v.name] * 0.05
            if v.name.endswith("bias"):
                # relu(0) ties inside max_pool windows are kinks where finite differences and
                # the (valid) subgradient disagree; positive biases keep units away from 0.
                feeds[v.name] = feeds[v.name] + 1.0
        for v in g.inputs:
            if v.type.dtype == "i32":
                hi = 5 if v.name in ("y", "label") else 10
                feeds[v.name] = rng.integers(0, hi, size=feeds[v.name].shape)
            elif v.name in ("y_true",):
                feeds[v.name] = distribution(rng, feeds[v.name].shape)
        interp = Interpreter(g, 1, seed=3)
        env = interp.run(feeds)
        direction = {v.name: rng.standard_normal(feeds[v.name].shape) for v in wrt}
        analytic = sum(float(np.sum(env[grads[v.id].id] * direction[v.name])) for v in wrt)

        def objective(t):
            f = dict(feeds)
            for v in wrt:
                f[v.name] = feeds[v.name] + t * direction[v.name]
            return float(np.sum(interp.run(f)[y.id] * feeds["dout"]))
        # Max-pool windows whose top two values lie within ~eps of each other switch winner
        # under the perturbation (a kink); flowers has ~300k windows, so eps must be tiny.
        # float64 rounding then costs ~1e-16 * |L| / eps ~ 1e-7, well inside the tolerance.
        eps = 1e-8
        numeric = (objective(eps) - objective(-eps)) / (2 * eps)
    finally:
        N = saved
    assert analytic == pytest.approx(numeric, rel=1e-4, abs=1e-5)
