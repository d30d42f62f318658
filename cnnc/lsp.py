"""`cnnc lsp`: the Language Server Protocol over stdio, on pygls.

A thin layer: it keeps each open document's latest text, asks cnnc/editor.py about it and
says the answers in the protocol's terms (lines and UTF-16 columns). Diagnostics are
published on open and, debounced, after changes; requests check the newest text first, so
an answer never lags an edit. Any exception inside a handler is logged and answered with
nothing: the server goes on."""
from __future__ import annotations

import asyncio
import bisect
import functools
import logging
from urllib.parse import unquote, urlparse

from lsprotocol import types as lsp
from pygls.lsp.server import LanguageServer

from . import __version__, editor
from .spec.diagnostics import Severity, sort_diagnostics
from .spec.source import Span

log = logging.getLogger("cnnc.lsp")

DEBOUNCE_S = 0.2          # quiet time after a change before diagnostics are published


# ---------------------------------------------------------------- positions

class Lines:
    """Character offsets <-> LSP positions (0-based line, UTF-16 column); lines end at `\\n`
    only, as cnnc's Source counts them."""

    def __init__(self, text: str):
        self.text = text
        self.starts = [0] + [i + 1 for i, ch in enumerate(text) if ch == "\n"]

    def position(self, offset: int) -> lsp.Position:
        offset = max(0, min(offset, len(self.text)))
        line = bisect.bisect_right(self.starts, offset) - 1
        part = self.text[self.starts[line]:offset]
        return lsp.Position(line, len(part.encode("utf-16-le")) // 2)

    def offset(self, pos: lsp.Position) -> int:
        if pos.line >= len(self.starts):
            return len(self.text)
        start = self.starts[pos.line]
        end = self.starts[pos.line + 1] - 1 if pos.line + 1 < len(self.starts) else len(self.text)
        units, i = 0, start
        while i < end and units < pos.character:
            units += 2 if ord(self.text[i]) > 0xFFFF else 1
            i += 1
        return i

    def range(self, span: Span) -> lsp.Range:
        return lsp.Range(self.position(span.start), self.position(span.end))


# ---------------------------------------------------------------- the server

class CnncServer(LanguageServer):
    def __init__(self):
        super().__init__("cnnc", __version__, text_document_sync_kind=lsp.TextDocumentSyncKind.Full)
        self.analyses: dict[str, tuple[int | None, str, editor.Analysis]] = {}
        self.pending: dict[str, asyncio.TimerHandle] = {}
        self.debounce = DEBOUNCE_S
        self.inlay_hints = False            # off unless the client's options turn them on

    def analysis(self, uri: str) -> tuple[editor.Analysis, Lines]:
        """The newest text of `uri`, checked (once per version)."""
        doc = self.workspace.get_text_document(uri)
        text = doc.source
        cached = self.analyses.get(uri)
        if cached is None or cached[0] != doc.version or cached[1] != text:
            cached = (doc.version, text, editor.analyze(text, _filename(uri)))
            self.analyses[uri] = cached
        return cached[2], Lines(text)

    def schedule(self, uri: str, delay: float) -> None:
        old = self.pending.pop(uri, None)
        if old is not None:
            old.cancel()
        loop = asyncio.get_running_loop()
        self.pending[uri] = loop.call_later(delay, self.publish, uri)

    def publish(self, uri: str) -> None:
        self.pending.pop(uri, None)
        try:
            an, lines = self.analysis(uri)
            version = self.workspace.get_text_document(uri).version
            diags = [_diagnostic(d, lines, uri) for d in sort_diagnostics(an.diagnostics)]
            if an.internal_error:
                log.error("internal error checking %s:\n%s", uri, an.internal_error)
        except Exception:                                  # pragma: no cover - last resort
            log.exception("publishing diagnostics for %s", uri)
            return
        self.text_document_publish_diagnostics(lsp.PublishDiagnosticsParams(uri, diags, version))


def _filename(uri: str) -> str:
    parsed = urlparse(uri)
    return unquote(parsed.path) if parsed.scheme == "file" else uri


def _diagnostic(d, lines: Lines, uri: str) -> lsp.Diagnostic:
    """One cnnc diagnostic, with its notes and help under the message as `cnnc check` prints them."""
    text = "\n".join([d.message] + [f"note: {n}" for n in d.notes] + ([f"help: {d.help}"] if d.help else []))
    related = [lsp.DiagnosticRelatedInformation(lsp.Location(uri, lines.range(lb.span)), lb.text or "see here")
               for lb in d.labels if not lb.primary]
    severity = lsp.DiagnosticSeverity.Error if d.severity is Severity.ERROR else lsp.DiagnosticSeverity.Warning
    return lsp.Diagnostic(lines.range(d.span), text, severity=severity, code=d.code, source="cnnc",
                          related_information=related or None)


def _safe(default=None):
    """A handler that logs its exception and answers `default` instead of failing."""
    def wrap(fn):
        @functools.wraps(fn)
        def run(*args, **kwargs):
            try:
                return fn(*args, **kwargs)
            except Exception:
                log.exception("cnnc lsp: %s failed", fn.__name__)
                return default
        return run
    return wrap


server = CnncServer()


@server.feature(lsp.INITIALIZE)
@_safe()
def initialize(ls: CnncServer, params: lsp.InitializeParams):
    _configure(ls, params.initialization_options)


@server.feature(lsp.WORKSPACE_DID_CHANGE_CONFIGURATION)
@_safe()
def did_change_configuration(ls: CnncServer, params: lsp.DidChangeConfigurationParams):
    settings = params.settings if isinstance(params.settings, dict) else {}
    _configure(ls, settings.get("cnnc", settings))


def _configure(ls: CnncServer, options) -> None:
    """Options, from initializationOptions or the `cnnc` settings: inlayHints (bool), debounce (s)."""
    if not isinstance(options, dict):
        return
    if "inlayHints" in options:
        ls.inlay_hints = bool(options["inlayHints"])
    if "debounce" in options:
        ls.debounce = max(0.0, float(options["debounce"]))


@server.feature(lsp.TEXT_DOCUMENT_DID_OPEN)
@_safe()
def did_open(ls: CnncServer, params: lsp.DidOpenTextDocumentParams):
    ls.schedule(params.text_document.uri, 0.0)


@server.feature(lsp.TEXT_DOCUMENT_DID_CHANGE)
@_safe()
def did_change(ls: CnncServer, params: lsp.DidChangeTextDocumentParams):
    ls.schedule(params.text_document.uri, ls.debounce)


@server.feature(lsp.TEXT_DOCUMENT_DID_SAVE)
@_safe()
def did_save(ls: CnncServer, params: lsp.DidSaveTextDocumentParams):
    ls.schedule(params.text_document.uri, 0.0)


@server.feature(lsp.TEXT_DOCUMENT_DID_CLOSE)
@_safe()
def did_close(ls: CnncServer, params: lsp.DidCloseTextDocumentParams):
    uri = params.text_document.uri
    pending = ls.pending.pop(uri, None)
    if pending is not None:
        pending.cancel()
    ls.analyses.pop(uri, None)
    ls.text_document_publish_diagnostics(lsp.PublishDiagnosticsParams(uri, []))


@server.feature(lsp.TEXT_DOCUMENT_HOVER)
@_safe()
def hover(ls: CnncServer, params: lsp.HoverParams):
    an, lines = ls.analysis(params.text_document.uri)
    text = editor.hover(an, lines.offset(params.position))
    if text is None:
        return None
    return lsp.Hover(lsp.MarkupContent(lsp.MarkupKind.Markdown, text))


@server.feature(lsp.TEXT_DOCUMENT_DEFINITION)
@_safe()
def definition(ls: CnncServer, params: lsp.DefinitionParams):
    an, lines = ls.analysis(params.text_document.uri)
    span = editor.definition(an, lines.offset(params.position))
    return None if span is None else lsp.Location(params.text_document.uri, lines.range(span))


@server.feature(lsp.TEXT_DOCUMENT_REFERENCES)
@_safe([])
def references(ls: CnncServer, params: lsp.ReferenceParams):
    an, lines = ls.analysis(params.text_document.uri)
    uri = params.text_document.uri
    return [lsp.Location(uri, lines.range(s)) for s in editor.references(an, lines.offset(params.position))]


_SYMBOL_KINDS = {"input": lsp.SymbolKind.Variable, "param": lsp.SymbolKind.Field,
                 "const": lsp.SymbolKind.Constant, "binding": lsp.SymbolKind.Variable,
                 "scope": lsp.SymbolKind.Namespace, "output": lsp.SymbolKind.Event,
                 "metric": lsp.SymbolKind.Property, "loss": lsp.SymbolKind.Property}


@server.feature(lsp.TEXT_DOCUMENT_DOCUMENT_SYMBOL)
@_safe([])
def document_symbols(ls: CnncServer, params: lsp.DocumentSymbolParams):
    an, lines = ls.analysis(params.text_document.uri)

    def convert(o: editor.Outline) -> lsp.DocumentSymbol:
        whole = o.span.join(o.name_span)
        detail = f"{o.kind} {o.detail}".strip()
        return lsp.DocumentSymbol(o.name or "?", _SYMBOL_KINDS.get(o.kind, lsp.SymbolKind.Variable),
                                  lines.range(whole), lines.range(o.name_span), detail=detail,
                                  children=[convert(c) for c in o.children] or None)
    return [convert(o) for o in editor.outline(an)]


_COMPLETION_KINDS = {"keyword": lsp.CompletionItemKind.Keyword, "op": lsp.CompletionItemKind.Function,
                     "layer": lsp.CompletionItemKind.Class, "initializer": lsp.CompletionItemKind.Constructor,
                     "optimizer": lsp.CompletionItemKind.Module, "name": lsp.CompletionItemKind.Variable,
                     "argument": lsp.CompletionItemKind.Field}


@server.feature(lsp.TEXT_DOCUMENT_COMPLETION, lsp.CompletionOptions(trigger_characters=["(", ","]))
@_safe()
def completion(ls: CnncServer, params: lsp.CompletionParams):
    an, lines = ls.analysis(params.text_document.uri)
    items = [lsp.CompletionItem(c.label, kind=_COMPLETION_KINDS.get(c.kind), detail=c.detail or None,
                                documentation=c.doc or None, insert_text=c.insert,
                                sort_text=f"{'0' if c.kind == 'argument' else '1'}{c.label}")
             for c in editor.completions(an, lines.offset(params.position))]
    return lsp.CompletionList(is_incomplete=False, items=items)


@server.feature(lsp.TEXT_DOCUMENT_INLAY_HINT)
@_safe([])
def inlay_hints(ls: CnncServer, params: lsp.InlayHintParams):
    if not ls.inlay_hints:
        return []
    an, lines = ls.analysis(params.text_document.uri)
    start, end = lines.offset(params.range.start), lines.offset(params.range.end)
    return [lsp.InlayHint(lines.position(at), label, kind=lsp.InlayHintKind.Type, padding_left=False)
            for at, label in editor.inlay_hints(an, start, end)]


def main() -> int:
    """Serve over stdin/stdout until the client says exit."""
    logging.basicConfig(level=logging.WARNING, format="cnnc lsp: %(message)s")
    server.start_io()
    return 0
