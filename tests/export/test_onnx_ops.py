"""Every op that can appear at inference, exported to ONNX and run by ONNX Runtime, against
Model.forward of the same spec (tests/export/zoo.cnn: one output per case) at batch 1 and 7.

Tolerance: outputs are sums of at most a few hundred float32 products of O(1) values, computed
in another order by ORT; the difference stays far below 1e-4 of the output's largest
magnitude, which is the bound (absolute, scaled by max(1, max|forward|), plus 1e-4 relative).
Integer and bool outputs must be equal."""
from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np
import pytest

from cnnc import pipeline
from cnnc.compiler import build
from cnnc.compiler.ops import public_ops

onnx = pytest.importorskip("onnx", reason="the ONNX export tests need the onnx extra: pip install -e '.[onnx]'")
ort = pytest.importorskip("onnxruntime", reason="the ONNX export tests need the onnx extra: pip install -e '.[onnx]'")
if shutil.which(build.compiler()) is None:
    pytest.skip(f"no C compiler ({build.compiler()})", allow_module_level=True)

from cnnc.compiler.onnx_export import CONVERTERS, OPSET  # noqa: E402

ZOO = Path(__file__).with_name("zoo.cnn")
OUTPUTS = list(pipeline.check(ZOO).outputs)
BATCHES = (1, 7)


def zoo_inputs(n: int, rng) -> dict:
    u = lambda *shape: rng.uniform(-2, 2, shape).astype(np.float32)  # noqa: E731
    return {
        "x": u(n, 7, 7, 3), "t": u(n, 4, 4, 4), "v": u(n, 3, 4),
        "w": (rng.uniform(0.5, 2, 4) * rng.choice([-1, 1], 4)).astype(np.float32),
        "p": rng.uniform(0.1, 3, (n, 5)).astype(np.float32),
        "i": rng.integers(-3, 4, (n, 4)).astype(np.int32), "j": rng.integers(-3, 4, (n, 4)).astype(np.int32),
        "ids": rng.integers(0, 10, (n, 6)).astype(np.int32), "hot": rng.integers(-2, 12, (n, 6)).astype(np.int32),
        "cls": rng.integers(0, 5, n).astype(np.int32), "fk": u(3, 3, 3, 4),
    }


@pytest.fixture(scope="module")
def zoo(tmp_path_factory):
    """(forward outputs, ORT outputs) per batch size, and the ONNX model."""
    tmp = tmp_path_factory.mktemp("onnx_zoo")
    model = pipeline.compile(ZOO, out_dir=tmp / "gen").Model(seed=1)
    path = model.export_onnx(tmp / "zoo.onnx")
    session = ort.InferenceSession(path, providers=["CPUExecutionProvider"])
    names = [o.name for o in session.get_outputs()]
    runs = {}
    for n in BATCHES:
        feed = zoo_inputs(n, np.random.default_rng(n))
        got = dict(zip(names, session.run(None, feed)))
        runs[n] = (model.forward(**feed), got)
    return runs, onnx.load(path)


@pytest.mark.parametrize("n", BATCHES)
@pytest.mark.parametrize("name", OUTPUTS)
def test_onnx_runtime_matches_forward(zoo, name, n):
    expected, got = zoo[0][n][0][name], zoo[0][n][1][name]
    assert got.shape == expected.shape, f"{name}: ONNX shape {got.shape}, forward {expected.shape}"
    if expected.dtype.kind in "biu":
        np.testing.assert_array_equal(got, expected.astype(got.dtype), err_msg=name)
        assert got.dtype == expected.dtype or (got.dtype == np.bool_ and expected.dtype == np.bool_)
        return
    assert got.dtype == np.float32
    scale = max(1.0, float(np.abs(expected).max(initial=0.0)))
    np.testing.assert_allclose(got, expected, rtol=1e-4, atol=1e-4 * scale, err_msg=name)


def test_every_inference_op_has_a_converter_and_the_zoo_uses_it():
    """A new op must add its entry (or be listed here as one that never reaches inference)."""
    never_at_inference = {"dropout"}          # expands to dropout_mask * x
    assert set(public_ops()) - never_at_inference <= set(CONVERTERS)
    used = {n.op for n in pipeline.check(ZOO).nodes}
    assert set(CONVERTERS) <= used, f"converters the zoo does not exercise: {set(CONVERTERS) - used}"


def test_the_file_keeps_spec_names_nhwc_and_a_symbolic_batch(zoo):
    model = zoo[1]
    assert [o.domain or "" for o in model.opset_import] == [""] and model.opset_import[0].version == OPSET
    ins = {i.name: [d.dim_param or d.dim_value for d in i.type.tensor_type.shape.dim] for i in model.graph.input}
    assert ins["x"] == ["N", 7, 7, 3] and ins["fk"] == [3, 3, 3, 4] and ins["cls"] == ["N"]
    outs = {o.name: [d.dim_param or d.dim_value for d in o.type.tensor_type.shape.dim] for o in model.graph.output}
    assert list(outs) == OUTPUTS
    assert outs["conv_same"] == ["N", 7, 7, 4] and outs["reduce_all"] == [] and outs["reshape"] == ["7*N", 21]
    ops = {n.op_type for n in model.graph.node}
    assert not ops & {"Dropout", "RandomUniformLike", "Bernoulli"}
    inits = {i.name for i in model.graph.initializer}
    assert {"b4", "table", "m1", "k3:oihw", "dk:grouped", "tk:iohw"} <= inits
    assert "k3" not in inits                  # only the NCHW copy of a conv filter is stored
    by_output = {n.output[0]: n for n in model.graph.node}
    gemm = by_output[by_output["dense"].input[0]]                         # Identity <- Gemm
    assert gemm.op_type == "Gemm" and gemm.input[2] == "b5"
    convs = [n for n in model.graph.node if n.op_type == "Conv"]
    assert sum(len(n.input) == 3 for n in convs) == 3         # conv_bias, conv_add, conv_add_fed


def test_an_op_without_a_converter_is_a_diagnostic_at_its_line(tmp_path, monkeypatch):
    from cnnc.export_cmd import write_onnx
    from cnnc.spec.diagnostics import SpecError
    text = "model a\ninput x: f32[N, 4]\nh = tanh(x)\noutput y = relu(h) * 2.0\n"
    monkeypatch.delitem(CONVERTERS, "relu")
    with pytest.raises(SpecError) as e:
        write_onnx(pipeline.check(text, filename="a.cnn"), pipeline.load_source(text, "a.cnn"), {},
                   tmp_path / "a.onnx")
    shown = str(e.value)
    assert shown.startswith("a.cnn:4:12: error: op `relu` cannot be exported to ONNX"), shown
    assert "output y = relu(h) * 2.0" in shown and "help:" in shown
    assert not (tmp_path / "a.onnx").exists()
