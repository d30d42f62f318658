"""Golden diagnostics: each examples/errors/NAME.cnn has one kind of mistake (several_mistakes.cnn
has several independent ones) and NAME.expected is exactly what `cnnc check` prints on stderr.

To regenerate after a deliberate change in wording, run

    UPDATE_GOLDEN=1 python -m pytest tests/spec/test_golden.py

then read every changed .expected file (git diff examples/errors) as a user would before
committing it: a golden is a reviewed report, not a recording."""
from __future__ import annotations

import os
import re

import pytest

from .conftest import ERRORS

SPECS = sorted(ERRORS.glob("*.cnn"))
WARNING_ONLY = {"unused_param", "unused_input", "no_optimizer"}


def test_every_spec_has_a_golden():
    missing = [p.name for p in SPECS if not p.with_suffix(".expected").exists()]
    orphans = [p.name for p in ERRORS.glob("*.expected") if not p.with_suffix(".cnn").exists()]
    assert not missing and not orphans, (missing, orphans)


@pytest.mark.parametrize("spec", SPECS, ids=lambda p: p.stem)
def test_golden_report(spec, run_cnnc):
    out = run_cnnc("check", "-q", spec.name, cwd=ERRORS)   # relative name: goldens hold no paths
    expected_file = spec.with_suffix(".expected")
    if os.environ.get("UPDATE_GOLDEN"):
        expected_file.write_text(out.stderr)
    assert out.code == (0 if spec.stem in WARNING_ONLY else 1), out.stderr
    assert "Traceback" not in out.stderr and "internal error" not in out.stderr
    assert out.stderr == expected_file.read_text()


@pytest.mark.parametrize("spec", SPECS, ids=lambda p: p.stem)
def test_golden_first_line_form(spec):
    """Every report starts `FILE:LINE:COL: error|warning: message`, editors rely on it."""
    text = spec.with_suffix(".expected").read_text()
    blocks = text.rstrip("\n").split("\n\n")
    assert re.fullmatch(rf"{re.escape(spec.name)}: (\d+ errors?)?(, )?(\d+ warnings?)?", blocks[-1])
    for block in blocks[:-1]:
        assert re.match(rf"{re.escape(spec.name)}:\d+:\d+: (error|warning): \S", block), block


def test_goldens_cover_every_diagnostic_code():
    """Each code the parser and checker can emit appears in some golden (via --format json)."""
    import json
    from cnnc import pipeline
    from cnnc.spec.diagnostics import SpecError
    seen = set()
    for spec in SPECS:
        source = pipeline.load_source(spec)
        try:
            diags = pipeline.check_source(source).diagnostics
        except SpecError as e:
            diags = e.diagnostics
        seen |= {d.code for d in diags}
    assert ALL_CODES - seen == set()


ALL_CODES = {
    "syntax", "unknown-name", "unknown-op", "unknown-kwarg", "unknown-initializer", "unknown-optimizer",
    "param-twice", "unused-param", "unused-input", "reshape-size", "reshape-ambiguous", "reshape-batch",
    "window-empty", "channels", "attr", "matmul", "broadcast", "bias", "labels", "dtype",
    "transpose-shape", "not-scalar", "dense-rank", "layer-rank", "missing-arg", "too-many-args",
    "duplicate-arg", "not-static", "not-tensor", "no-model", "model-twice", "input-in-scope",
    "symbolic-dim", "dim", "const-shape", "const", "div-zero", "init", "optimizer", "no-optimizer",
    "output-twice", "loss-twice", "metric-twice", "param-dtype", "scope-name", "activation", "axis",
    "model-late", "optimizer-twice", "shape", "pad", "concat",
}
