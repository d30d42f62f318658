"""Text from outside never becomes code: file names and scope names full of comment
delimiters, newlines, quotes, backslashes and control characters reach the generated C only
inside comments (made inert) or as sanitized identifiers. The C with such names is the same,
comments stripped, as with tame names that sanitize to the same identifiers, and it compiles
warning-free."""
import re
import subprocess

import pytest
from hypothesis import HealthCheck, given, settings, strategies as st

import cnnc
from cnnc.compiler.kernel import sanitize

SPEC = """model hostile
input x: f32[N, 4]
input y: i32[N]
scope "{scope}" {{
  param w: f32[4, 3] = zeros()
  logits = matmul(x, w)
}}
loss = reduce_mean(sparse_softmax_cross_entropy_with_logits(labels=y, logits=logits))
optimizer = sgd(lr=0.1)
"""

NASTY = ["*/ int injected = 42; /*", "a*/\n#include <stdio.h>\n/*b", "x\\\n*/y", "*\\\n/", "??/\n*/",
         "\"'#\\\\\"", "\x00\x07\x1b[0m*/", "/* nested */", "tab\there\r\n*/", "é*/ü"]


def _stripped(path) -> str:
    """The C with every comment removed, by the compiler's own preprocessor (no macro expansion)."""
    r = subprocess.run(["gcc", "-fpreprocessed", "-dD", "-E", "-P", str(path)], capture_output=True,
                       text=True, check=True)
    return r.stdout


def _emit(tmp_path, tag, text, filename):
    out = tmp_path / tag
    pkg = cnnc.compile(text, out_dir=out, emit_only=True, filename=filename)
    return pkg / "model.c", pkg / "model.h"


def _compare(tmp_path, scope, filename):
    tame_scope = sanitize(scope) if scope.strip() else "s"
    hostile = _emit(tmp_path, "hostile", SPEC.format(scope=scope), filename)
    tame = _emit(tmp_path, "tame", SPEC.format(scope=tame_scope), "tame.cnn")
    for h, t in zip(hostile, tame):
        assert _stripped(h) == _stripped(t), h.name
    r = subprocess.run(["gcc", "-fsyntax-only", "-Wall", "-Wextra", "-Werror", "-std=gnu11", "-fopenmp",
                        "-I", str(hostile[0].parent), str(hostile[0])], capture_output=True, text=True)
    assert r.returncode == 0, r.stderr


@pytest.mark.parametrize("nasty", NASTY)
def test_a_hostile_file_name_stays_inside_comments(tmp_path, nasty):
    _compare(tmp_path, "layer", f"dir{nasty}/spec{nasty}.cnn")


@pytest.mark.parametrize("nasty", [n for n in NASTY if '"' not in n and "\n" not in n and "\r" not in n])
def test_a_hostile_scope_name_stays_inside_comments(tmp_path, nasty):
    _compare(tmp_path, nasty.replace("/", "|"), "spec.cnn")    # `/` is the scope separator


@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(st.lists(st.sampled_from(list("*/\\\n\r\"'#?:;{}() \t\x00\x01\x7fé") + ["*/", "/*", "??/"]),
                max_size=16).map("".join))
def test_any_file_name_stays_inside_comments(tmp_path_factory, name):
    _compare(tmp_path_factory.mktemp("p"), "layer", name + ".cnn")


def test_the_header_names_the_file_not_its_path(tmp_path):
    a = _emit(tmp_path, "a", SPEC.format(scope="s"), "/one/place/m.cnn")[0].read_text()
    b = _emit(tmp_path, "b", SPEC.format(scope="s"), "/another/m.cnn")[0].read_text()
    assert a == b and "from m.cnn." in a
