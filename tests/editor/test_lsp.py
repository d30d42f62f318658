"""`cnnc lsp` driven by a real LSP client over its stdio (pygls's client, tests/editor/lsp_client.py):
diagnostics at the right ranges on open and after edits, hover, definition, outline,
completion, inlay hints, and 200 random edits of flowers.cnn answered without a crash."""
from __future__ import annotations

import asyncio
import json
import random
import time

import pytest

pytest.importorskip("pygls", reason="cnnc lsp needs the [lsp] extra: pip install -e '.[lsp]'")

from lsprotocol import types as lsp  # noqa: E402

from cnnc import cli  # noqa: E402

from .lsp_client import ROOT, start, stop  # noqa: E402

FLOWERS = ROOT / "examples" / "flowers.cnn"
TEXT = FLOWERS.read_text()
LINES = TEXT.splitlines()
URI = FLOWERS.as_uri()
WRONG_RESHAPE = TEXT.replace("reshape(pool4, [-1, 6*6*128])", "reshape(pool4, [-1, 6*6*100])")


def line_of(fragment: str, text: str = TEXT) -> int:
    """0-based line of the first line containing `fragment`."""
    return next(i for i, line in enumerate(text.splitlines()) if fragment in line)


def run(scenario, options=None):
    """Run `scenario(session)` against a fresh server; stop it cleanly afterwards."""
    async def main():
        session = await start(options)
        try:
            return await scenario(session)
        finally:
            await stop(session)
    return asyncio.run(main())


def check_json(tmp_path, text: str, capsys) -> list[dict]:
    """What `cnnc check --format json` says about `text`: the reference for the server."""
    spec = tmp_path / "spec.cnn"
    spec.write_text(text)
    capsys.readouterr()
    cli.main(["check", "--format", "json", str(spec)])
    return json.loads(capsys.readouterr().out)


def same_as_check(diags, expected: list[dict]) -> None:
    """Each published diagnostic is `cnnc check`'s: range start, message, notes and help."""
    assert len(diags) == len(expected)
    for d, e in zip(diags, expected):
        assert (d.range.start.line + 1, d.range.start.character + 1) == (e["line"], e["column"])
        primary = next(lb for lb in e["labels"] if lb["primary"])
        assert (d.range.end.line + 1, d.range.end.character + 1) == (primary["end"]["line"], primary["end"]["column"])
        lines = d.message.split("\n")
        assert lines[0] == e["message"] and d.code == e["code"]
        assert lines[1:] == [f"note: {n}" for n in e["notes"]] + ([f"help: {e['help']}"] if e["help"] else [])


def test_diagnostics_on_open_and_after_edits(tmp_path, capsys):
    two_errors = WRONG_RESHAPE.replace("optimizer = adam(", "optimizer = adma(")
    syntax = TEXT.replace("pool2 = max_pool(relu2,", "pool2 = max_pool(relu2,,")

    async def scenario(s):
        s.open(URI, TEXT)
        clean = await s.diagnostics(URI, 1)
        v = s.change(URI, WRONG_RESHAPE)
        wrong = await s.diagnostics(URI, v)
        v = s.change(URI, two_errors)
        both = await s.diagnostics(URI, v)
        v = s.change(URI, syntax)
        broken = await s.diagnostics(URI, v)
        v = s.change(URI, TEXT)
        fixed = await s.diagnostics(URI, v)
        return clean, wrong, both, broken, fixed

    clean, wrong, both, broken, fixed = run(scenario, {"debounce": 0.05})
    assert list(clean) == [] and list(fixed) == []
    (d,) = wrong
    assert d.range.start.line == line_of("reshaped = reshape(pool4")         # the reshape's line
    assert d.severity == lsp.DiagnosticSeverity.Error and d.code == "reshape-size"
    assert "4608 values per example into rows of 3600" in d.message
    same_as_check(wrong, check_json(tmp_path, WRONG_RESHAPE, capsys))
    same_as_check(both, check_json(tmp_path, two_errors, capsys))           # every error, one pass
    assert [x.range.start.line for x in both] == [line_of("reshaped = reshape("), line_of("optimizer = ")]
    same_as_check(broken, check_json(tmp_path, syntax, capsys))
    assert broken[0].range.start.line == line_of("pool2 = max_pool(")


