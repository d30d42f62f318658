"""`cnnc export` before any format is written: what it loads and what it refuses (no
checkpoint, a checkpoint of another spec, no feature input, an output that needs labels)."""
from __future__ import annotations

import shutil

import numpy as np
import pytest

from cnnc import cli, pipeline
from cnnc.compiler import build
from cnnc.errors import CnncError
from cnnc.export_cmd import inference_problem, load_for_export
from cnnc.runtime.checkpoint import CheckpointMismatch

A = """model a
input x: f32[N, 4]
param w: f32[4, 3] = glorot_uniform()
param b: f32[3] = zeros()
output y = matmul(x, w) + b
"""
B = """model b
input x: f32[N, 4]
param w: f32[4, 2] = glorot_uniform()
param v: f32[2] = zeros()
output y = matmul(x, w) + v
"""
needs_cc = pytest.mark.skipif(shutil.which(build.compiler()) is None, reason=f"no C compiler ({build.compiler()})")


def run(capsys, *argv):
    capsys.readouterr()
    code = cli.main([str(a) for a in argv])
    out = capsys.readouterr()
    return code, out.out, out.err


def write(tmp_path, name, text):
    p = tmp_path / name
    p.write_text(text)
    return p


@needs_cc
def test_no_checkpoint_exports_initial_params_and_says_so(tmp_path, build_dir):
    said = []
    ex = load_for_export(write(tmp_path, "a.cnn", A), None, build_dir, say=said.append)
    assert len(said) == 1 and "no --checkpoint" in said[0] and "initial params" in said[0]
    fresh = pipeline.compile(A, out_dir=build_dir).Model(seed=0)
    np.testing.assert_array_equal(ex.model.params["w"], fresh.params["w"])
    assert "initial" in ex.params_from


@needs_cc
def test_a_checkpoint_loads_its_params(tmp_path, build_dir):
    m = pipeline.compile(A, out_dir=build_dir).Model(seed=3)
    m.params["b"][...] = [1, 2, 3]
    m.save(tmp_path / "a.npz")
    ex = load_for_export(write(tmp_path, "a.cnn", A), tmp_path / "a.npz", build_dir, say=pytest.fail)
    np.testing.assert_array_equal(ex.model.params["w"], m.params["w"])
    np.testing.assert_array_equal(ex.model.params["b"], [1, 2, 3])
    assert f"checkpoint {tmp_path / 'a.npz'}" in ex.params_from


@needs_cc
def test_a_checkpoint_of_another_spec_lists_every_mismatching_param(tmp_path, build_dir, capsys):
    pipeline.compile(B, out_dir=build_dir).Model(seed=0).save(tmp_path / "b.npz")
    spec = write(tmp_path, "a.cnn", A)
    with pytest.raises(CheckpointMismatch) as e:
        load_for_export(spec, tmp_path / "b.npz", build_dir)
    assert len(e.value.problems) == 3                     # w reshaped, b missing, v unexpected
    msg = str(e.value)
    assert "w: checkpoint f32[4, 2], model f32[4, 3]" in msg
    assert "b: missing from checkpoint" in msg and "v: unexpected in checkpoint" in msg
    assert "model `b`" in msg                             # says whose checkpoint it was
    code, _, err = run(capsys, "export", spec, "--checkpoint", tmp_path / "b.npz", "--onnx",
                       tmp_path / "a.onnx", "--build-dir", build_dir)
    assert code == 1 and "3 mismatching params" in err and "Traceback" not in err
    assert not (tmp_path / "a.onnx").exists()


def test_a_spec_whose_outputs_read_no_input_is_refused(tmp_path):
    graph = pipeline.check("model c\ninput x: f32[N, 4]\nparam w: f32[4] = ones()\noutput y = w * 2.0\n")
    with pytest.raises(CnncError, match="no feature input"):
        inference_problem(graph)


def test_a_spec_without_outputs_is_refused():
    graph = pipeline.check("model c\ninput x: f32[N, 4]\nparam w: f32[4] = ones()\n"
                           "loss = reduce_sum(x * w)\noptimizer = sgd(lr=0.1)\n")
    with pytest.raises(CnncError, match="declares no output"):
        inference_problem(graph)


def test_an_output_that_depends_on_labels_is_refused(tmp_path, capsys):
    spec = write(tmp_path, "d.cnn", """model d
input x: f32[N, 4]
input y: i32[N]
param w: f32[4, 3] = zeros()
logits = matmul(x, w)
output per_example = sparse_softmax_cross_entropy_with_logits(labels=y, logits=logits)
loss = reduce_mean(per_example)
optimizer = sgd(lr=0.1)
""")
    code, _, err = run(capsys, "export", spec, "--onnx", tmp_path / "d.onnx", "--build-dir", tmp_path / "gen")
    assert code == 1
    assert "output `per_example` depends on input `y`, which the loss reads as labels" in err
    assert not (tmp_path / "gen").exists()                # refused before building anything


def test_labels_used_only_by_the_loss_are_fine():
    graph = pipeline.check("""model e
input x: f32[N, 4]
input y: i32[N]
param w: f32[4, 3] = zeros()
output logits = matmul(x, w)
loss = reduce_mean(sparse_softmax_cross_entropy_with_logits(labels=y, logits=logits))
optimizer = sgd(lr=0.1)
""")
    inference_problem(graph)


def test_nothing_to_export_is_a_usage_error(capsys, tmp_path):
    code, _, err = run(capsys, "export", write(tmp_path, "a.cnn", A))
    assert code == 1 and "give --onnx" in err


def test_a_missing_spec_is_a_clean_error(capsys, tmp_path):
    code, _, err = run(capsys, "export", tmp_path / "nope.cnn", "--onnx", tmp_path / "x.onnx")
    assert code == 1 and err == f"cnnc: error: no such spec file: {tmp_path / 'nope.cnn'}\n"


def test_without_the_onnx_extra_export_says_how_to_get_it(tmp_path, monkeypatch):
    import sys
    from cnnc.export_cmd import write_onnx
    monkeypatch.setitem(sys.modules, "cnnc.compiler.onnx_export", None)      # as if onnx were absent
    graph = pipeline.check(A)
    with pytest.raises(CnncError, match=r'pip install -e "\.\[onnx\]"'):
        write_onnx(graph, pipeline.load_source(A), {}, tmp_path / "a.onnx")
    assert not (tmp_path / "a.onnx").exists()


@needs_cc
def test_a_model_built_without_its_spec_text_cannot_export(tmp_path, build_dir):
    module = pipeline.generate(pipeline.check(A), None, build_dir)          # a graph, no spec text
    with pytest.raises(CnncError, match="built without its spec text"):
        module.Model().export_onnx(tmp_path / "a.onnx")
