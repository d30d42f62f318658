"""The stages, top to bottom: the one module that sees spec, compiler and runtime together."""
from __future__ import annotations

from pathlib import Path

from .spec import ast
from .spec.desugar import desugar
from .spec.diagnostics import Severity, SpecError
from .spec.parser import parse
from .spec.source import Source
from .compiler import ir, shapes


def load_source(path_or_text: str | Path, filename: str | None = None) -> Source:
    """A Source from a path, or from spec text (anything containing a newline)."""
    if isinstance(path_or_text, Path) or "\n" not in str(path_or_text):
        path = Path(path_or_text)
        return Source(path.read_text(encoding="utf-8"), filename or str(path))
    return Source(str(path_or_text), filename or "<spec>")


def check_source(source: Source) -> shapes.Checked:
    """Parse, desugar and type-check; raises SpecError only for syntax errors."""
    module = desugar(parse(source))
    checked = shapes.check(module, source)
    if checked.graph is not None:
        ir.verify(checked.graph)
    checked.module = module
    return checked


def check(path_or_text, filename: str | None = None) -> ir.Graph:
    """The typed graph of a spec, or SpecError carrying every diagnostic."""
    source = load_source(path_or_text, filename)
    checked = check_source(source)
    errors = [d for d in checked.diagnostics if d.severity is Severity.ERROR]
    if errors:
        raise SpecError(checked.diagnostics, source)
    return checked.graph
