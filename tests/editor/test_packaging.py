"""The editor packaging in editors/vscode: the TextMate grammar is valid, knows every keyword of
the spec grammar and highlights flowers.cnn's parts; the extension manifest starts `cnnc lsp`."""
from __future__ import annotations

import json
import re
from pathlib import Path

from cnnc import cli, editor

ROOT = Path(__file__).resolve().parents[2]
VSCODE = ROOT / "editors" / "vscode"
GRAMMAR = json.loads((VSCODE / "syntaxes" / "cnn.tmLanguage.json").read_text())
REPO = GRAMMAR["repository"]


def patterns(node):
    """Every `match` regex in a grammar node, depth first."""
    if isinstance(node, dict):
        if "match" in node:
            yield node["match"]
        for v in node.values():
            yield from patterns(v)
    elif isinstance(node, list):
        for v in node:
            yield from patterns(v)


def test_every_pattern_compiles():
    found = list(patterns(GRAMMAR))
    assert len(found) >= 10
    for p in found:
        re.compile(p)


def test_the_grammar_knows_every_keyword_of_the_spec_language():
    highlighted = set(re.search(r"\((.*)\)", REPO["keyword"]["match"]).group(1).split("|"))
    assert set(editor.keywords()) <= highlighted


def test_flowers_is_highlighted_in_its_parts():
    text = (ROOT / "examples" / "flowers.cnn").read_text()
    call = re.compile(REPO["call"]["match"])
    assert {"conv2d", "max_pool", "reshape", "truncated_normal", "adam"} <= set(call.findall(text))
    decl = re.compile(REPO["declaration"]["match"], flags=re.M)
    assert ("input", "x") in decl.findall(text) and ("param", "weight") in decl.findall(text)
    scope = re.compile(REPO["scope"]["match"], flags=re.M)
    assert ("scope", '"layer1-conv1"') in scope.findall(text)
    kwarg = re.compile(REPO["keyword-argument"]["match"])
    assert {"strides", "padding", "stddev", "lr"} <= set(kwarg.findall(text))
    assert re.search(REPO["comment"]["match"], "x = y  # a comment", flags=re.M).group(0) == "# a comment"


def test_the_vscode_manifest_starts_cnnc_lsp():
    manifest = json.loads((VSCODE / "package.json").read_text())
    (language,) = manifest["contributes"]["languages"]
    assert language["extensions"] == [".cnn"] and (VSCODE / language["configuration"]).is_file()
    (grammar,) = manifest["contributes"]["grammars"]
    assert grammar["scopeName"] == GRAMMAR["scopeName"] and (VSCODE / grammar["path"]).is_file()
    assert (VSCODE / manifest["main"]).is_file() and manifest["private"] is True
    command = manifest["contributes"]["configuration"]["properties"]["cnnc.command"]["default"]
    assert command == ["cnnc", "lsp"]
    assert cli._parser().parse_args(command[1:]).command == "lsp"
    json.loads((VSCODE / "language-configuration.json").read_text())
