"""Inference batch norm folded into the conv before it (compiler/fold.py): forward and
eval_step of the folded build equal the unfolded build's within 1e-5, train_step and backward
are untouched (the same bits), and the folded forward runs no per-pixel batch-norm pass.

Tolerance: folding reorders float32 rounding ((x*w)*inv against x*(w*inv), summed over at
most 3*3*8 taps of O(1) values), a few ulps of O(1) outputs: 1e-5 absolute and relative."""
from __future__ import annotations

import re

import numpy as np
import pytest

from cnnc import pipeline

SPEC = """model foldme
input x: f32[N, 12, 12, 3]
input y: i32[N]
stack h = x {
  "c1": conv(8, 3, strides=2)
  "bn1": batch_norm()
  relu()
}
param dw: f32[3, 3, 8, 2] = glorot_uniform()
d = depthwise_conv2d(h, dw, strides=1, padding="SAME") |> batch_norm(name="bn2") |> relu6()
e = d |> conv(4, 1, use_bias=false, name="pw") |> batch_norm(name="bn3", center=false)
shared = conv(e, 4, 3, name="c4")
f = batch_norm(shared, name="bn4") + shared       # the conv's output is read twice: no fold
logits = dense(reduce_mean(f, axis=[1, 2]), 3)
output e
output logits
loss = reduce_mean(sparse_softmax_cross_entropy_with_logits(labels=y, logits=logits))
optimizer = sgd(lr=0.1)
"""


@pytest.fixture(scope="module")
def builds(out_root):
    g = pipeline.check(SPEC)
    return {fold: pipeline.generate(g, SPEC, out_root / f"fold_{fold}", fold=fold) for fold in (True, False)}


def _models(builds):
    """Both builds' models with the same random params and moving statistics."""
    rng = np.random.default_rng(0)
    a, b = builds[True].Model(seed=0), builds[False].Model(seed=0)
    for k, v in a.params.items():
        v[...] = rng.standard_normal(v.shape) * (0.5 if "weight" in k or k == "dw" else 1.0)
    for k, v in a.state.items():
        v[...] = rng.uniform(0.5, 2.0, v.shape) if k.endswith("variance") else rng.standard_normal(v.shape)
    for k in a.params:
        b.params[k][...] = a.params[k]
    for k in a.state:
        b.state[k][...] = a.state[k]
    return a, b


def _batch(seed=1):
    rng = np.random.default_rng(seed)
    return rng.standard_normal((4, 12, 12, 3)).astype(np.float32), rng.integers(0, 3, 4).astype(np.int32)


def test_folded_inference_equals_unfolded(builds):
    folded, plain = _models(builds)
    x, y = _batch()
    got, want = folded.forward(x=x), plain.forward(x=x)
    for k in want:
        np.testing.assert_allclose(got[k], want[k], rtol=1e-5, atol=1e-5, err_msg=k)
    assert not np.array_equal(got["e"], want["e"])         # it did fold: the rounding differs
    np.testing.assert_allclose(folded.eval_step(x=x, y=y)["loss"], plain.eval_step(x=x, y=y)["loss"],
                               rtol=1e-5)


def test_training_and_backward_are_not_folded(builds):
    folded, plain = _models(builds)
    x, y = _batch(2)
    ga, gb = folded.backward({"x": x}, {"e": np.ones((4, 6, 6, 4), np.float32)}), \
        plain.backward({"x": x}, {"e": np.ones((4, 6, 6, 4), np.float32)})
    for k in gb:
        np.testing.assert_array_equal(ga[k], gb[k], err_msg=k)
    for _ in range(2):
        assert folded.train_step(x=x, y=y) == plain.train_step(x=x, y=y)
    for k in plain.params:
        np.testing.assert_array_equal(folded.params[k], plain.params[k], err_msg=k)
    for k in plain.state:
        np.testing.assert_array_equal(folded.state[k], plain.state[k], err_msg=k)


def _pixel_scalings(values):
    """Nodes among those `values` depend on that multiply a batch-sized tensor by a
    per-channel vector: the inference batch norm's per-pixel pass."""
    from cnnc.compiler.lower import closure
    return [n for n in closure(values) if n.op == "mul" and n.out.type.sym_axes
            and any(v.type.rank == 1 for v in n.inputs)]


def test_folded_forward_has_no_per_pixel_batch_norm():
    """Unfolded, each of the four batch norms scales every pixel; folded, three of them are a
    scaled filter and a bias of their conv (bn4 stays: its conv's output is read twice)."""
    from cnnc.compiler import autodiff
    from cnnc.compiler.fold import fold_batch_norms
    g = autodiff.grad_graph(pipeline.check(SPEC)).graph
    outs = list(g.outputs.values())
    assert len(_pixel_scalings(outs)) == 4
    new = fold_batch_norms(g, outs)
    folded = [new.get(v.id, v) for v in outs]
    assert len(_pixel_scalings(folded)) == 1
    convs = [n for n in g.nodes if n.out.name.endswith("_folded.conv2d") or
             n.out.name.endswith("_folded.depthwise_conv2d")]
    assert len(convs) == 3 and all(n.inputs[1].node.op == "mul" for n in convs)    # scaled filters
