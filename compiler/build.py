"""The `build` stage: compile the files `emit` gave with cffi's out-of-line API mode into an
importable package.

    out_dir/<model>/  model.c  model.h  gemm_core.h  manifest.json  __init__.py  _<model>_<key>.<abi>.so

cffi writes the Python binding's C (`emit_c_code`); gcc compiles it and model.c in parallel
and links them. The extension's name carries `key`, a hash of the generated C, the flags, the
compiler and the cnnc version, so an unchanged spec is never rebuilt and a changed one never
collides with a module already loaded in this process."""
from __future__ import annotations

import hashlib
import contextlib
import importlib.machinery
import io
import importlib.util
import json
import os
import platform
import subprocess
import sys
import sysconfig
import tempfile
from pathlib import Path

from .. import __version__
from ..errors import CnncError
from . import emit, target
from .kernel import sanitize

OPT_FLAGS = ["-O3", "-fno-math-errno"]   # never -ffast-math: NaN checks, TF numerics; ISA flags: target.py
WARN_FLAGS = ["-Wall", "-Wextra"]


class CnncBuildError(CnncError):
    """The C compiler rejected generated code: a cnnc bug, reported with the compiler's output."""

    def __init__(self, message: str, output: str = ""):
        super().__init__(message + ("\n" + output if output else ""))
        self.output = output


def compiler() -> str:
    return os.environ.get("CC", "gcc")


_OPENMP: dict[str, bool] = {}


def openmp_flags() -> list[str]:
    """["-fopenmp"] if the C compiler supports it (checked once per process)."""
    cc = compiler()
    if cc not in _OPENMP:
        with tempfile.TemporaryDirectory() as d:
            src = Path(d, "t.c")
            src.write_text("#include <omp.h>\nint main(void) { return omp_get_max_threads() < 1; }\n")
            r = subprocess.run([cc, "-fopenmp", str(src), "-o", str(Path(d, "t"))], capture_output=True)
            _OPENMP[cc] = r.returncode == 0
    return ["-fopenmp"] if _OPENMP[cc] else []


def c_flags() -> list[str]:
    """Optimisation, the current target's ISA flags (-march=native where the CPU runs it), OpenMP."""
    return OPT_FLAGS + target.flags(target.current(), compiler()) + openmp_flags()


_TARGET: dict[str, str] = {}


def native_target() -> str:
    """What -march=native means on this machine, as the compiler resolves it (the CPU and
    every ISA extension it enables), checked once per process: part of the cache key, so a
    build directory copied to another CPU is rebuilt rather than loaded (illegal instructions)."""
    cc = compiler()
    if cc not in _TARGET:
        r = subprocess.run([cc, *OPT_FLAGS, "-march=native", "-Q", "--help=target"], capture_output=True, text=True)
        _TARGET[cc] = r.stdout if r.returncode == 0 else platform.processor() + platform.machine()
    return _TARGET[cc]


def cache_key(files: emit.GeneratedFiles) -> str:
    import cffi
    h = hashlib.sha256()
    for part in (files.c, files.h, *(text for _, text in files.headers), " ".join(c_flags()), compiler(), native_target(), __version__,
                 cffi.__version__, sys.implementation.cache_tag):
        h.update(part.encode())
        h.update(b"\0")
    return h.hexdigest()[:12]


def build(files: emit.GeneratedFiles, out_dir: Path, emit_only: bool = False):
    """Write `files` into out_dir/<model>/ and build them (unless emit_only, or built already);
    returns the imported package (or its directory if emit_only)."""
    out_dir = Path(out_dir)
    pkg = out_dir / sanitize(files.model)
    pkg.mkdir(parents=True, exist_ok=True)
    key = cache_key(files)
    modname = f"_{files.symbol}_{key}"
    manifest = dict(files.manifest, extension=modname)
    _write(pkg / "model.c", files.c)
    _write(pkg / "model.h", files.h)
    for name, text in files.headers:
        _write(pkg / name, text)
    _write(pkg / "manifest.json", json.dumps(manifest, indent=1) + "\n")
    _write(pkg / "__init__.py", INIT_PY.format(model=files.model))
    if emit_only:
        return pkg
    suffix = importlib.machinery.EXTENSION_SUFFIXES[0]
    so = pkg / (modname + suffix)
    if not so.exists():
        compile_extension(files, pkg, modname, so)
        for old in pkg.glob(f"_{files.symbol}_*{suffix}"):
            if old != so:
                old.unlink(missing_ok=True)
    # Specs that differ only in run-time values (a learning rate) share the extension but not the
    # manifest, so the imported package is keyed by both.
    pkg_key = hashlib.sha256((key + json.dumps(manifest, sort_keys=True)).encode()).hexdigest()[:12]
    return import_package(pkg, pkg_key)