def test_hover_definition_outline_completion_and_inlay_hints():
    pool4 = line_of("pool4 = max_pool(")
    conv1 = line_of("conv1 = conv2d(")
    reshaped = line_of("reshaped = reshape(pool4")
    conv2 = line_of("conv2 = conv2d(")
    doc = lsp.TextDocumentIdentifier(URI)
    everywhere = lsp.Range(lsp.Position(0, 0), lsp.Position(len(LINES), 0))

    async def scenario(s):
        s.open(URI, TEXT)
        await s.diagnostics(URI, 1)
        c = s.client
        out = {
            "pool4": await s.hover(URI, pool4, LINES[pool4].index("pool4") + 2),
            "conv1": await s.hover(URI, conv1, LINES[conv1].index("conv1") + 1),
            "reshape": await s.hover(URI, reshaped, LINES[reshaped].index("reshape(") + 3),
            "space": await s.hover(URI, 0, 0),
            "def_pool4": await s.definition(URI, reshaped, LINES[reshaped].index("(pool4") + 2),
            "def_weight": await s.definition(URI, conv2, LINES[conv2].index("weight") + 1),
            "def_x": await s.definition(URI, conv1, LINES[conv1].index("(x,") + 1),
            "symbols": await c.text_document_document_symbol_async(lsp.DocumentSymbolParams(doc)),
            "line_start": await c.text_document_completion_async(
                lsp.CompletionParams(doc, lsp.Position(reshaped, 2))),
            "in_call": await c.text_document_completion_async(
                lsp.CompletionParams(doc, lsp.Position(conv2, LINES[conv2].index("strides")))),
            "hints_off": await c.text_document_inlay_hint_async(lsp.InlayHintParams(doc, everywhere)),
        }
        c.workspace_did_change_configuration(lsp.DidChangeConfigurationParams({"cnnc": {"inlayHints": True}}))
        out["hints"] = await c.text_document_inlay_hint_async(lsp.InlayHintParams(doc, everywhere))
        return out

    out = run(scenario)
    assert "`f32[N, 6, 6, 128]`" in out["pool4"].contents.value
    assert "`f32[N, 100, 100, 32]`" in out["conv1"].contents.value
    assert "defined at line 12" in out["conv1"].contents.value
    assert "-1 = 4608*N / 4608 = N" in out["reshape"].contents.value
    assert out["space"] is None
    assert out["def_pool4"].range.start.line == pool4
    # `weight` in layer3-conv2 is that scope's param, declared two lines above, not layer1's
    weight = line_of("param weight: f32[5, 5, 32, 64]")
    assert out["def_weight"].range.start == lsp.Position(weight, LINES[weight].index("weight"))
    assert out["def_x"].range.start == lsp.Position(line_of("input x:"), len("input "))

    names = [sym.name for sym in out["symbols"]]
    assert names[:3] == ["x", "y", "layer1-conv1"]
    assert names[-4:] == ["logits", "probabilities", "loss", "accuracy"]
    scope = out["symbols"][2]
    assert [ch.name for ch in scope.children] == ["weight", "bias", "conv1", "relu1"]
    assert scope.children[0].kind == lsp.SymbolKind.Field and "f32[5, 5, 3, 32]" in scope.children[0].detail

    labels = {i.label: i for i in out["line_start"].items}
    assert {"conv2d", "max_pool", "reshape", "conv", "dense", "scope", "param"} <= set(labels)
    assert labels["conv"].detail.startswith("conv(input, filters, kernel_size")
    assert "pool4" in labels and "reg1" not in labels          # names declared above only
    args = {i.label for i in out["in_call"].items if i.kind == lsp.CompletionItemKind.Field}
    assert args == {"strides=", "padding=", "dilations="}     # input, filters given by position

    assert list(out["hints_off"] or []) == []                  # inlay hints are off by default
    by_line = {h.position.line: h.label for h in out["hints"]}
    assert by_line[line_of("pool1 = max_pool(")] == ": f32[N, 50, 50, 32]"
    assert by_line[line_of("pool4 = max_pool(")] == ": f32[N, 6, 6, 128]"


EDITS = 200
ANSWER_S = 1.0


def test_random_edits_never_crash_the_server():
    """200 random deletions and insertions, each answered (diagnostics for that version, and
    every fourth a hover somewhere) within a second; the server is still right about flowers.cnn afterwards."""
    rng = random.Random(18)
    alphabet = "abcxyz_019()[]{},=:+-*/|>\"'#.\n \t\\é𝔸"
    pool4 = line_of("pool4 = max_pool(")

    async def scenario(s):
        text = TEXT
        s.open(URI, text)
        await s.diagnostics(URI, 1)
        slowest, internal = 0.0, []
        for i in range(EDITS):
            at = rng.randrange(len(text) + 1)
            if text and rng.random() < 0.5:
                text = text[:at] + text[at + rng.randint(1, 6):]
            else:
                text = text[:at] + "".join(rng.choice(alphabet) for _ in range(rng.randint(1, 4))) + text[at:]
            t0 = time.perf_counter()
            v = s.change(URI, text)
            diags = await s.diagnostics(URI, v, timeout=ANSWER_S)
            if i % 4 == 0:                              # and a request on the new text
                lines = text.split("\n")
                line = rng.randrange(len(lines))
                await asyncio.wait_for(s.hover(URI, line, rng.randrange(len(lines[line]) + 1)), ANSWER_S)
            slowest = max(slowest, time.perf_counter() - t0)
            internal += [d.message for d in diags if d.code == "internal"]
        v = s.change(URI, TEXT)
        final = await s.diagnostics(URI, v)
        hover = await s.hover(URI, pool4, LINES[pool4].index("pool4") + 1)
        stderr = await _stderr(s)
        return slowest, internal, final, hover, stderr

    slowest, internal, final, hover, stderr = run(scenario, {"debounce": 0.0})
    assert internal == []
    assert "Traceback" not in stderr, stderr[-3000:]
    assert slowest < ANSWER_S
    assert list(final) == [] and "`f32[N, 6, 6, 128]`" in hover.contents.value


async def _stderr(s) -> str:
    """What the server has written to its stderr so far (it logs handler exceptions there)."""
    proc = s.client._server
    chunks = []
    while True:
        try:
            chunk = await asyncio.wait_for(proc.stderr.read(65536), 0.2)
        except asyncio.TimeoutError:
            break
        if not chunk:
            break
        chunks.append(chunk)
    return b"".join(chunks).decode(errors="replace")
