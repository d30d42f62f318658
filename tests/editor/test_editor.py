"""The editor's answers in-process (cnnc/editor.py over the checker's index), without a server:
the same diagnostics as `cnnc check` for every example, hover on layers and stack steps,
answers while a line has a syntax error, table-driven completion, internal errors."""
from __future__ import annotations

import json
import re
import sys
from pathlib import Path

import pytest

from cnnc import cli, editor, pipeline
from cnnc.compiler.ops import REGISTRY, Arg, OpDef
from cnnc.spec.diagnostics import render_json

ROOT = Path(__file__).resolve().parents[2]
EXAMPLES = ROOT / "examples"
FLOWERS = (EXAMPLES / "flowers.cnn").read_text()
LAYERED = (EXAMPLES / "flowers_layers.cnn").read_text()
SPECS = sorted(EXAMPLES.glob("*.cnn")) + sorted((EXAMPLES / "errors").glob("*.cnn"))


def offset(text: str, fragment: str, into: int = 0) -> int:
    return text.index(fragment) + into


@pytest.mark.parametrize("spec", SPECS, ids=lambda p: p.stem)
def test_the_same_diagnostics_as_cnnc_check(spec, capsys):
    capsys.readouterr()
    cli.main(["check", "--format", "json", str(spec)])
    expected = json.loads(capsys.readouterr().out)
    an = editor.analyze(spec.read_text(), str(spec))
    assert json.loads(render_json(an.diagnostics, an.source)) == expected


def test_hover_names_calls_and_reshape_arithmetic():
    an = editor.analyze(FLOWERS)
    pool4 = editor.hover(an, offset(FLOWERS, "pool4 = ", 1))
    assert pool4.startswith("**pool4**: `f32[N, 6, 6, 128]`") and "computed by `max_pool`" in pool4
    use = editor.hover(an, offset(FLOWERS, "reshape(pool4", 9))             # a use, not the definition
    assert use == pool4
    reshape = editor.hover(an, offset(FLOWERS, "reshape(pool4", 2))
    assert "`-1 = 4608*N / 4608 = N (f32[N, 6, 6, 128] holds 6*6*128 = 4608 values per example)`" in reshape
    weight = editor.hover(an, offset(FLOWERS, "param weight: f32[5, 5, 3, 32]", 7))
    assert "param `layer1-conv1/weight` = `truncated_normal(mean=0, stddev=0.1)`, 2,400 values" in weight
    scope = editor.hover(an, offset(FLOWERS, '"layer9-fc1"', 2))
    assert "creates 2 params, 4,719,616 values" in scope and "`layer9-fc1/weight`: `f32[4608, 1024]` (4,718,592)" in scope


def test_hover_on_layer_calls_and_stack_steps():
    an = editor.analyze(LAYERED)
    conv = editor.hover(an, offset(LAYERED, "conv(32, 5", 1))
    assert "→ `f32[N, 100, 100, 32]`" in conv
    assert "creates 2 params, 2,432 values" in conv
    assert "`layer1-conv1/weight`: `f32[5, 5, 3, 32]` (2,400)" in conv and "`layer1-conv1/bias`: `f32[32]` (32)" in conv
    step = editor.hover(an, offset(LAYERED, '"layer2-pool1":', 16))        # the blank before max_pool(2)
    assert "`f32[N, 50, 50, 32]`" in step and "step 2 of `stack logits`" in step
    flatten = editor.hover(an, offset(LAYERED, "flatten", 1))
    assert "`f32[N, 4608]`" in flatten and "-1 = 4608*N / 4608 = N" in flatten


def test_definition_and_references():
    an = editor.analyze(FLOWERS)
    span = editor.definition(an, offset(FLOWERS, "matmul(fc1", 8))
    assert FLOWERS[span.start:span.end] == "fc1" and span.start == offset(FLOWERS, "fc1 = dropout")
    uses = editor.references(an, offset(FLOWERS, "logits = matmul", 1))
    assert len(uses) == 5                  # declared, output, softmax, the loss and the metric
    assert all(FLOWERS[s.start:s.end] == "logits" for s in uses)


def test_answers_while_a_line_has_a_syntax_error():
    text = FLOWERS.replace("pool2 = max_pool(relu2,", "pool2 = max_pool(relu2,,")
    an = editor.analyze(text)
    assert [d.code for d in an.diagnostics] == ["syntax"]
    assert "`f32[N, 50, 50, 32]`" in editor.hover(an, offset(text, "pool1 = ", 1))
    names = {c.label for c in editor.completions(an, offset(text, "scope \"layer5"))}
    assert {"relu2", "pool1", "x"} <= names


