"""Tier "needs cc": shared fixtures for tests that build generated C.

Many one-op cases are packed into one model (a "zoo": each case has its own inputs and its
own output), so a whole family of op tests costs one C build. Every distinct model is built
once per session into a session temp dir."""
from __future__ import annotations

import shutil
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

import numpy as np
import pytest

from cnnc import pipeline
from cnnc.compiler import build
from cnnc.compiler.builder import Builder
from cnnc.compiler.ir import Graph, Init, Optimizer
from cnnc.compiler.types import Sym, TensorType

REPO = Path(__file__).resolve().parents[2]
VECTORS = REPO.parent / "shared" / "vectors"
N = Sym()

if shutil.which(build.compiler()) is None:
    pytest.skip(f"no C compiler ({build.compiler()})", allow_module_level=True)


_BUILT: dict[str, object] = {}
_ROOT: list[Path] = []


@pytest.fixture(scope="session")
def out_root(tmp_path_factory) -> Path:
    if not _ROOT:
        _ROOT.append(tmp_path_factory.mktemp("cnnc_c"))
    return _ROOT[0]


def build_once(key: str, graph: Graph, out_root: Path, source: str = ""):
    """Build `graph` (once per session per key) and return its package module."""
    if key not in _BUILT:
        _BUILT[key] = pipeline.generate(graph, source, out_root / key)
    return _BUILT[key]


# --------------------------------------------------------------------------- graphs by hand


def new_graph(name: str) -> tuple[Graph, Builder]:
    g = Graph(name, source_name=f"{name}.cnn")
    return g, Builder(g)


def add_input(g: Graph, name: str, shape, dtype="f32"):
    v = g.new_value(name, TensorType(dtype, tuple(shape)), "input")
    g.inputs.append(v)
    return v


def add_param(g: Graph, name: str, shape, init=Init("zeros")):
    v = g.new_value(name, TensorType("f32", tuple(shape)), "param")
    g.params.append(v)
    g.inits[v.id] = init
    return v


def normal(rng, shape):
    return rng.standard_normal(shape).astype(np.float32)


def away_from_zero(rng, shape):
    """|x| in [0.5, 2]: for divisors."""
    return (rng.uniform(0.5, 2.0, shape) * rng.choice([-1, 1], shape)).astype(np.float32)


def ints(lo, hi):
    return lambda rng, shape: rng.integers(lo, hi, shape).astype(np.int32)


@dataclass
class Case:
    """One op applied to fresh inputs; `ref(*arrays)` is the expected output and
    `vjp(*arrays, dout)` the expected gradient of each f32 operand (a tuple, None for others)."""

    id: str
    op: str
    operands: list                       # (shape with N allowed, dtype, generator)
    attrs: dict
    ref: Callable
    vjp: Callable | None = None
    rtol: float = 1e-4
    shapes_n: int = 2                    # the batch size N used for data


def concrete(shape, n):
    return tuple(n * d.coeff if isinstance(d, Sym) else d for d in shape)


def zoo_graph(name: str, cases: list[Case]) -> Graph:
    g, b = new_graph(name)
    for i, c in enumerate(cases):
        ins = [add_input(g, f"c{i}_{j}", shape, dtype) for j, (shape, dtype, _) in enumerate(c.operands)]
        b.name_hint = f"c{i}"
        g.outputs[f"c{i}"] = b.op(c.op, *ins, **c.attrs)
    return g


@dataclass
class ZooRun:
    module: object
    arrays: dict = field(default_factory=dict)     # case id -> list of operand arrays
    outs: dict = field(default_factory=dict)       # case id -> output
    douts: dict = field(default_factory=dict)
    grads: dict = field(default_factory=dict)      # case id -> list of operand grads (None if not f32)


def run_zoo(name: str, cases: list[Case], out_root: Path, n: int = 2, seed: int = 0) -> ZooRun:
    g = zoo_graph(name, cases)
    mod = build_once(name, g, out_root)
    model = mod.Model()
    rng = np.random.default_rng(seed)
    inputs, run = {}, ZooRun(mod)
    for i, c in enumerate(cases):
        arrs = [gen(rng, concrete(shape, n)) for shape, _, gen in c.operands]
        run.arrays[c.id] = arrs
        inputs.update({f"c{i}_{j}": a for j, a in enumerate(arrs)})
    outs = model.forward(**inputs)
    douts = {}
    for i, c in enumerate(cases):
        run.outs[c.id] = outs[f"c{i}"]
        if outs[f"c{i}"].dtype == np.float32:
            douts[f"c{i}"] = run.douts[c.id] = normal(rng, outs[f"c{i}"].shape)
    grads = model.backward(inputs, douts)
    for i, c in enumerate(cases):
        run.grads[c.id] = [grads.get(f"c{i}_{j}") for j in range(len(c.operands))]
    return run


