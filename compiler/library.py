"""The C library export: an inference Program and its trained params -> a directory that a C
compiler alone builds into lib<model>.a and a `predict` program.

    model.c      the forward kernels and entry point (module.c.j2 on an inference Program) and
                 the context API (create, run, free)
    model.h      the documented API
    weights.c    the params slab, compiled in
    gemm_core.h  the hand-written GEMM core model.c includes
    predict.c    files of examples in, files of outputs out
    Makefile     `make` (OPENMP=1 for threads, MARCH= for a portable build)
    README.md    how to build and call it
    cnnc-export.json   what was exported, and the marker a later export looks for

Python decides (names, sizes, the weights' bytes, which tile each CPU gets); the templates in
templates/library/ hold the C. The weights are a string literal of little-endian float32
bytes, read through a union as floats: compilers take a 22 MB string in seconds where a
5.5M-element float initializer took 46 s and 1.5 GB of memory (flowers), and no loader,
file or checksum is needed at run time."""
from __future__ import annotations

import binascii
import hashlib
import json
import os
import tempfile
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from .. import __version__
from ..errors import CnncError
from . import emit, target
from .functions import unique
from .kernel import Lin, sanitize
from .lower import Program
from .types import C_TYPES

MARKER = "cnnc-export.json"
FORMAT = "cnnc-c-library"
TEMPLATES = ("model.c", "model.h", "predict.c", "Makefile", "README.md")
WIDTH = {"f32": 4, "i32": 4, "bool": 1}                        # bytes per element in files
WIRE = {"f32": "float32", "i32": "int32", "bool": "uint8 (0 or 1)"}
BYTES_PER_LINE = 32             # of weights.c's string literal
INT_MAX = 2**31 - 1


class ExportError(CnncError):
    """The library cannot be exported: a target directory that is not an export, params that
    do not fit the spec, a model predict cannot feed."""


@dataclass(frozen=True)
class Library:
    """The files of an exported library, by name, and what `make` builds from them."""

    model: str
    symbol: str
    files: dict[str, str]
    products: tuple[str, ...]
    record: dict

    def write(self, out_dir: str | Path) -> Path:
        return write(self, out_dir)


@dataclass(frozen=True)
class Port:
    """An input or output of the forward entry point, as the library's C names it."""

    name: str                   # the spec's
    dtype: str
    shape: str                  # as the spec writes it: f32[N, 8, 8, 1]
    cname: str                  # the forward entry point's parameter
    ctype: str                  # of its elements
    count: str                  # the macro of its element count: DIGITS_X_COUNT
    per_example: int            # elements per example (the coefficient of N)
    fixed: int                  # elements whatever N is
    width: int                  # bytes per element in predict's files
    wire: str                   # what those bytes are
    low: int | None = None      # ids must lie in [low, high) (embedding ids)
    high: int | None = None


def params_slab(program: Program, params: dict[str, np.ndarray]) -> np.ndarray:
    """The params slab the forward entry point reads, laid out as the manifest says, then the
    state (batch norm's moving statistics), which forward reads from just after the params;
    every param and state must be given with its shape (ExportError lists each that is not)."""
    state = program.manifest.get("state", [])
    slab = np.zeros(program.params_size + program.manifest.get("state_size", 0), np.float32)
    problems = []
    slots = [(p, p["offset"]) for p in program.manifest["params"]]
    slots += [(v, program.params_size + v["offset"]) for v in state]       # the state after the params
    for p, at in slots:
        value = params.get(p["name"])
        if value is None:
            problems.append(f"`{p['name']}` is missing (f32{p['shape']})")
            continue
        value = np.asarray(value)
        if tuple(value.shape) != tuple(p["shape"]):
            problems.append(f"`{p['name']}` has shape {list(value.shape)}; the spec says {p['shape']}")
            continue
        slab[at:at + value.size] = value.reshape(-1)
    extra = sorted(set(params) - {p["name"] for p, _ in slots})
    problems += [f"`{name}` is not a param or state of the spec" for name in extra]
    if problems:
        raise ExportError(f"the params do not fit model `{program.model}`:\n  " + "\n  ".join(problems))
    return slab


