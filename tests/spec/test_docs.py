"""docs/language.md stays true: every ```cnn block checks clean, and the op, layer,
initializer and optimizer tables list everything the compiler knows."""
from __future__ import annotations

import re

import pytest

from cnnc import pipeline
from cnnc.compiler.initializers import INITIALIZERS
from cnnc.compiler.check.layers import LAYERS
from cnnc.compiler.ops import REGISTRY, public_ops
from cnnc.compiler.optimizers import OPTIMIZERS
from cnnc.spec.diagnostics import render_all

from .conftest import ROOT

DOC = (ROOT / "docs" / "language.md").read_text()
BLOCKS = re.findall(r"```cnn\n(.*?)```", DOC, re.S)


def test_the_doc_has_examples():
    assert len(BLOCKS) >= 5


@pytest.mark.parametrize("i", range(len(BLOCKS)))
def test_doc_example_checks_clean(i):
    source = pipeline.load_source(BLOCKS[i], filename=f"docs-example-{i}.cnn")
    checked = pipeline.check_source(source)
    assert checked.diagnostics == [], render_all(checked.diagnostics, source)


def table_names(text: str) -> set[str]:
    """Names that open a table row: | `name(` ... or | `name(...)`, `other(...)` |."""
    names = set()
    for line in text.splitlines():
        if line.startswith("| `"):
            first_cell = line.split("|")[1]
            names |= set(re.findall(r"`([a-z_0-9]+)\(", first_cell))
    return names


def test_every_public_op_is_documented():
    assert set(public_ops()) - table_names(DOC) == set()


def test_every_layer_initializer_and_optimizer_is_documented():
    names = table_names(DOC)
    assert set(LAYERS) - names == set()
    assert set(INITIALIZERS) - names == set()
    assert set(OPTIMIZERS) - names == set()


def test_documented_signatures_match_the_registry():
    from cnnc.compiler.check.messages import signature
    for op in public_ops():
        sig = signature(REGISTRY[op]).replace("False", "false")
        args = sig[len(op) + 1:-1].split(", ")
        row = next(line for line in DOC.splitlines() if line.startswith("| `") and f"`{op}(" in line.split("|")[1])
        for a in args:
            assert a.split("=")[0] in row, (op, a, row)
