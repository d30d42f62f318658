"""One argument binder: ops, layers, initializers and optimizers report a misspelt, repeated,
missing or extra argument in the same words (compiler/check/binder.py)."""
from __future__ import annotations

import pytest

from cnnc import pipeline

HEAD = "model m\ninput x: f32[N, 4]\n"
# (callee, a call with one extra positional arg, with an unknown kwarg, with a repeated arg,
#  with a required arg missing), each written where a spec would write it.
CALLS = {
    "op": ("output y = {}", "matmul(x, x, true, false, 1)", "matmul(x, x, transpose=true)",
           "matmul(x, x, a=x)", "matmul(x)"),
    "layer": ("output y = {}", "dense(x, 3, None, true, zeros(), zeros(), 0.0, \"d\", 1)", "dense(x, unit=3)",
              "dense(x, 3, units=3)", "dense(x)"),
    "initializer": ("param w: f32[4, 2] = {}\noutput y = matmul(x, w)", "random_normal(0.0, 1.0, 2.0)",
                    "random_normal(stdev=1.0)", "random_normal(0.0, mean=1.0)", "constant()"),
    "optimizer": ("param w: f32[4, 1] = zeros()\nloss = reduce_mean(matmul(x, w))\noptimizer = {}",
                  "momentum(0.1, 0.9, 1.0)", "momentum(lr=0.1, momentun=0.9)",
                  "momentum(0.1, 0.9, lr=0.1)", "momentum(lr=0.1)"),
}
FAULTS = {1: "too-many-args", 2: "unknown-kwarg", 3: "duplicate-arg", 4: "missing-arg"}


def diagnose(what: str, fault: int):
    source = pipeline.load_source(HEAD + CALLS[what][0].format(CALLS[what][fault]) + "\n", filename="t.cnn")
    errors = [d for d in pipeline.check_source(source).diagnostics if d.severity.value == "error"]
    assert len(errors) == 1, errors
    return errors[0]


@pytest.mark.parametrize("fault", sorted(FAULTS), ids=FAULTS.get)
@pytest.mark.parametrize("what", sorted(CALLS))
def test_every_callee_is_bound_in_the_same_words(what, fault):
    d = diagnose(what, fault)
    name = CALLS[what][fault].split("(")[0]
    assert d.code == FAULTS[fault]
    expected = {
        1: f"`{name}` takes at most ",
        2: f"`{name}` has no argument ",
        3: "argument `",
        4: f"`{name}` needs `",
    }[fault]
    assert d.message.startswith(expected), d.message
    if fault == 3:
        assert d.message.endswith(f"of `{name}` is given twice")
    assert "signature: " + name + "(" in " ".join(filter(None, [d.help, *d.notes])), d


def test_did_you_mean_names_the_nearest_argument_everywhere():
    hints = {what: diagnose(what, 2).help for what in CALLS}
    assert hints == {"op": "did you mean `transpose_a`?", "layer": "did you mean `units`?",
                     "initializer": "did you mean `stddev`?", "optimizer": "did you mean `momentum`?"}


def test_a_callee_without_arguments_says_so():
    source = pipeline.load_source(HEAD + "param w: f32[4] = zeros(1)\noutput y = x * w\n", filename="t.cnn")
    [d] = pipeline.check_source(source).diagnostics
    assert d.message == "`zeros` takes no arguments, got 1" and d.help == "signature: zeros()"
