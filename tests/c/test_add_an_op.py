"""docs/adding-an-op.md is enough: an op registered from this file alone (shape rule, vjp,
kernel) is parsed, checked, differentiated, compiled to C, run, and matches NumPy forward and
backward. Nothing else in the repository names it; it is unregistered afterwards, so the
tests that walk the op table (docs, autodiff coverage) never see it."""
from __future__ import annotations

import numpy as np
import pytest

from cnnc import pipeline
from cnnc.compiler.kernel import c_float, elementwise
from cnnc.compiler.ops import REGISTRY, Arg, OpDef, OpError, register
from cnnc.compiler.ops.common import need_float

from .conftest import assert_close

SPEC = """\
model add_an_op
input x: f32[N, 3, 5]
param w: f32[5] = constant(0.5)
output y = leaky_relu_test(x * w, alpha=0.1)
"""


def _alpha(v):
    if not 0 <= v < 1:
        raise OpError(f"`alpha` must be in [0, 1), got {v}", arg="alpha", code="attr")
    return float(v)


def _shape(ins, attrs):
    need_float(ins[0], "features")
    return ins[0]


def _grad_shape(ins, attrs):
    return ins[1]


def _vjp(b, node, dout):
    return (b.op("leaky_relu_test_grad", node.inputs[0], dout, alpha=node.attrs["alpha"]),)


def _kernel(node):
    return elementwise(f"({{1}} > 0.0f ? {{1}} : {c_float(node.attrs['alpha'])} * {{1}})")(node)


def _grad_kernel(node):
    return elementwise(f"({{1}} > 0.0f ? {{2}} : {c_float(node.attrs['alpha'])} * {{2}})")(node)


OPS = (
    OpDef("leaky_relu_test", (Arg("features", aliases=("x",)), Arg("alpha", "float", 0.2, convert=_alpha)),
          _shape, _vjp, kernel=_kernel, doc="x where x > 0, else alpha * x"),
    OpDef("leaky_relu_test_grad", (Arg("features"), Arg("dout"), Arg("alpha", "float")), _grad_shape,
          public=False, kernel=_grad_kernel, doc="dout where x > 0, else alpha * dout"),
)


@pytest.fixture
def leaky_relu_test():
    for op in OPS:
        register(op)
    try:
        yield
    finally:
        for op in OPS:
            del REGISTRY[op.name]


def leaky_relu(x, alpha):
    x = x.astype(np.float64)
    return np.where(x > 0, x, alpha * x)


def leaky_relu_vjp(x, dout, alpha):
    return np.where(x.astype(np.float64) > 0, dout.astype(np.float64), alpha * dout.astype(np.float64))


def test_a_registered_op_works_end_to_end(leaky_relu_test, out_root):
    mod = pipeline.compile(SPEC, out_dir=out_root / "add_an_op", filename="add_an_op.cnn")
    model = mod.Model()
    rng = np.random.default_rng(3)
    x = rng.standard_normal((4, 3, 5)).astype(np.float32)
    dy = rng.standard_normal((4, 3, 5)).astype(np.float32)
    w = np.full(5, 0.5)
    xw = x.astype(np.float64) * w
    assert_close(model.forward(x=x)["y"], leaky_relu(xw, 0.1), what="forward")
    grads = model.backward({"x": x}, {"y": dy})
    dxw = leaky_relu_vjp(xw, dy, 0.1)
    assert_close(grads["x"], dxw * w, what="dx")
    assert_close(grads["w"], (dxw * x).sum(axis=(0, 1)), what="dw")


def test_a_registered_op_is_checked_like_any_other(leaky_relu_test):
    source = pipeline.load_source(SPEC.replace("alpha=0.1", "alpha=1.5"), filename="bad.cnn")
    [d] = pipeline.check_source(source).diagnostics
    assert d.message == "`leaky_relu_test`: `alpha` must be in [0, 1), got 1.5"


def test_the_op_is_gone_afterwards():
    assert "leaky_relu_test" not in REGISTRY and "leaky_relu_test_grad" not in REGISTRY
