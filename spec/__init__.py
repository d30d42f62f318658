"""The spec language: text -> AST with source spans, and the diagnostics that point into it."""
from .diagnostics import Diagnostic, Severity, SpecError
from .parser import parse
from .source import Source, Span

__all__ = ["Diagnostic", "Severity", "SpecError", "Source", "Span", "parse"]
