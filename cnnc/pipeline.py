"""The stages, top to bottom: the one module that sees spec, compiler and runtime together."""
from __future__ import annotations

from pathlib import Path

from .spec import ast
from .spec.desugar import desugar
from .spec.diagnostics import Severity, SpecError
from .spec.parser import parse
from .spec.source import Source
from .compiler import check as checker, ir


def load_source(path_or_text: str | Path, filename: str | None = None) -> Source:
    """A Source from a path, or from spec text (anything containing a newline)."""
    if isinstance(path_or_text, Path) or "\n" not in str(path_or_text):
        path = Path(path_or_text)
        return Source(path.read_text(encoding="utf-8"), filename or str(path))
    return Source(str(path_or_text), filename or "<spec>")


def check_source(source: Source) -> checker.Checked:
    """Parse, desugar and type-check; raises SpecError only for syntax errors."""
    module = desugar(parse(source))
    checked = checker.check(module, source)
    if checked.graph is not None:
        ir.verify(checked.graph)
    return checked


def check(path_or_text, filename: str | None = None) -> ir.Graph:
    """The typed graph of a spec, or SpecError carrying every diagnostic."""
    return _checked_graph(load_source(path_or_text, filename))


def compile(path_or_text, out_dir: str | Path | None = None, emit_only: bool = False,
            filename: str | None = None):
    """Check, differentiate, lower, emit and build a spec; returns the imported module
    (or, with emit_only, the directory holding the generated C)."""
    from .compiler import build
    source = load_source(path_or_text, filename)
    graph = _checked_graph(source)
    return build.build(graph, source, Path(out_dir or "generated"), emit_only=emit_only)


def _checked_graph(source: Source) -> ir.Graph:
    checked = check_source(source)
    if any(d.severity is Severity.ERROR for d in checked.diagnostics):
        raise SpecError(checked.diagnostics, source)
    return checked.graph
