"""Where cnnc keeps what it makes once per machine and reuses across models and runs: the GEMM
core objects (compiler/build.py), the parser's tables (spec/parser.py) and the compiled
templates (compiler/emit.py). CNNC_CACHE_DIR, else $XDG_CACHE_HOME/cnnc, else ~/.cache/cnnc;
folders are made private to the user (mode 0700), since the parser's cache is a pickle."""
from __future__ import annotations

import os
from pathlib import Path


def root() -> Path:
    if os.environ.get("CNNC_CACHE_DIR"):
        return Path(os.environ["CNNC_CACHE_DIR"])
    return Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "cnnc"


def folder(*parts: str, under: Path | None = None) -> Path | None:
    """root()/parts (or under/parts), made if missing; None where it cannot be made or written,
    so every cache is an optimisation that a read-only home just goes without."""
    base = Path(under or root())
    d = base.joinpath(*parts)
    try:
        base.parent.mkdir(parents=True, exist_ok=True)
        for p in [base, *(base.joinpath(*parts[:i + 1]) for i in range(len(parts)))]:
            p.mkdir(mode=0o700, exist_ok=True)      # each level private, not just the last
    except OSError:
        return None
    return d if os.access(d, os.W_OK) else None
