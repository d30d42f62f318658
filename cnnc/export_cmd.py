"""`cnnc export`: a trained spec leaves Python, as an ONNX file (--onnx) or a C library (--c).

`load_for_export` is the shared first step of every format: build the spec, load the
checkpoint's params into a Model, and refuse what has no inference graph (no feature input,
an output that needs the labels)."""
from __future__ import annotations

import os
import sys
import tempfile
from dataclasses import dataclass
from pathlib import Path

from .errors import CnncError


def add_subcommands(sub) -> None:
    e = sub.add_parser("export", help="write a trained model as an ONNX file or a standalone C library",
                       description="Export the inference graph of SPEC (dropout off, loss and metrics "
                       "left out) with the params of CKPT.")
    e.add_argument("spec", help="path to a .cnn file")
    e.add_argument("--checkpoint", metavar="CKPT", help="trained params (a `cnnc train` checkpoint); default: the "
                   "spec's initial params")
    e.add_argument("--onnx", metavar="FILE", help="write an ONNX model (needs the `onnx` extra: "
                   "pip install -e \".[onnx]\")")
    e.add_argument("--c", metavar="DIR", help="write a self-contained C99 inference library into DIR")
    e.add_argument("--build-dir", default="generated", help="where compiled models are kept")


@dataclass
class Exportable:
    """A spec ready to export: its typed graph, the Model holding the params to ship, and
    where those params came from (for the user's message)."""

    graph: object                 # compiler.ir.Graph, the checked forward graph
    source: object                # spec.source.Source
    model: object                 # runtime.model.Model with the params loaded
    params_from: str              # "checkpoint d.npz (step 120)" or "initial params (no checkpoint)"


def load_for_export(spec: str | Path, checkpoint: str | Path | None = None, build_dir="generated",
                    say=None) -> Exportable:
    """Check and build `spec`, load `checkpoint`'s params (every param must match by name and
    shape; optimizer state is ignored); without a checkpoint, the initial params, said through
    `say`. CnncError when the spec has no inference graph."""
    from . import pipeline
    from .runtime.checkpoint import load_params
    say = say or (lambda msg: print(msg, file=sys.stderr))
    path = Path(spec)
    if not path.is_file():
        raise CnncError(f"no such spec file: {spec}")
    source = pipeline.load_source(path, filename=str(spec))
    graph = pipeline.check(path, filename=str(spec))
    inference_problem(graph)
    module = pipeline.generate(graph, source, Path(build_dir))
    model = module.Model(seed=0)
    if checkpoint is None:
        params_from = "initial params (the spec's initializers, seed 0)"
        say(f"cnnc export: no --checkpoint given: exporting the {params_from}, not trained ones")
    else:
        meta = load_params(checkpoint, model)
        params_from = f"checkpoint {checkpoint} (step {meta['step']})"
    return Exportable(graph, source, model, params_from)


def inference_problem(graph) -> None:
    """CnncError unless the graph has an inference graph: at least one output, fed by a feature
    input, and no output that depends on the labels a loss compares against."""
    from .compiler.inference import label_inputs, output_inputs
    if not graph.outputs:
        raise CnncError(f"model `{graph.model}` declares no output, so there is nothing to export: "
                        "add `output NAME = EXPR` for what inference should return")
    feeds = output_inputs(graph)
    if not any(feeds.values()):
        raise CnncError(f"model `{graph.model}` has no feature input: its outputs depend on no input "
                        f"(only on params and constants); declare the input they should read")
    labels = label_inputs(graph)
    for name, inputs in feeds.items():
        bad = [v for v in inputs if v.id in labels]
        if bad:
            raise CnncError(f"output `{name}` depends on input `{bad[0].name}`, which the loss reads as labels; "
                            "at inference there are no labels: an exported output must depend on feature "
                            "inputs only (move that output into a metric)")