def test_a_new_op_is_offered_without_editing_the_editor(monkeypatch):
    op = OpDef("swish_twice", (Arg("x"), Arg("beta", "float", 1.0)), lambda ins, attrs: ins[0], doc="x*sigmoid(x), twice")
    monkeypatch.setitem(REGISTRY, op.name, op)
    text = FLOWERS.replace("relu1 = relu(bias_add(conv1, bias))", "relu1 = swish_twice(bias_add(conv1, bias), )")
    an = editor.analyze(text)
    at = offset(text, "bias), )", 7)
    items = {c.label: c for c in editor.completions(an, at)}
    assert items["swish_twice"].detail == "swish_twice(x, beta=1.0)" and items["swish_twice"].doc == "x*sigmoid(x), twice"
    assert items["beta="].kind == "argument" and "x=" not in items
    assert "`f32[N, 100, 100, 32]`" in editor.hover(an, offset(text, "swish_twice", 1))


def test_keywords_come_from_the_grammar():
    assert {"model", "input", "param", "const", "scope", "stack", "output", "loss", "metric",
            "optimizer"} <= set(editor.keywords())


def test_an_internal_error_is_one_diagnostic(monkeypatch):
    def broken(source):
        raise ZeroDivisionError("a bug")
    monkeypatch.setattr(pipeline, "check_partial", broken)
    an = editor.analyze(FLOWERS)
    (d,) = an.diagnostics
    assert d.code == "internal" and "ZeroDivisionError: a bug" in d.message and an.index is None
    assert editor.hover(an, 10) is None and editor.outline(an) == [] and editor.completions(an, 0)


def test_inlay_hints_follow_each_binding():
    an = editor.analyze(FLOWERS)
    hints = dict(editor.inlay_hints(an))
    assert hints[offset(FLOWERS, "pool4 = ", 5)] == ": f32[N, 6, 6, 128]"
    assert hints[offset(FLOWERS, "reshaped = ", 8)] == ": f32[N, 4608]"
    # one per binding: `name = ...` and `output name = ...`, not loss, optimizer, metric or params
    bindings = re.findall(r"^\s*(?:output )?(\w+) = ", FLOWERS, flags=re.M)
    assert len(hints) == len(bindings) - 2 == 20


def test_cnnc_lsp_without_pygls_says_what_to_install(run_cnnc, monkeypatch):
    import cnnc
    monkeypatch.delitem(sys.modules, "cnnc.lsp", raising=False)
    monkeypatch.delattr(cnnc, "lsp", raising=False)
    monkeypatch.setitem(sys.modules, "pygls.lsp.server", None)             # as if not installed
    result = run_cnnc("lsp")
    assert result.code == 1 and "pip install 'cnnc[lsp]'" in result.stderr


@pytest.mark.parametrize("input_type, target, says", [
    ("f32[N, 6, 6, 128]", "[-1, 4608]", "-1 = 4608*N / 4608 = N (f32[N, 6, 6, 128] holds 6*6*128 = 4608 values per example)"),
    ("f32[N, 6, 6, 128]", "[N, -1]", "-1 = 4608*N / N = 4608 ("),
    ("f32[N, 6, 6, 128]", "[-1, 64]", "-1 = 4608*N / 64 = 72*N ("),
    ("f32[4, 6]", "[3, -1]", "-1 = 24 / 3 = 8 (f32[4, 6] holds 4*6 = 24 values)"),
])
def test_the_arithmetic_of_a_reshape(input_type, target, says):
    kind = "input" if "N" in input_type else "const"
    decl = f"input a: {input_type}" if kind == "input" else f"const a: {input_type} = 0.0"
    text = f"model m\n{decl}\nb = reshape(a, {target})\noutput b\n"
    an = editor.analyze(text)
    assert [d.code for d in an.diagnostics if d.severity.value == "error"] == []
    assert says in editor.hover(an, text.index("reshape") + 1)


def test_a_stack_name_is_declared_in_its_header():
    an = editor.analyze(LAYERED)
    header = offset(LAYERED, "stack logits", len("stack "))
    assert editor.hover(an, header + 1).startswith("**logits**: `f32[N, 5]`")
    span = editor.definition(an, offset(LAYERED, "output logits", len("output ") + 1))
    assert span.start == header and LAYERED[span.start:span.end] == "logits"