def assert_close(actual, expected, rtol=1e-4, what=""):
    """float32 results against a float64 reference.

    Each output is a sum of at most a few hundred products of O(1) values; float32 rounding
    (eps 6e-8) accumulates to well under 1e-4 of the largest magnitude involved, so the
    absolute tolerance scales with max|expected| and the relative one covers the rest."""
    expected = np.asarray(expected, dtype=np.float64)
    actual = np.asarray(actual)
    assert actual.shape == expected.shape, f"{what}: shape {actual.shape} != {expected.shape}"
    scale = max(1.0, float(np.abs(expected).max(initial=0.0)))
    np.testing.assert_allclose(actual.astype(np.float64), expected, rtol=rtol, atol=rtol * scale,
                               err_msg=what)


def check_case(run: ZooRun, case: Case) -> None:
    arrs = run.arrays[case.id]
    expected = case.ref(*arrs)
    out = run.outs[case.id]
    if out.dtype == np.float32:
        assert_close(out, expected, case.rtol, f"{case.id} forward")
    else:
        np.testing.assert_array_equal(out, np.asarray(expected).astype(out.dtype), err_msg=f"{case.id} forward")
    if case.vjp is None:
        return
    want = case.vjp(*arrs, run.douts[case.id])
    want = want if isinstance(want, tuple) else (want,)
    for j, (w, got) in enumerate(zip(want, run.grads[case.id])):
        if w is None:
            continue
        assert got is not None, f"{case.id}: no gradient for operand {j}"
        assert_close(got, w, case.rtol, f"{case.id} gradient of operand {j}")


# --------------------------------------------------------------------------- a small CNN


def small_cnn(name="small", optimizer=Optimizer("sgd", (("lr", 0.1),)), dropout=None,
              label="i32", act="relu") -> Graph:
    """x f32[N, 6, 6, 2] -> conv 3x3 SAME -> act -> avg_pool 2 -> [N, 36] -> matmul -> logits [N, 3]."""
    g, b = new_graph(name)
    x = add_input(g, "x", (N, 6, 6, 2))
    y = add_input(g, "y", (N,) if label == "i32" else (N, 3), label)
    w = add_param(g, "conv/w", (3, 3, 2, 4), Init("truncated_normal", (("stddev", 0.3),)))
    bias = add_param(g, "conv/b", (4,), Init("constant", (("value", 0.1),)))
    fc = add_param(g, "fc/w", (36, 3), Init("glorot_uniform"))
    fcb = add_param(g, "fc/b", (3,), Init("zeros"))
    b.name_hint = "conv/h"
    h = b.op(act, b.op("bias_add", b.op("conv2d", x, w, strides=(1, 1), padding="SAME"), bias))
    b.name_hint = "pool"
    h = b.op("avg_pool", h, ksize=(2, 2), strides=(2, 2), padding="VALID")
    b.name_hint = "flat"
    h = b.op("reshape", h, shape=(-1, 36))
    if dropout:
        b.name_hint = "drop"
        h = b.op("dropout", h, rate=dropout)
    b.name_hint = "logits"
    logits = b.op("bias_add", b.op("matmul", h, fc), fcb)
    g.outputs["logits"] = logits
    b.name_hint = "loss"
    xent = "sparse_softmax_cross_entropy_with_logits" if label == "i32" else "softmax_cross_entropy_with_logits"
    g.loss = b.op("reduce_mean", b.op(xent, y, logits))
    b.name_hint = "accuracy"
    ids = y if label == "i32" else b.op("argmax", y, axis=1)
    g.metrics["accuracy"] = b.op("reduce_mean", b.op("cast", b.op("equal", b.op("argmax", logits, axis=1), ids),
                                                     dtype="f32"))
    g.optimizer = optimizer
    return g


def small_cnn_reference(params: dict, x: np.ndarray, act="relu") -> np.ndarray:
    """The logits of small_cnn, by the NumPy reference ops."""
    from tests.reference import numpy_ops as ref
    h = ref.bias_add(ref.conv2d(x, params["conv/w"], (1, 1), "SAME"), params["conv/b"])
    h = getattr(ref, act)(h)
    h = ref.avg_pool(h, (2, 2), (2, 2), "VALID").reshape(len(x), 36)
    return ref.bias_add(ref.matmul(h, params["fc/w"]), params["fc/b"])


def batch(n: int, seed: int = 0, label="i32"):
    rng = np.random.default_rng(seed)
    x = rng.standard_normal((n, 6, 6, 2)).astype(np.float32)
    ids = rng.integers(0, 3, n).astype(np.int32)
    return {"x": x, "y": ids if label == "i32" else np.eye(3, dtype=np.float32)[ids]}