def cmd_export(args) -> int:
    if not args.onnx and not args.c:
        raise CnncError("nothing to export: give --onnx FILE.onnx and/or --c DIR")
    if args.c:                      # refuse a directory it may not write before building
        from .compiler.library import check_directory
        check_directory(args.c)
    ex = load_for_export(args.spec, args.checkpoint, args.build_dir)
    if args.c:
        export_c(ex, args.c)
    if args.onnx:
        export_onnx(ex, args.onnx)
    return 0


def export_c(ex: Exportable, out_dir, say=None) -> Path:
    """The standalone C library: the forward kernels and `ex`'s params compiled in, with a
    Makefile, predict and a README (pipeline.export_c); says where it went and how to build it."""
    from . import pipeline
    say = say or (lambda msg: print(msg, file=sys.stderr))
    out = pipeline.export_c(ex.graph, ex.source, model_arrays(ex.model), out_dir, ex.params_from)
    say(f"cnnc export: wrote the C library of model `{ex.graph.model}` ({ex.params_from}) to {out}/; "
        f"build it with `make -C {out}`")
    return out


def export_onnx(ex: Exportable, path) -> None:
    """The ONNX file (docs/export.md): write it and say what went in."""
    write_onnx(ex.graph, ex.source, model_arrays(ex.model), path, f"{ex.graph.model} from "
               f"{Path(ex.source.filename).name}, {ex.params_from}")
    print(f"wrote {path}: model `{ex.graph.model}` ({', '.join(ex.graph.outputs)}), {ex.params_from}")


def model_graph(model):
    """(source, graph) of a built Model: the graph rebuilt from the spec text its manifest keeps,
    refused (CnncError) when it has no inference graph."""
    from . import pipeline
    text = model.manifest.get("spec")
    if not text:
        raise CnncError(f"model `{model.name}` was built without its spec text, so its graph cannot be "
                        "exported; build it with cnnc.compile(spec) or run `cnnc export SPEC`")
    source = pipeline.load_source(text, filename=model.manifest.get("source") or "<spec>")
    graph = pipeline.check(text, filename=source.filename)
    inference_problem(graph)
    return source, graph


def model_to_onnx(model, path) -> str:
    """Model.export_onnx: the graph rebuilt from the spec text its manifest keeps."""
    source, graph = model_graph(model)
    return write_onnx(graph, source, model_arrays(model), path, f"{model.name}, step {model.step}")


def model_arrays(model) -> dict:
    """The arrays an export ships, by name: the params, and the state a model keeps between
    calls where it has any (batch norm's moving statistics), which inference reads as they are."""
    return {**dict(getattr(model, "state", None) or {}), **model.params}


def model_to_c(model, out_dir) -> Path:
    """Model.export_c: the C library of the graph its manifest keeps, with its current params."""
    from . import pipeline
    source, graph = model_graph(model)
    return pipeline.export_c(graph, source, model_arrays(model), out_dir, f"model `{model.name}` at step {model.step}")


def write_onnx(graph, source, params: dict, path, doc: str = "") -> str:
    """Convert, validate (onnx.checker, full) and write atomically; an op without a converter
    is a diagnostic at its spec line."""
    try:
        from .compiler.onnx_export import ExportError, to_onnx
    except ImportError as e:
        raise CnncError(f"ONNX export needs the `onnx` extra ({e}): in the cnnc checkout, "
                        "pip install -e \".[onnx]\"") from None
    from .spec.diagnostics import SpecError, error
    try:
        proto = to_onnx(graph, params, doc=doc)
    except ExportError as e:
        raise SpecError([error("onnx-export", e.message, e.span, label="not exportable",
                               help="write it with ops that export (docs/export.md lists them), or add "
                               "a converter for it (compiler/onnx_export/converters.py)")], source) from None
    path = os.fspath(path)
    directory = os.path.dirname(os.path.abspath(path))
    os.makedirs(directory, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{os.path.basename(path)}.", suffix=".tmp", dir=directory)
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(proto.SerializeToString())
        os.replace(tmp, path)
    except BaseException:
        os.unlink(tmp)
        raise
    return path


HANDLERS = {"export": cmd_export}
