"""The CPU target the generated C is built for: its ISA flags and the GEMM core's tile shape.

One table, TARGETS. By default the target is what the C compiler's `-march=native` enables
(__AVX512F__, __AVX2__ + __FMA__, __aarch64__; anything else is `generic`); CNNC_TARGET=
avx512|avx2|neon|generic|native forces one, so a machine can build, and where its CPU allows
run, every path (an AVX-512 machine runs the AVX2 code). gemm_core.h takes the tile and the
blocking as the constants `defines()` returns; kernel rules that depend on the panel width ask
`current()`."""
from __future__ import annotations

import os
import subprocess
from dataclasses import dataclass

from ..errors import CnncError


@dataclass(frozen=True)
class Target:
    """A micro-tile of `mr` rows x `nrv` vectors of `vl` floats, sized so its mr*nrv
    accumulators, the nrv vectors of B and a broadcast value of A stay in the ISA's vector
    registers; blocks of kc (depth, a B micro-panel in L1), mc (rows of A in L2) and nc
    (columns of B)."""

    name: str
    needs: tuple[str, ...]        # macros -march=native must predefine for the CPU to run it
    native: tuple[str, ...]       # flags after -march=native when the CPU runs it
    cross: tuple[str, ...]        # flags that build it for a CPU this one is not (compile only)
    vl: int
    mr: int
    nrv: int
    kc: int
    mc: int
    nc: int
    registers: int                # vector registers of the ISA (what the tile was sized for)

    @property
    def nr(self) -> int:
        """Columns of a micro-tile: the panel width that kernel rules align to."""
        return self.nrv * self.vl


# The tiles follow the usual shapes of BLIS/oneDNN kernels for each register file; the
# measurements behind the x86 choices are in gemm_core.h's header comment.
TARGETS = {t.name: t for t in (
    # 32 zmm: 12 x 2 vectors = 24 accumulators + 2 of B + a broadcast
    Target("avx512", ("__AVX512F__",), (), ("-march=x86-64-v4",),
           vl=16, mr=12, nrv=2, kc=256, mc=96, nc=1024, registers=32),
    # 16 ymm: 6 x 2 vectors = 12 accumulators + 2 of B + a broadcast (12 x 2 spilled every k)
    Target("avx2", ("__AVX2__", "__FMA__"), ("-mno-avx512f",), ("-march=x86-64-v3",),
           vl=8, mr=6, nrv=2, kc=256, mc=96, nc=1024, registers=16),
    # 32 q registers of 4 floats: 8 x 3 vectors = 24 accumulators + 3 of B + 2 of A
    Target("neon", ("__aarch64__",), (), ("-march=armv8-a",),
           vl=4, mr=8, nrv=3, kc=256, mc=96, nc=1020, registers=32),
    # 4-wide vectors that every x86-64 (SSE) and aarch64 CPU has, 16 registers assumed
    Target("generic", (), ("-mno-avx",), (),
           vl=4, mr=6, nrv=2, kc=256, mc=96, nc=1024, registers=16),
)}

MAX_THREADS = 8       # packing buffers in gemm_core.h (static), so the threads a kernel uses

_PREDEFINES: dict[str, tuple[bool, frozenset[str]]] = {}


def compiler() -> str:
    return os.environ.get("CC", "gcc")


def predefines(cc: str | None = None) -> tuple[bool, frozenset[str]]:
    """(whether cc accepts -march=native, the macros it then predefines), once per compiler.
    A cross compiler that rejects -march=native reports its default target's macros."""
    cc = cc or compiler()
    if cc not in _PREDEFINES:
        names: set[str] = set()
        ok = False
        for flags in (["-march=native"], []):
            r = subprocess.run([cc, *flags, "-dM", "-E", "-"], input="", capture_output=True, text=True)
            if r.returncode == 0:
                names = {line.split()[1] for line in r.stdout.splitlines() if line.startswith("#define ")}
                ok = bool(flags)
                break
        _PREDEFINES[cc] = (ok, frozenset(names))
    return _PREDEFINES[cc]


def _fits(t: Target, names: frozenset[str]) -> bool:
    """Whether a compiler predefining `names` targets a CPU with t's ISA."""
    if t.name in ("avx512", "avx2") and "__x86_64__" not in names:
        return False
    if t.name == "neon" and "__aarch64__" not in names:
        return False
    return all(n in names for n in t.needs)


def runnable(t: Target, cc: str | None = None) -> bool:
    """Whether this CPU runs t's code: its -march=native predefines every macro t needs."""
    ok, names = predefines(cc)
    return ok and _fits(t, names)


def native(cc: str | None = None) -> Target:
    """The widest target this CPU runs; for a cross compiler (no -march=native), the widest
    its default target has."""
    names = predefines(cc)[1]
    return next(t for t in (TARGETS[n] for n in ("avx512", "avx2", "neon", "generic")) if _fits(t, names))


def current() -> Target:
    """The target of the next build: CNNC_TARGET if set (read on every call), else native."""
    name = os.environ.get("CNNC_TARGET", "native").strip().lower() or "native"
    if name == "native":
        return native()
    if name not in TARGETS:
        raise CnncError(f"CNNC_TARGET={name!r} is not a target; use one of native, {', '.join(TARGETS)}")
    return TARGETS[name]


def flags(t: Target, cc: str | None = None) -> list[str]:
    """The ISA flags that build t: -march=native (plus t's restrictions) where this CPU runs
    it, so code is tuned for the machine; t's generic -march otherwise (compile only)."""
    if runnable(t, cc):
        x86 = "__x86_64__" in predefines(cc)[1]
        return ["-march=native", *(f for f in t.native if x86 or t.name != "generic")]
    return list(t.cross)


def defines(t: Target) -> list[tuple[str, int]]:
    """The constants gemm_core.h is written against, in the order it documents them."""
    return [("CG_VL", t.vl), ("CG_MR", t.mr), ("CG_NRV", t.nrv), ("CG_KC", t.kc), ("CG_MC", t.mc),
            ("CG_NC", t.nc), ("CG_MAX_THREADS", MAX_THREADS)]


def condition(t: Target) -> str:
    """The C preprocessor test that a compiler builds for a CPU with t's ISA (its predefined
    macros, as _fits reads them); empty for generic, which every CPU runs."""
    arch = {"avx512": "__x86_64__", "avx2": "__x86_64__", "neon": "__aarch64__"}.get(t.name)
    names = dict.fromkeys(((arch,) if arch else ()) + t.needs)
    return " && ".join(f"defined({n})" for n in names)


def choices() -> list[tuple[str, list[tuple[str, int]]]]:
    """Every target's (condition, defines), widest first, generic last: for C that picks its
    tile when it is compiled (an exported library, built on a machine cnnc never saw)."""
    return [(condition(TARGETS[n]), defines(TARGETS[n])) for n in ("avx512", "avx2", "neon", "generic")]
