"""The `emit` stage: Program -> model.c, model.h and manifest.json, through the one Jinja
environment, plus the hand-written GEMM core: its interface (gemm_api.h, which model.c
includes), its code (gemm_core.h) and gemm_core.c, which compiles that code for the target.

Python has decided everything (sizes, offsets, names, expressions); the templates in
templates/ only lay it out. The output is a function of the Program alone, so the same spec
always yields the same bytes."""
from __future__ import annotations

import hashlib
import json
import re
from dataclasses import dataclass
from pathlib import Path

import jinja2

from .. import __version__, cache
from . import target
from .kernel import PARALLEL_MIN, comment_text
from .lower import Program

TEMPLATES = Path(__file__).parent / "templates"

ENV = jinja2.Environment(
    loader=jinja2.FileSystemLoader(str(TEMPLATES)),
    undefined=jinja2.StrictUndefined,
    trim_blocks=True,
    lstrip_blocks=True,
    keep_trailing_newline=True,
    autoescape=False,
)
_compiled = cache.folder("templates")     # templates compiled to bytecode once: ~1 s of a cold compile
if _compiled is not None:
    ENV.bytecode_cache = jinja2.FileSystemBytecodeCache(str(_compiled))


ENV.filters["inert"] = comment_text      # text from outside, inside a C comment
ENV.filters["operands"] = lambda stmt, args: re.sub(r"@(\d+)", lambda m: args[int(m.group(1))], stmt)


# Hand-written C copied beside model.c as it is: the GEMM core's interface and its code.
HEADERS = ("gemm_api.h", "gemm_core.h")


@dataclass(frozen=True)
class GeneratedFiles:
    """What the build writes into out_dir/<model>/: model.c, model.h, the manifest, the
    hand-written headers ((name, text) pairs) and `core`, gemm_core.c: the GEMM core for the
    target, which the build compiles once per machine and links in."""

    model: str
    symbol: str
    c: str
    h: str
    manifest: dict
    headers: tuple[tuple[str, str], ...] = ()
    core: str = ""

    @property
    def manifest_json(self) -> str:
        return json.dumps(self.manifest, indent=1) + "\n"


def fingerprint(text: str) -> str:
    """The manifest's fingerprint of a spec's text: a checkpoint records which spec it came from."""
    return hashlib.sha256(text.encode()).hexdigest()[:16]


def render(program: Program, fingerprint: str = "", spec: str = "") -> GeneratedFiles:
    """The generated files of a Program; `fingerprint` (of the spec's text) and the text itself
    (`spec`: a built Model rebuilds its graph from it to export ONNX) go in the manifest."""
    ctx = context(program)
    c = tidy(ENV.get_template("module.c.j2").render(**ctx))
    h = tidy(ENV.get_template("module.h.j2").render(**ctx))
    manifest = dict(program.manifest, fingerprint=fingerprint, spec=spec)
    core = tidy(ENV.get_template("core.c.j2").render(**ctx))
    return GeneratedFiles(program.model, program.symbol, c, h, manifest, headers(), core)


def headers() -> tuple[tuple[str, str], ...]:
    """The hand-written GEMM core's interface and code: (name, text) pairs. model.c includes
    the interface (gemm_api.h); an exported library's model.c includes the code too."""
    return tuple((name, (TEMPLATES / name).read_text()) for name in HEADERS)


def context(program: Program) -> dict:
    """What module.c.j2 and module.h.j2 (and templates that extend them) lay out: the kernels
    and entry points rendered, the constants they use, the target and the workspace."""
    kernels = [_kernel(fn) for fn in program.kernels]
    used = set()
    for e in program.entries:
        for s in e.steps:
            used.update(re.findall(r"\bk\d+\b", " ".join(s.args + (s.src,))))
    consts = [c for c in program.consts if c[0] in used]
    ws = program.memory["workspace"]
    tgt = target.current()
    ctx = dict(p=program, version=__version__, parallel_min=PARALLEL_MIN, symbol=program.symbol, kernels=kernels, consts=consts,
               target=tgt.name, target_defines=target.defines(tgt),
               ws={"fixed": ws["fixed_bytes"], "per_example": ws["per_example_bytes"]})
    ctx["entries"] = {e.name: _entry(e) for e in program.entries}
    return ctx


def _kernel(fn) -> str:
    """A kernel function, with `(void)name;` for the parameters its body does not use."""
    t = ENV.get_template(fn.kernel.template)
    body = t.render(fn=fn, unused=[]).split(f" {fn.name}(", 1)[1].split("\n{", 1)[1]
    names = [re.search(r"(\w+)$", p.strip()).group(1) for p in fn.params.split(",")]
    unused = [n for n in names if not re.search(rf"\b{n}\b", body)]
    return t.render(fn=fn, unused=unused).rstrip()


def _entry(e) -> str:
    """An entry point, with `(void)name;` for the parameters its body does not use."""
    t = ENV.get_template("entry.c.j2")
    body = t.render(e=e, unused={e.name: []}).split("{", 1)[1]
    unused = [n for _, n in e.params if not re.search(rf"\b{n}\b", body)]
    return t.render(e=e, unused={e.name: unused}).rstrip()


def tidy(text: str) -> str:
    """No trailing spaces, no runs of blank lines."""
    text = "\n".join(line.rstrip() for line in text.splitlines())
    return re.sub(r"\n{3,}", "\n\n", text).strip("\n") + "\n"


def cdef(header: str) -> str:
    """model.h without preprocessor lines: what cffi's cdef accepts."""
    return "\n".join(line for line in header.splitlines() if not line.lstrip().startswith("#")) + "\n"
