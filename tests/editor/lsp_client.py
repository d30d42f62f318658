"""A real LSP client session with `cnnc lsp` over its stdio, on pygls's client: start the
server as a user's editor would, open and edit documents, and wait for what it publishes."""
from __future__ import annotations

import asyncio
import sys
from pathlib import Path

from lsprotocol import types as lsp
from pygls.lsp.client import LanguageClient

ROOT = Path(__file__).resolve().parents[2]


class Session:
    """One server process and the diagnostics it has published, per document version."""

    def __init__(self, client: LanguageClient):
        self.client = client
        self.published: dict[str, list[lsp.PublishDiagnosticsParams]] = {}
        self.arrived = asyncio.Event()
        self.versions: dict[str, int] = {}

    async def diagnostics(self, uri: str, version: int | None = None, timeout: float = 10.0):
        """The first diagnostics published for `uri` at `version` (or any, if None)."""
        async def wait():
            while True:
                for p in self.published.get(uri, []):
                    if version is None or p.version == version:
                        return p.diagnostics
                self.arrived.clear()
                await self.arrived.wait()
        return await asyncio.wait_for(wait(), timeout)

    def open(self, uri: str, text: str) -> int:
        self.versions[uri] = 1
        self.client.text_document_did_open(lsp.DidOpenTextDocumentParams(
            lsp.TextDocumentItem(uri=uri, language_id="cnn", version=1, text=text)))
        return 1

    def change(self, uri: str, text: str) -> int:
        self.versions[uri] += 1
        v = self.versions[uri]
        self.client.text_document_did_change(lsp.DidChangeTextDocumentParams(
            lsp.VersionedTextDocumentIdentifier(version=v, uri=uri), [lsp.TextDocumentContentChangeWholeDocument(text)]))
        return v

    async def hover(self, uri: str, line: int, col: int):
        return await self.client.text_document_hover_async(lsp.HoverParams(
            lsp.TextDocumentIdentifier(uri), lsp.Position(line, col)))

    async def definition(self, uri: str, line: int, col: int):
        return await self.client.text_document_definition_async(lsp.DefinitionParams(
            lsp.TextDocumentIdentifier(uri), lsp.Position(line, col)))


async def start(options: dict | None = None) -> Session:
    client = LanguageClient("cnnc-tests", "1")
    session = Session(client)

    @client.feature(lsp.TEXT_DOCUMENT_PUBLISH_DIAGNOSTICS)
    def published(params: lsp.PublishDiagnosticsParams):
        session.published.setdefault(params.uri, []).append(params)
        session.arrived.set()

    await client.start_io(sys.executable, "-m", "cnnc", "lsp", cwd=str(ROOT))
    await client.initialize_async(lsp.InitializeParams(
        capabilities=lsp.ClientCapabilities(), root_uri=ROOT.as_uri(),
        initialization_options=options or {}))
    client.initialized(lsp.InitializedParams())
    return session


async def stop(session: Session) -> None:
    await session.client.shutdown_async(None)
    session.client.exit(None)
    await session.client.stop()
