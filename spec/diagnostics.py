"""Diagnostics as data (span, message, notes, help) and the one place that renders them.

A diagnostic is built where a mistake is found and rendered here, as text for people
(`FILE:LINE:COL: error: ...` with the offending line underlined) or as JSON for editors."""
from __future__ import annotations

import enum
import json
from dataclasses import dataclass, field
from typing import Iterable, Sequence

from .source import Source, Span


class Severity(enum.Enum):
    ERROR = "error"
    WARNING = "warning"


@dataclass(frozen=True)
class Label:
    """A span to underline; the primary label's start gives FILE:LINE:COL."""

    span: Span
    text: str = ""
    primary: bool = True


@dataclass(frozen=True)
class Diagnostic:
    severity: Severity
    message: str                      # lowercase, no final period, names in `backticks`
    labels: tuple[Label, ...]
    notes: tuple[str, ...] = ()       # facts: "`pool4` is f32[N, 6, 6, 128]"
    help: str | None = None           # the one suggested fix, if any
    code: str = "error"               # stable id for tests and docs, e.g. "reshape-size"

    @property
    def span(self) -> Span:
        for label in self.labels:
            if label.primary:
                return label.span
        return self.labels[0].span


def error(code: str, message: str, span: Span, *, label: str = "", notes: Sequence[str] = (),
          help: str | None = None, secondary: Sequence[Label] = ()) -> Diagnostic:
    """Shorthand for an error with one primary label and optional secondary ones."""
    labels = (Label(span, label, True),) + tuple(secondary)
    return Diagnostic(Severity.ERROR, message, labels, tuple(notes), help, code)


def warning(code: str, message: str, span: Span, *, label: str = "", notes: Sequence[str] = (),
            help: str | None = None) -> Diagnostic:
    return Diagnostic(Severity.WARNING, message, (Label(span, label, True),), tuple(notes), help, code)


class SpecError(Exception):
    """Raised with every diagnostic found when a spec cannot be compiled."""

    def __init__(self, diagnostics: Sequence[Diagnostic], source: Source):
        self.diagnostics = tuple(diagnostics)
        self.source = source
        super().__init__(render_all(self.diagnostics, source))


# ---------------------------------------------------------------- text rendering

def _marks(source: Source, label: Label, caret: str) -> str:
    line, col = source.line_col(label.span.start)
    end_line, end_col = source.line_col(max(label.span.start, label.span.end - 1))
    if end_line != line:                       # multi-line span: underline to the end of its first line
        end_col = len(source.line_text(line).rstrip())
    width = max(1, end_col - col + 1)
    return (" " * (col - 1) + caret * width + (" " + label.text if label.text else "")).rstrip()


def render_text(diag: Diagnostic, source: Source) -> str:
    """rustc/Elm-style report: header, source excerpts with carets, notes, help.

    Labels on the same line share one copy of it: the primary's carets first."""
    line, col = source.line_col(diag.span.start)
    lines = [f"{source.filename}:{line}:{col}: {diag.severity.value}: {diag.message}"]
    ordered = sorted(diag.labels, key=lambda lb: (not lb.primary, lb.span.start))
    groups: dict[int, list[Label]] = {}
    for label in ordered:
        groups.setdefault(source.line_col(label.span.start)[0], []).append(label)
    gutter = max(len(str(n)) for n in groups)
    pad = " " * gutter
    lines.append(pad + " |")
    for n, labels in groups.items():
        lines.append(f"{str(n).rjust(gutter)} | {source.line_text(n).rstrip()}")
        for label in labels:
            lines.append(f"{pad} | {_marks(source, label, '^' if label.primary else '-')}")
    for note in diag.notes:
        lines.append(pad + f" = note: {note}")
    if diag.help:
        lines.append(pad + f" = help: {diag.help}")
    return "\n".join(lines)


def summary_line(diagnostics: Sequence[Diagnostic]) -> str:
    errors = sum(d.severity is Severity.ERROR for d in diagnostics)
    warnings = len(diagnostics) - errors
    parts = []
    if errors:
        parts.append(f"{errors} error{'s' if errors != 1 else ''}")
    if warnings:
        parts.append(f"{warnings} warning{'s' if warnings != 1 else ''}")
    return ", ".join(parts)


def render_all(diagnostics: Sequence[Diagnostic], source: Source) -> str:
    return "\n\n".join(render_text(d, source) for d in sort_diagnostics(diagnostics))


def sort_diagnostics(diagnostics: Iterable[Diagnostic]) -> list[Diagnostic]:
    return sorted(diagnostics, key=lambda d: (d.span.start, d.severity is not Severity.ERROR))


# ---------------------------------------------------------------- JSON rendering

def to_json_obj(diag: Diagnostic, source: Source) -> dict:
    def pos(offset: int) -> dict:
        line, col = source.line_col(offset)
        return {"offset": offset, "line": line, "column": col}

    return {
        "file": source.filename,
        "severity": diag.severity.value,
        "code": diag.code,
        "message": diag.message,
        **{k: v for k, v in pos(diag.span.start).items() if k != "offset"},
        "labels": [{"start": pos(lb.span.start), "end": pos(lb.span.end), "text": lb.text,
                    "primary": lb.primary} for lb in diag.labels],
        "notes": list(diag.notes),
        "help": diag.help,
    }


def render_json(diagnostics: Sequence[Diagnostic], source: Source) -> str:
    return json.dumps([to_json_obj(d, source) for d in sort_diagnostics(diagnostics)], indent=2)


# ---------------------------------------------------------------- suggestions

def edit_distance(a: str, b: str) -> int:
    """Damerau-Levenshtein (optimal string alignment) distance."""
    prev2: list[int] = []
    prev = list(range(len(b) + 1))
    for i, ca in enumerate(a, 1):
        cur = [i] + [0] * len(b)
        for j, cb in enumerate(b, 1):
            cur[j] = min(prev[j] + 1, cur[j - 1] + 1, prev[j - 1] + (ca != cb))
            if i > 1 and j > 1 and ca == b[j - 2] and a[i - 2] == cb:
                cur[j] = min(cur[j], prev2[j - 2] + 1)
        prev2, prev = prev, cur
    return prev[-1]


def did_you_mean(name: str, candidates: Iterable[str]) -> str | None:
    """The closest candidate within a distance that scales with the name's length, if any."""
    best, best_key = None, None
    limit = max(1, min(3, len(name) // 3))
    for cand in sorted(set(candidates)):
        d = edit_distance(name.lower(), cand.lower())
        # ties go to the candidate sharing the longest prefix: `unit` -> `units`, not `init`
        key = (d, -len(_common_prefix(name.lower(), cand.lower())))
        if d <= limit and (best_key is None or key < best_key):
            best, best_key = cand, key
    return best


def _common_prefix(a: str, b: str) -> str:
    n = 0
    while n < min(len(a), len(b)) and a[n] == b[n]:
        n += 1
    return a[:n]
