"""Program -> model.c, model.h and manifest.json, through the one Jinja environment.

Python has decided everything (sizes, offsets, names, expressions); the templates in
templates/ only lay it out. The output is a function of the Program alone, so the same spec
always yields the same bytes."""
from __future__ import annotations

import json
import re
from dataclasses import dataclass
from pathlib import Path

import jinja2

from . import target
from .kernel import PARALLEL_MIN
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


@dataclass(frozen=True)
class GeneratedFiles:
    model: str
    symbol: str
    c: str
    h: str
    manifest: dict

    @property
    def manifest_json(self) -> str:
        return json.dumps(self.manifest, indent=1) + "\n"


def render(program: Program, fingerprint: str = "") -> GeneratedFiles:
    from .. import __version__
    kernels = [ENV.get_template(fn.kernel.template).render(fn=fn).rstrip() for fn in program.kernels]
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
    c = _tidy(ENV.get_template("module.c.j2").render(**ctx))
    h = _tidy(ENV.get_template("module.h.j2").render(**ctx))
    manifest = dict(program.manifest, fingerprint=fingerprint)
    return GeneratedFiles(program.model, program.symbol, c, h, manifest)


def _entry(e) -> str:
    """An entry point, with `(void)name;` for the parameters its body does not use."""
    t = ENV.get_template("entry.c.j2")
    body = t.render(e=e, unused={e.name: []}).split("{", 1)[1]
    unused = [n for _, n in e.params if not re.search(rf"\b{n}\b", body)]
    return t.render(e=e, unused={e.name: unused}).rstrip()


def _tidy(text: str) -> str:
    """No trailing spaces, no runs of blank lines."""
    text = "\n".join(line.rstrip() for line in text.splitlines())
    return re.sub(r"\n{3,}", "\n\n", text).strip("\n") + "\n"


def cdef(header: str) -> str:
    """model.h without preprocessor lines: what cffi's cdef accepts."""
    return "\n".join(line for line in header.splitlines() if not line.lstrip().startswith("#")) + "\n"
