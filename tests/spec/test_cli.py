"""The `cnnc` command as a user meets it: exit codes, --version, --help, JSON diagnostics,
missing files, and internal errors reported as cnnc bugs (traceback only under --debug)."""
from __future__ import annotations

import json

import pytest

from cnnc import __version__

from .conftest import ERRORS, EXAMPLES

CLEAN = sorted(EXAMPLES.glob("*.cnn"))


def test_version(run_cnnc):
    out = run_cnnc("--version")
    assert out.code == 0 and out.stdout.strip() == f"cnnc {__version__}"


def test_help(run_cnnc):
    out = run_cnnc("--help")
    assert out.code == 0 and "check" in out.stdout
    out = run_cnnc("check", "--help")
    assert out.code == 0 and "--format" in out.stdout and "--desugar" in out.stdout


def test_no_command_prints_usage(run_cnnc):
    out = run_cnnc()
    assert out.code == 2 and "usage" in out.stdout.lower()


@pytest.mark.parametrize("spec", CLEAN, ids=lambda p: p.stem)
def test_examples_check_clean(spec, run_cnnc):
    out = run_cnnc("check", "-q", str(spec))
    assert out.code == 0 and out.stderr == ""


def test_errors_exit_1(run_cnnc):
    out = run_cnnc("check", str(ERRORS / "matmul_inner.cnn"))
    assert out.code == 1 and out.stdout == ""


def test_missing_file_is_a_clean_error(run_cnnc, tmp_path):
    out = run_cnnc("check", str(tmp_path / "nope.cnn"))
    assert out.code == 1
    assert out.stderr == f"cnnc: error: no such spec file: {tmp_path / 'nope.cnn'}\n"


def test_directory_and_binary_files(run_cnnc, tmp_path):
    assert run_cnnc("check", str(tmp_path)).code == 1
    f = tmp_path / "b.cnn"
    f.write_bytes(b"\xff\xfe\x00model")
    out = run_cnnc("check", str(f))
    assert out.code == 1 and "Traceback" not in out.stderr and "UTF-8" in out.stderr


def test_json_diagnostics(run_cnnc):
    out = run_cnnc("check", "--format", "json", str(ERRORS / "several_mistakes.cnn"))
    assert out.code == 1
    diags = json.loads(out.stdout)
    assert len(diags) == 3
    for d in diags:
        assert {"file", "line", "column", "code", "message", "severity", "labels", "notes", "help"} <= set(d)
        assert d["file"].endswith("several_mistakes.cnn") and d["line"] >= 1 and d["column"] >= 1
    assert [(d["line"], d["column"], d["code"]) for d in diags] == \
        [(11, 32, "channels"), (20, 9, "unknown-op"), (24, 28, "unknown-kwarg")]


def test_json_syntax_error_and_clean_file(run_cnnc):
    out = run_cnnc("check", "--format", "json", str(ERRORS / "syntax_missing_comma.cnn"))
    assert out.code == 1 and json.loads(out.stdout)[0]["code"] == "syntax"
    out = run_cnnc("check", "--format", "json", str(EXAMPLES / "mnist.cnn"))
    assert out.code == 0 and json.loads(out.stdout) == []


def test_warnings_only_exit_0(run_cnnc):
    out = run_cnnc("check", "-q", str(ERRORS / "unused_param.cnn"))
    assert out.code == 0 and "warning: param `b` is never used" in out.stderr


def test_internal_error_is_reported_as_a_bug(run_cnnc, monkeypatch):
    from cnnc.compiler import check as checker

    def boom(module, source):
        raise RuntimeError("checker exploded")
    monkeypatch.setattr(checker, "check", boom)
    out = run_cnnc("check", str(EXAMPLES / "mnist.cnn"))
    assert out.code == 70
    assert "internal error: RuntimeError: checker exploded" in out.stderr
    assert "bug in cnnc" in out.stderr and "Traceback" not in out.stderr and "--debug" in out.stderr
    out = run_cnnc("--debug", "check", str(EXAMPLES / "mnist.cnn"))
    assert out.code == 70 and "Traceback" in out.stderr and "boom" in out.stderr


def test_desugar_and_dump(run_cnnc):
    out = run_cnnc("check", "--desugar", str(EXAMPLES / "digits.cnn"))
    assert out.code == 0 and "param weight: f32[3, 3, 1, 32] = glorot_uniform()" in out.stdout
    out = run_cnnc("check", "--dump", str(EXAMPLES / "mnist.cnn"))
    assert out.code == 0 and out.stdout.startswith("model mnist")