def render(program: Program, params: dict[str, np.ndarray], fingerprint: str = "",
           provenance: str = "") -> Library:
    """The library's files for an inference Program (lower(..., inference=True)) and the
    trained params by name; `provenance` (where the weights came from) goes in the README."""
    if [e.name for e in program.entries] != ["forward"]:
        raise ValueError("render takes an inference program: lower(..., inference=True)")
    slab = params_slab(program, params)
    sym = program.symbol
    entry = program.entries[0]
    manifest = program.manifest
    taken: set[str] = set()
    bounds = {b["input"]: b for b in manifest["bounds"]}
    types = {i["name"]: i for i in manifest["inputs"]} | {o["name"]: o for o in manifest["outputs"]}
    ports: dict[str, list[Port]] = {"input": [], "output": []}
    for (_, cname), desc in zip(entry.params, entry.args):
        if desc[0] not in ports:
            continue
        t = types[desc[1]]
        count = _count(t["shape"])
        b = bounds.get(desc[1]) if desc[0] == "input" else None
        ports[desc[0]].append(Port(
            desc[1], t["dtype"], f"{t['dtype']}[{', '.join(str(d) for d in t['shape'])}]", cname,
            C_TYPES[t["dtype"]],
            unique(f"{sym.upper()}_{sanitize(desc[1]).upper()}_COUNT", taken), count.a, count.b,
            WIDTH[t["dtype"]], WIRE[t["dtype"]], b["low"] if b else None, b["high"] if b else None))
    inputs, outputs = ports["input"], ports["output"]
    if not inputs:
        raise ExportError(f"model `{program.model}` has no feature input: nothing for predict to read")
    unbatched = [p.name for p in inputs if p.per_example == 0 or p.fixed]
    if unbatched:
        raise ExportError(f"input `{unbatched[0]}` of model `{program.model}` does not grow with the batch "
                          "(no N in its shape): predict cannot tell the batch size from its file")
    limit = manifest.get("batch_limit")
    data = slab.astype("<f4").tobytes()
    sha = hashlib.sha256(data).hexdigest()
    ctx = emit.context(program)
    ctx.update(
        SYM=sym.upper(), inputs=inputs, outputs=outputs, target_choices=target.choices(),
        max_batch=min(limit["max_batch"], INT_MAX) if limit else INT_MAX,
        params_count=program.params_size, params_bytes=len(data), weights_sha256=sha,
        weights_count=slab.size, has_state=any(n == "state" for _, n in entry.params),
        fingerprint=fingerprint, provenance=provenance, lib=f"lib{sym}.a",
        entry_params=entry.params, run_params=[p for p in entry.params if p[1] not in ("params", "state", "ws")],
        tls_bytes=max(_packing_bytes(t) for t in target.TARGETS.values()))
    files = {name: emit.tidy(emit.ENV.get_template(f"library/{name}.j2").render(**ctx)) for name in TEMPLATES}
    files["weights.c"] = emit.tidy(emit.ENV.get_template("library/weights.c.j2").render(**ctx)) \
        .replace("@BYTES@\n", _string_literal(data))
    files.update(emit.headers())
    products = (f"lib{sym}.a", f"lib{sym}.so", "predict", "model.o", "weights.o", "predict.o")
    record = {"format": FORMAT, "version": 1, "model": program.model, "symbol": sym, "cnnc_version": __version__,
              "source": program.source_name, "fingerprint": fingerprint, "weights": provenance,
              "params": program.params_size, "weights_sha256": sha,
              "inputs": [p.name for p in inputs], "outputs": [p.name for p in outputs],
              "files": sorted(files) + [MARKER], "products": list(products)}
    return Library(program.model, sym, files, products, record)


def _packing_bytes(t: target.Target) -> int:
    """Bytes of gemm_core.h's thread-local packing buffers (cg_bpack, cg_apack) for target t:
    what each thread that runs the model holds."""
    return 4 * (t.kc * (t.nc + t.nr) + (t.mc + t.mr) * t.kc)


def _count(shape) -> Lin:
    """Elements of a manifest shape (ints, "N", "2*N") as a*N + b."""
    a = b = 1
    batched = False
    for d in shape:
        if isinstance(d, int):
            a, b = a * d, b * d
        else:
            coeff, _, _ = str(d).partition("*N")
            a *= 1 if str(d) == "N" else int(coeff)
            batched = True
    return Lin(a, 0) if batched else Lin(0, b)


def _string_literal(data: bytes) -> str:
    """`data` as lines of a C string literal, every byte a \\x escape (BYTES_PER_LINE a line)."""
    if not data:
        return '    ""\n'
    hexed = np.frombuffer(binascii.hexlify(data), np.uint8).reshape(-1, 2)
    escaped = np.empty((len(data), 4), np.uint8)
    escaped[:, 0], escaped[:, 1], escaped[:, 2:] = ord("\\"), ord("x"), hexed
    full, rest = divmod(len(data), BYTES_PER_LINE)
    body = escaped[:full * BYTES_PER_LINE].reshape(full, 4 * BYTES_PER_LINE)
    lines = np.empty((full, 4 * BYTES_PER_LINE + 7), np.uint8)
    lines[:, :5] = np.frombuffer(b'    "', np.uint8)
    lines[:, 5:-2] = body
    lines[:, -2:] = np.frombuffer(b'"\n', np.uint8)
    text = lines.tobytes().decode("ascii")
    if rest:
        text += '    "' + escaped[full * BYTES_PER_LINE:].tobytes().decode("ascii") + '"\n'
    return text


# --------------------------------------------------------------------------- the directory


def write(lib: Library, out_dir: str | Path) -> Path:
    """Write the library into out_dir: a new or empty directory, or one holding an earlier
    export (its files and build products are replaced). Any other directory is refused, so an
    export never overwrites what it did not write."""
    out = Path(out_dir)
    previous = check_directory(out)
    out.mkdir(parents=True, exist_ok=True)
    for name in (previous or {}).get("files", []) + (previous or {}).get("products", []):
        path = out / name
        if name == Path(name).name and path.is_file() and not path.is_symlink():
            path.unlink()
    for name, text in lib.files.items():
        _write(out / name, text)
    _write(out / MARKER, json.dumps(lib.record, indent=1) + "\n")
    return out


def check_directory(out_dir: str | Path) -> dict | None:
    """ExportError unless out_dir may receive an export: it is missing, empty, or holds an
    earlier one (whose record this returns)."""
    out = Path(out_dir)
    if out.exists() and not out.is_dir():
        raise ExportError(f"{out} exists and is not a directory")
    previous = _previous(out)
    if out.exists() and previous is None and any(out.iterdir()):
        raise ExportError(f"{out} is not empty and holds no earlier export (no {MARKER}): refusing to "
                          "overwrite it; export into a new or empty directory")
    return previous


def _previous(out: Path) -> dict | None:
    """The record of the export in `out`, or None if it holds none."""
    try:
        record = json.loads((out / MARKER).read_text())
    except (OSError, ValueError):
        return None
    return record if isinstance(record, dict) and record.get("format") == FORMAT else None


def _write(path: Path, text: str) -> None:
    """Write atomically: a temp file beside it, then a rename."""
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "w", newline="\n") as f:
            f.write(text)
        os.chmod(tmp, 0o644)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
