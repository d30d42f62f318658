"""What each `cnnc` subcommand does; cli.py only parses arguments."""
from __future__ import annotations

import json
import sys
from pathlib import Path

from . import pipeline
from .errors import CnncError
from .spec import printer
from .spec.diagnostics import Severity, SpecError, render_json, render_text, sort_diagnostics, summary_line


def add_subcommands(sub) -> None:
    """Commands beyond `check`: compile, train, evaluate, predict, export."""
    from . import export_cmd, train_cmds
    train_cmds.add_subcommands(sub)
    export_cmd.add_subcommands(sub)


def run(args) -> int:
    from . import export_cmd, train_cmds
    handler = {**_HANDLERS, **train_cmds.HANDLERS, **export_cmd.HANDLERS}.get(args.command)
    if handler is None:
        raise CnncError(f"unknown command {args.command}")
    try:
        return handler(args)
    except SpecError as e:
        _print_diagnostics(e.diagnostics, e.source, "text")
        return 1
    except CnncError as e:
        print(f"cnnc: error: {e}", file=sys.stderr)
        return 1
    except _user_errors() as e:          # bad data, bad checkpoint, bad input arrays
        print(f"cnnc: error: {e}", file=sys.stderr)
        return 1


def _user_errors() -> tuple:
    """Runtime errors that are the user's to fix (reported plainly, not as cnnc bugs)."""
    from .runtime.checkpoint import CheckpointError
    from .runtime.data import DataError
    from .runtime.train import TrainingDiverged
    errors = [CheckpointError, DataError, TrainingDiverged, FileNotFoundError]
    try:
        from .runtime.model import InputError
        errors.append(InputError)
    except ImportError:
        pass
    return tuple(errors)


def _read(path: str):
    p = Path(path)
    if not p.is_file():
        raise CnncError(f"no such spec file: {path}")
    try:
        return pipeline.load_source(p, filename=path)
    except UnicodeDecodeError:
        raise CnncError(f"{path} is not a UTF-8 text file") from None


def cmd_check(args) -> int:
    source = _read(args.spec)
    try:
        checked = pipeline.check_source(source)
    except SpecError as e:                        # syntax errors stop before checking
        _print_diagnostics(e.diagnostics, source, args.format)
        return 1
    diags = checked.diagnostics
    errors = [d for d in diags if d.severity is Severity.ERROR]
    if args.format == "json":
        print(render_json(diags, source))
        return 1 if errors else 0
    _print_diagnostics(diags, source, "text")
    if errors:
        return 1
    if args.desugar:
        print(desugared_text(checked))
    elif args.dump:
        from .compiler import ir
        print(ir.dump(checked.graph))
    elif not args.quiet:
        from .compiler import summary
        print(summary.render(checked.graph, args.spec, memory=pipeline.memory_summary(checked.graph)))
    return 0


def _print_diagnostics(diags, source, fmt: str) -> None:
    if fmt == "json":
        print(render_json(diags, source))
        return
    if not diags:
        return
    for d in sort_diagnostics(diags):
        print(render_text(d, source), file=sys.stderr)
        print(file=sys.stderr)
    print(f"{source.filename}: {summary_line(diags)}", file=sys.stderr)


def desugared_text(checked) -> str:
    """The spec in core forms: each layer call replaced by the params and binding it became."""
    lines: list[str] = []
    for stmt in checked.module.body:
        _emit(stmt, checked, lines, 0)
    return "\n".join(lines)


def _emit(stmt, checked, lines, indent) -> None:
    from .spec import ast
    if isinstance(stmt, ast.ScopeBlock):
        name = stmt.name.name if stmt.name.name.isidentifier() else f'"{stmt.name.name}"'
        lines.append("  " * indent + f"scope {name} {{")
        for s in stmt.body:
            _emit(s, checked, lines, indent + 1)
        lines.append("  " * indent + "}")
        return
    for call in _layer_calls(stmt, checked):
        bound, block = checked.expansions[id(call)]
        for _, name, expr in bound:
            lines.append("  " * indent + f"{name} = {printer.expr(expr, checked.subst)}")
        for s in block:
            lines.extend(printer.stmt(s, checked.subst, indent))
    if isinstance(stmt, ast.Let) and id(stmt.value) in checked.subst \
            and checked.subst[id(stmt.value)].id == stmt.name.name:
        return                                    # the expansion already bound this name
    extra = checked.penalties if isinstance(stmt, ast.LossDecl) else ()
    lines.extend(printer.stmt(stmt, checked.subst, indent, loss_extra=extra))


def _layer_calls(node, checked) -> list:
    """Layer calls inside a statement, innermost first (the order they were expanded)."""
    from dataclasses import fields, is_dataclass
    found = []

    def walk(n):
        if isinstance(n, tuple):
            for x in n:
                walk(x)
        elif is_dataclass(n):
            for f in fields(n):
                if f.name != "span":
                    walk(getattr(n, f.name))
            if id(n) in checked.expansions:
                found.append(n)
    walk(node)
    return found


_HANDLERS = {"check": cmd_check}
