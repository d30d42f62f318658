"""Every example in examples/, after a few training steps, exported to ONNX: ONNX Runtime's
outputs equal Model.forward within 1e-4 (relative to the output's largest magnitude) at batch
1 and 7. And the README's path: `cnnc train` then `cnnc export --onnx` from the command line."""
from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np
import pytest

from cnnc import cli, pipeline
from cnnc.compiler import build

onnx = pytest.importorskip("onnx", reason="the ONNX export tests need the onnx extra: pip install -e '.[onnx]'")
ort = pytest.importorskip("onnxruntime", reason="the ONNX export tests need the onnx extra: pip install -e '.[onnx]'")
if shutil.which(build.compiler()) is None:
    pytest.skip(f"no C compiler ({build.compiler()})", allow_module_level=True)

EXAMPLES = Path(__file__).resolve().parents[2] / "examples"
SPECS = sorted(EXAMPLES.glob("*.cnn"))
STEPS, TRAIN_BATCH = 3, 8


def random_inputs(model, names, n: int, rng) -> dict:
    """Inputs of the declared types: f32 in [0, 1), ids and labels inside their ranges."""
    bounds = {b["input"]: (b["low"], b["high"]) for b in model.manifest.get("bounds", [])}
    out = {}
    for name in names:
        dtype, shape = model.inputs[name]
        full = tuple(n if d is None else d for d in shape)
        if dtype == "f32":
            out[name] = rng.random(full, dtype=np.float32)
        else:
            lo, hi = bounds.get(name, (0, 2))
            out[name] = rng.integers(lo, hi, full).astype(np.int32)
    return out


def assert_matches(got: dict, expected: dict, what: str) -> None:
    assert list(got) == list(expected), what
    for name, e in expected.items():
        g = got[name]
        assert g.shape == e.shape and g.dtype == e.dtype, f"{what} `{name}`: {g.dtype}{g.shape} vs {e.dtype}{e.shape}"
        scale = max(1.0, float(np.abs(e).max(initial=0.0)))
        np.testing.assert_allclose(g, e, rtol=1e-4, atol=1e-4 * scale, err_msg=f"{what} `{name}`")


@pytest.mark.slow
@pytest.mark.parametrize("spec", SPECS, ids=lambda p: p.stem)
def test_onnx_runtime_equals_forward_after_training(spec, tmp_path, build_dir):
    model = pipeline.compile(spec, out_dir=build_dir).Model(seed=0)
    rng = np.random.default_rng(0)
    before = {k: v.copy() for k, v in model.params.items()}
    if model.optimizer is not None:
        for _ in range(STEPS):
            model.train_step(**random_inputs(model, list(model.inputs), TRAIN_BATCH, rng))
        assert any(not np.array_equal(before[k], v) for k, v in model.params.items()), "training changed nothing"
    session = ort.InferenceSession(model.export_onnx(tmp_path / f"{spec.stem}.onnx"),
                                   providers=["CPUExecutionProvider"])
    assert [i.name for i in session.get_inputs()] == model.feature_inputs
    for n in (1, 7):
        feed = random_inputs(model, model.feature_inputs, n, rng)
        got = dict(zip([o.name for o in session.get_outputs()], session.run(None, feed)))
        assert_matches(got, model.forward(**feed), f"{spec.stem} at batch {n}")


@pytest.mark.slow
def test_train_then_export_from_the_command_line(tmp_path, capsys, build_dir):
    """README's Deploy lines: the exported file gives the checkpoint's predictions."""
    spec, ckpt, out = EXAMPLES / "digits.cnn", tmp_path / "d.npz", tmp_path / "d.onnx"
    gen = ["--build-dir", str(build_dir)]
    assert cli.main(["train", str(spec), "--checkpoint", str(ckpt), "--epochs", "1", "-q", *gen]) == 0
    capsys.readouterr()
    assert cli.main(["export", str(spec), "--checkpoint", str(ckpt), "--onnx", str(out), *gen]) == 0
    said = capsys.readouterr()
    assert f"wrote {out}" in said.out and f"checkpoint {ckpt}" in said.out and said.err == ""
    model = pipeline.compile(spec, out_dir=build_dir).Model(seed=5)
    model.load(ckpt)
    x = np.random.default_rng(1).random((7, 8, 8, 1), dtype=np.float32)
    session = ort.InferenceSession(str(out), providers=["CPUExecutionProvider"])
    logits, probabilities = session.run(["logits", "probabilities"], {"x": x})
    expected = model.forward(x=x)
    assert_matches({"logits": logits, "probabilities": probabilities}, expected, "digits")
    assert (probabilities.argmax(1) == expected["probabilities"].argmax(1)).all()
