"""`cnnc check --desugar` prints core forms: the printed text of every example checks clean
again and declares exactly the same params and state (names, shapes, initializers, updates)."""
from __future__ import annotations

import pytest

from cnnc import pipeline
from cnnc.commands import desugared_text

from .conftest import EXAMPLES


def params(graph):
    return {p.name: (p.type, graph.inits[p.id]) for p in graph.params}


def state(graph):
    """Each state's type, initializer and whether an update sets it."""
    return {v.name: (v.type, graph.inits[v.id], v.id in graph.updates) for v in graph.state}


@pytest.mark.parametrize("spec", sorted(EXAMPLES.glob("*.cnn")), ids=lambda p: p.stem)
def test_desugared_text_rechecks_with_the_same_params(spec):
    checked = pipeline.check_source(pipeline.load_source(spec))
    assert checked.graph is not None
    core = desugared_text(checked) + "\n"
    for sugar in ("stack ", "|>", "conv(", "dense(", "flatten(", "conv_transpose(", "embedding(", "batch_norm("):
        assert sugar not in core
    again = pipeline.check(core, filename=f"{spec.stem}-core.cnn")
    assert params(again) == params(checked.graph)
    assert state(again) == state(checked.graph)
    assert {k: v.type for k, v in again.outputs.items()} == {k: v.type for k, v in checked.graph.outputs.items()}
    assert (again.loss is None) == (checked.graph.loss is None)
    assert again.optimizer == checked.graph.optimizer
    assert again.metrics.keys() == checked.graph.metrics.keys()
    # and printing is a fixed point: core forms desugar to themselves
    assert desugared_text(pipeline.check_source(pipeline.load_source(core))) + "\n" == core


def test_flowers_layers_matches_flowers():
    """The sugar version of the TF tutorial network has the hand-written one's params exactly."""
    a = pipeline.check(EXAMPLES / "flowers.cnn")
    b = pipeline.check(EXAMPLES / "flowers_layers.cnn")
    assert params(a) == params(b)


def test_an_error_in_a_stack_step_names_the_step():
    import cnnc
    from cnnc.spec.diagnostics import SpecError
    text = ("model s\ninput x: f32[N, 8, 8, 1]\nstack logits = x {\n  \"conv1\": conv(4, 3)\n"
            "  dense(10)\n}\noutput logits\n")
    with pytest.raises(SpecError) as e:
        cnnc.check(text)
    (d,) = e.value.diagnostics
    assert "in step 2 of `stack logits`" in d.notes
