"""The stages, top to bottom: the one module that sees spec, compiler and runtime together.

    parse -> desugar -> check -> grad_graph -> verify -> lower -> emit -> build

`compile` runs them all: `check_source` the front half (parse, desugar, check), `generate`
the back half (grad_graph, verify and lower in `lowered`, then emit and build). `export_c` is
the inference branch: lower (forward only) -> library (emit's templates) -> a C directory."""
from __future__ import annotations

from pathlib import Path

from .spec.desugar import desugar
from .spec.diagnostics import Severity, SpecError
from .spec.parser import parse, parse_partial
from .spec.source import Source
from .compiler import autodiff, build, emit, ir, library, lower, summary
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
    return _check_module(parse(source), source)


def check_partial(source: Source) -> tuple[list, checker.Checked | None]:
    """For editors: the diagnostics check_source reports (its syntax errors, if any, else the
    checker's), and the checked spec; while some lines have syntax errors, that of the others."""
    module, syntax = parse_partial(source)
    checked = _check_module(module, source) if module is not None else None
    return list(syntax) if syntax else list(checked.diagnostics), checked


def _check_module(module, source: Source) -> checker.Checked:
    checked = checker.check(desugar(module), source)
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
    files = emit.render(program, emit.fingerprint(source.text), spec=source.text)
    return build.build(files, Path(out_dir), emit_only=emit_only)


def inference_program(graph: ir.Graph, source: Source | str | None = None, fusion: bool = True) -> lower.Program:
    """The forward entry point alone, dropout gone: what an exported library runs."""
    return lower.lower(lower.inference_grads(graph), _source(source, graph), fusion=fusion, inference=True)


def export_c(graph: ir.Graph, source: Source | str | None, params: dict, out_dir: str | Path,
             provenance: str = "") -> Path:
    """Write a C inference library of `graph` with `params` (name -> array, e.g. a Model's
    params) compiled in, into out_dir (new, empty or an earlier export; else ExportError).
    `provenance` (the checkpoint, or "initial params") goes in its README."""
    source = _source(source, graph)
    lib = library.render(inference_program(graph, source), params, emit.fingerprint(source.text), provenance)
    return lib.write(out_dir)


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
