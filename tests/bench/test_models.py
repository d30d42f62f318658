"""The bench's analytical MAC counts of the modern models agree with what `cnnc check` counts
for their specs (two independent derivations of the same layers), and those models run only
the rows the issue asks for."""
from pathlib import Path

import pytest

from bench import models as spec
from cnnc import pipeline
from cnnc.compiler.summary import rows

EXAMPLES = Path(__file__).resolve().parents[2] / "examples"


@pytest.mark.parametrize("name", ["resnet20", "mobilenet"])
def test_bench_macs_match_cnnc_for_the_example(name):
    graph = pipeline.check(EXAMPLES / f"{name}.cnn")
    assert spec.forward_flops(name) == 2 * sum(r[4] for r in rows(graph))


def test_modern_models_list_their_rows():
    assert spec.INPUTS["resnet20"]["rows"] == ("train_b128",)
    assert spec.INPUTS["mobilenet"]["rows"] == ("train_b32", "latency_b1")
    assert "rows" not in spec.INPUTS["flowers"]             # the tutorial models run every row
