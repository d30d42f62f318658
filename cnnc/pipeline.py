"""The stages, top to bottom: the one module that sees spec, compiler and runtime together.

    parse -> desugar -> check -> grad_graph -> verify -> lower -> emit -> build

`compile` runs them all: `check_source` the front half (parse, desugar, check), `generate`
the back half (grad_graph, verify and lower in `lowered`, then emit and build)."""
from __future__ import annotations

from pathlib import Path

from .spec.desugar import desugar
from .spec.diagnostics import Severity, SpecError
from .spec.parser import parse
from .spec.source import Source
from .compiler import autodiff, build, emit, ir, lower, summary
from .compiler import check as checker
from .compiler.verify import verify


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
        verify(checked.graph)
    return checked


def check(path_or_text, filename: str | None = None) -> ir.Graph:
    """The typed graph of a spec, or SpecError carrying every diagnostic."""
    return _checked_graph(load_source(path_or_text, filename))


def compile(path_or_text, out_dir: str | Path | None = None, emit_only: bool = False,
            filename: str | None = None):
    """Check, differentiate, lower, emit and build a spec; returns the imported module
    (or, with emit_only, the directory holding the generated C)."""
    source = load_source(path_or_text, filename)
    graph = _checked_graph(source)
    return generate(graph, source, Path(out_dir or "generated"), emit_only=emit_only)


def lowered(graph: ir.Graph, source: Source | None = None, fusion: bool = True, fold: bool = True) -> lower.Program:
    """A checked graph (left untouched) differentiated, verified and lowered. `source` gives
    kernel comments their line numbers; fusion=False keeps every op its own kernel; fold=False
    keeps inference batch norms apart from the convs before them."""
    grads = autodiff.grad_graph(graph)
    verify(grads.graph, grads.douts.values())
    return lower.lower(grads, source, fusion=fusion, fold=fold)


def generate(graph: ir.Graph, source: Source | str | None, out_dir: str | Path, emit_only: bool = False,
             fusion: bool = True, fold: bool = True):
    """The back half on a checked graph: the imported module (or, with emit_only, the
    directory of generated files)."""
    source = _source(source, graph)
    program = lowered(graph, source, fusion=fusion, fold=fold)
    files = emit.render(program, emit.fingerprint(source.text))
    return build.build(files, Path(out_dir), emit_only=emit_only)


def memory_summary(graph: ir.Graph, batch_sizes=(1, 32)) -> dict[str, str]:
    """The memory the compiled model needs, for `cnnc check`'s summary."""
    return summary.memory_table(lowered(graph).memory, batch_sizes)


def _source(source, graph: ir.Graph) -> Source:
    return source if isinstance(source, Source) else Source(source or "", graph.source_name)


def _checked_graph(source: Source) -> ir.Graph:
    checked = check_source(source)
    if any(d.severity is Severity.ERROR for d in checked.diagnostics):
        raise SpecError(checked.diagnostics, source)
    return checked.graph