def _write(path: Path, text: str) -> None:
    """Write only when the content changed, atomically."""
    if path.exists() and path.read_text() == text:
        return
    tmp = path.with_name(path.name + f".tmp{os.getpid()}")
    tmp.write_text(text)
    os.replace(tmp, path)


def compile_extension(files: emit.GeneratedFiles, pkg: Path, modname: str, so: Path) -> None:
    import cffi
    ffi = cffi.FFI()
    ffi.cdef(emit.cdef(files.h))
    ffi.set_source(modname, '#include "model.h"')
    cc, flags = compiler(), c_flags()
    with tempfile.TemporaryDirectory(prefix=".build-", dir=pkg) as tmp:
        tmp = Path(tmp)
        wrapper = tmp / f"{modname}.c"
        with contextlib.redirect_stdout(io.StringIO()):      # cffi announces "generating ..."
            ffi.emit_c_code(str(wrapper))
        include = ["-I", str(pkg), "-I", sysconfig.get_paths()["include"]]
        jobs = [
            [cc, "-c", "-fPIC", *flags, *WARN_FLAGS, *include, str(pkg / "model.c"), "-o", str(tmp / "model.o")],
            [cc, "-c", "-fPIC", "-O2", *include, str(wrapper), "-o", str(tmp / "wrapper.o")],
        ]
        procs = [subprocess.Popen(j, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True) for j in jobs]
        outs = [(p, p.communicate()[0]) for p in procs]
        for (p, out), job in zip(outs, jobs):
            if p.returncode != 0:
                raise CnncBuildError(
                    f"internal error: the C compiler rejected the code generated for model "
                    f"`{files.model}` ({pkg / 'model.c'}). This is a bug in cnnc; please report it "
                    f"with your spec.\ncommand: {' '.join(job)}", out.strip())
        link = [cc, "-shared", *flags, str(tmp / "model.o"), str(tmp / "wrapper.o"), "-lm",
                "-o", str(tmp / so.name)]
        r = subprocess.run(link, capture_output=True, text=True)
        if r.returncode != 0:
            raise CnncBuildError(f"internal error: linking model `{files.model}` failed\n"
                                 f"command: {' '.join(link)}", (r.stdout + r.stderr).strip())
        os.replace(tmp / so.name, so)


def import_package(pkg: Path, key: str):
    """Import the generated package at `pkg` under a name unique to its build."""
    name = f"_cnnc_generated_{pkg.name}_{key}"
    if name in sys.modules:
        return sys.modules[name]
    spec = importlib.util.spec_from_file_location(name, pkg / "__init__.py",
                                                  submodule_search_locations=[str(pkg)])
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module
    try:
        spec.loader.exec_module(module)
    except BaseException:
        del sys.modules[name]
        raise
    return module


INIT_PY = '''"""Model `{model}`, generated by cnnc. `Model(seed=0)` is a trainable instance; see manifest.json."""
import importlib as _importlib
import json as _json
import os as _os
import pathlib as _pathlib

from cnnc.runtime.model import InputError, Model as _Model

manifest = _json.loads(_pathlib.Path(__file__).with_name("manifest.json").read_text())
# OpenMP threads wait for work asleep, not spinning, unless the user chose (read when the
# OpenMP runtime loads, with the extension): with another process busy on a core, a spinning
# thread held the core its teammate needed, and every parallel region waited out a time
# slice (busy 2-core Zen 3: flowers batch-1 latency 96 -> 8 ms, mnist b128 step 312 -> 96 ms).
_os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")
_ext = _importlib.import_module("." + manifest["extension"], __name__)
ffi, lib = _ext.ffi, _ext.lib


class Model(_Model):
    __doc__ = _Model.__doc__

    def __init__(self, seed=0):
        super().__init__(lib, ffi, manifest, seed=seed)


__all__ = ["Model", "InputError", "manifest", "ffi", "lib"]
'''
