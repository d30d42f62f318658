"""Epilogue fusion (compiler/fuse.py): elementwise chains after conv2d and matmul run inside
them, only where nothing else reads the skipped values, and fusing changes no bit of any
result: the same model built with fusion off must agree exactly, forward, backward and over
training steps."""
from __future__ import annotations

import numpy as np
import pytest

from cnnc import pipeline
from cnnc.compiler import build, emit

# Every chain shape the pass meets: bias_add then relu (flowers), relu then add of a bias
# (the TF MNIST tutorial), matmul * scale + bias then relu, and cases it must leave alone: a bias
# computed after the conv (c3), a conv output read twice (c5), and a conv output that is also
# a model output (raw4: left alone in forward, fused with tanh in train_step, which does not
# return it). In the gradients, relu's gradient runs inside the max-pool gradient before it.
SPEC = """
model fused
input x: f32[N, 8, 8, 3]
input y: i32[N]
param w1: f32[3, 3, 3, 16] = truncated_normal(stddev=0.3)
param b1: f32[16] = constant(0.1)
h1 = relu(bias_add(conv2d(x, w1, strides=[1, 1, 1, 1], padding="SAME"), b1))
param w2: f32[3, 3, 16, 16] = truncated_normal(stddev=0.2)
param b2: f32[16] = constant(-0.05)
raw2 = conv2d(h1, w2, strides=[1, 1, 1, 1], padding="SAME")
h2 = relu(raw2) + b2
param w3: f32[3, 3, 16, 16] = truncated_normal(stddev=0.2)
c3 = conv2d(h2, w3, strides=[1, 1, 1, 1], padding="SAME")
late = b2 * 2.0
h3 = relu(c3 + late)
param w5: f32[3, 3, 16, 16] = truncated_normal(stddev=0.2)
c5 = conv2d(h3, w5, strides=[1, 1, 1, 1], padding="SAME")
h5 = relu(c5) + sigmoid(c5)
param w4: f32[1, 1, 16, 16] = truncated_normal(stddev=0.2)
raw4 = conv2d(h5, w4, strides=[1, 1, 1, 1], padding="VALID")
h4 = tanh(raw4) * h5
r4 = relu(h4)
pooled = max_pool(r4, ksize=[1, 2, 2, 1], strides=[1, 2, 2, 1], padding="VALID")
param fw: f32[4*4*16, 10] = truncated_normal(stddev=0.1)
param fb: f32[10] = constant(0.1)
param fs: f32[10] = truncated_normal(stddev=1.0)
hidden = relu(matmul(reshape(pooled, [-1, 4*4*16]), fw) * fs + fb)
param ow: f32[10, 3] = truncated_normal(stddev=0.3)
param ob: f32[3] = constant(0.0)
logits = bias_add(matmul(hidden, ow), ob)
output logits
output raw4
loss = reduce_mean(sparse_softmax_cross_entropy_with_logits(labels=y, logits=logits))
optimizer = momentum(lr=0.05, momentum=0.9)
"""


def _build(out_root, fusion: bool):
    graph = pipeline.check(SPEC)
    files = emit.render(pipeline.lowered(graph, None, fusion=fusion), f"fusion-{fusion}")
    return build.build(files, out_root / f"fused_{fusion}")


@pytest.fixture(scope="module")
def both(out_root):
    return _build(out_root, True), _build(out_root, False)


def _epilogues(fusion=True, entry=None):
    prog = pipeline.lowered(pipeline.check(SPEC), None, fusion=fusion)
    called = None
    if entry is not None:
        called = {s.fn for e in prog.entries if e.name == entry for s in e.steps}
    return {fn.name: fn.kernel.p.epilogue for fn in prog.kernels
            if getattr(fn.kernel.p, "epilogue", ()) and (called is None or fn.name in called)}


def test_fusion_takes_legal_chains_only():
    ep = _epilogues()
    assert not _epilogues(fusion=False)
    # conv + bias_add + relu, and relu then + bias, each become one kernel
    assert ep["h1_conv2d_forward"] == ("x + vec[0][j0 + j]", "(x < 0.0f ? 0.0f : x)")
    assert ep["raw2_forward"] == ("(x < 0.0f ? 0.0f : x)", "x + vec[0][j0 + j]")
    # a multiply then an add: the epilogue must not contract them into an FMA (CNNC_EXACT), or
    # the fused result differs from the unfused in the last bit (test_fusion_changes_no_bits)
    assert ep["hidden_matmul_forward"] == ("x * vec[0][j0 + j]", "x + vec[1][j0 + j]", "(x < 0.0f ? 0.0f : x)")
    assert ep["logits_matmul_forward"] == ("x + vec[0][j0 + j]",)
    names = " ".join(ep)
    assert "h3" not in names and "c3" not in names, "`late` is computed after c3: the add cannot run inside it"
    assert "h5" not in names and "c5" not in names, "c5 is read twice: it must stay a plain conv"
    fwd = " ".join(_epilogues(entry="forward"))
    assert "raw4" not in fwd and "h4" not in fwd, "raw4 is a forward output: nothing may absorb it there"
    assert ep["raw4_conv2d_forward"] == ("tanhf(x)",), "train_step does not return raw4: tanh may fuse"
    # backward: relu_grad(r4, max_pool_grad(r4, dpooled)) is one kernel, r4 read per element
    assert ep["dpooled"] == ("(vec[0][i] > 0.0f ? x : 0.0f)",)


def test_fused_kernels_say_what_they_fuse(both):
    src = (build.Path(both[0].__file__).parent / "model.c").read_text()
    assert "h1 = relu(bias_add(conv2d(x, w1), b1))" in src
    assert "fused: bias_add, relu applied to each finished block of the conv2d" in src


def _batch(n, seed):
    rng = np.random.default_rng(seed)
    return dict(x=rng.standard_normal((n, 8, 8, 3)).astype(np.float32),
                y=rng.integers(0, 3, n).astype(np.int32))


@pytest.mark.parametrize("n", [1, 5, 40])
def test_fusion_changes_no_bits(both, n):
    fused, plain = (mod.Model(seed=3) for mod in both)
    b = _batch(n, n)
    f1, f2 = fused.forward(x=b["x"]), plain.forward(x=b["x"])
    for k in f1:
        np.testing.assert_array_equal(f1[k], f2[k], err_msg=k)
    douts = {k: np.random.default_rng(7).standard_normal(v.shape).astype(np.float32) for k, v in f1.items()}
    g1, g2 = fused.backward({"x": b["x"]}, douts), plain.backward({"x": b["x"]}, douts)
    for k in g1:
        np.testing.assert_array_equal(g1[k], g2[k], err_msg=k)
    for step in range(3):
        s = _batch(n, 100 + step)
        r1, r2 = fused.train_step(**s), plain.train_step(**s)
        assert r1 == r2
    for k, v in fused.params.items():
        np.testing.assert_array_equal(v, plain.params[k], err_msg=k)
