"""The `build` stage: compile the files `emit` gave with cffi's out-of-line API mode into an
importable package.

    out_dir/<model>/              model.c  model.h  gemm_api.h  gemm_core.h  gemm_core.c
                                  manifest.json  __init__.py
                                  (the last build's files, for reading and importing)
    out_dir/<model>/build-<key>/  the same C, _<model>_<key>.<abi>.so, and one manifest and
                                  loader per spec that shares this C (they differ in run-time
                                  values such as a learning rate)
    <cache>/core/<core key>/      gemm_core.o: the GEMM core, compiled once per target, flags,
                                  compiler and CPU, and linked into every model built so
                                  (<cache>: cnnc/cache.py)

cffi writes the Python binding's C (`emit_c_code`); gcc compiles it, model.c and (the first
time) the GEMM core in parallel and links them. The core is most of the C a model runs but none
of what differs between models, so a model compiles only its own kernels. `key` hashes the generated C, the flags, the compiler, the CPU target and the
cnnc version (not the spec's path), so an unchanged spec is never rebuilt, a changed one never
collides with a module already loaded in this process, and concurrent builds never touch
each other's files."""
from __future__ import annotations

import hashlib
import contextlib
import importlib.machinery
import io
import importlib.util
import json
import os
import platform
import shlex
import shutil
import subprocess
import sys
import sysconfig
import tempfile
import time
from pathlib import Path

from .. import __version__, cache
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
    """Every flag the model is compiled and linked with: optimisation, the current target's ISA
    flags (-march=native where the CPU runs it), OpenMP, and CNNC_CFLAGS, the user's own (e.g.
    `-fsanitize=address,undefined`), which reach the cache key through this list."""
    return (OPT_FLAGS + target.flags(target.current(), compiler()) + openmp_flags()
            + shlex.split(os.environ.get("CNNC_CFLAGS", "")))


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
    for part in (files.c, files.h, files.core, *(text for _, text in files.headers), " ".join(c_flags()), compiler(),
                 native_target(), __version__, cffi.__version__, sys.implementation.cache_tag):
        h.update(part.encode())
        h.update(b"\0")
    return h.hexdigest()[:12]


def core_dir(files: emit.GeneratedFiles, fallback: Path) -> Path:
    """The folder of the GEMM core object for `files`' target and this compiler, flags and CPU:
    in the cache root, or under `fallback` where the cache root cannot be written."""
    h = hashlib.sha256()
    for part in (files.core, *(text for _, text in files.headers), " ".join(c_flags()), compiler(),
                 native_target(), __version__):
        h.update(part.encode())
        h.update(b"\0")
    key = h.hexdigest()[:12]
    d = cache.folder("core", key) or cache.folder("core", key, under=fallback)
    if d is None:
        raise CnncBuildError(f"cannot write the GEMM core's cache in {cache.root()} or {fallback}; "
                             f"set CNNC_CACHE_DIR to a writable folder")
    return d


KEEP_BUILDS = 8               # builds kept per model folder, newest first ...
SWEEP_AFTER_S = 3600          # ... and none younger than this is ever removed


def build(files: emit.GeneratedFiles, out_dir: Path, emit_only: bool = False):
    """Write `files` into out_dir/<model>/ and build them (unless emit_only, or built already);
    returns the imported package (or its directory if emit_only).

    Each build lives in its own folder, build-<key>/, which never changes once its extension is
    in place: processes building different specs with one model name into one folder, or the
    same spec at once, never see each other's files (a lock makes the second wait for the
    first's compile). The model folder's own model.c, model.h and manifest.json are a copy of
    the last build, for reading."""
    out_dir = Path(out_dir)
    pkg = out_dir / sanitize(files.model)
    pkg.mkdir(parents=True, exist_ok=True)
    key = cache_key(files)
    modname = f"_{files.symbol}_{key}"
    manifest = dict(files.manifest, extension=modname)
    manifest_text = json.dumps(manifest, indent=1) + "\n"
    sources = [("model.c", files.c), ("model.h", files.h), *files.headers, ("gemm_core.c", files.core)]
    for name, text in sources:
        _write(pkg / name, text)
    _write(pkg / "manifest.json", manifest_text)
    _write(pkg / "__init__.py", _loader("manifest.json", f"build-{key}"))
    if emit_only:
        return pkg
    here = pkg / f"build-{key}"
    here.mkdir(exist_ok=True)
    so = here / (modname + importlib.machinery.EXTENSION_SUFFIXES[0])
    if not so.exists():
        with _locked(here / ".lock"):
            if not so.exists():              # another process may have built it meanwhile
                for name, text in sources:
                    _write(here / name, text)
                compile_extension(files, here, modname, so)
                _sweep(pkg, keep=here)
    # Specs that differ only in run-time values (a learning rate) share the extension but not the
    # manifest, so each manifest gets its own file and loader in the build, and the imported
    # package is keyed by both.
    mkey = hashlib.sha256(manifest_text.encode()).hexdigest()[:12]
    _write(here / f"manifest-{mkey}.json", manifest_text)
    loader = here / f"model-{mkey}.py"
    _write(loader, _loader(f"manifest-{mkey}.json", "."))
    return import_package(loader, f"{pkg.name}_{key}_{mkey}")


@contextlib.contextmanager
def _locked(path: Path):
    """An exclusive advisory lock on `path` for the block (a no-op where fcntl is missing)."""
    try:
        import fcntl
    except ImportError:                   # pragma: no cover - not POSIX
        yield
        return
    with open(path, "a") as f:
        fcntl.flock(f, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(f, fcntl.LOCK_UN)


def _sweep(pkg: Path, keep: Path) -> None:
    """Remove old builds (beyond the newest KEEP_BUILDS, and older than SWEEP_AFTER_S) and
    temp folders of killed builds: never one in use, which is younger."""
    now = time.time()

    def age(p: Path) -> float:
        try:
            return now - p.stat().st_mtime
        except OSError:
            return 0.0
    builds = sorted((p for p in pkg.glob("build-*") if p.is_dir() and p != keep), key=age)
    for old in builds[KEEP_BUILDS - 1:]:
        if age(old) > SWEEP_AFTER_S:
            shutil.rmtree(old, ignore_errors=True)
    for tmp in pkg.glob("build-*/.build-*"):
        if age(tmp) > SWEEP_AFTER_S:
            shutil.rmtree(tmp, ignore_errors=True)


def _write(path: Path, text: str) -> None:
    """Write only when the content changed, atomically (a unique temp file, then a rename)."""
    try:
        if path.read_text() == text:
            return
    except (OSError, UnicodeDecodeError):
        pass
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    with os.fdopen(fd, "w") as f:
        f.write(text)
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
        core = core_dir(files, pkg.parent.parent / ".cnnc-cache")
        core_o = core / "gemm_core.o"
        with contextlib.ExitStack() as held:
            if not core_o.exists():
                held.enter_context(_locked(core / ".lock"))     # one process compiles it, others wait
            fresh = not core_o.exists()
            if fresh:
                for name, text in [*files.headers, ("gemm_core.c", files.core)]:
                    _write(core / name, text)
                partial = core / f".gemm_core-{os.getpid()}.o"
                jobs.append([cc, "-c", "-fPIC", *flags, *WARN_FLAGS, "-I", str(core), str(core / "gemm_core.c"),
                             "-o", str(partial)])
            procs = [subprocess.Popen(j, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True) for j in jobs]
            outs = [(p, p.communicate()[0]) for p in procs]
            for (p, out), job in zip(outs, jobs):
                if p.returncode != 0:
                    if fresh:
                        partial.unlink(missing_ok=True)
                    raise CnncBuildError(
                        f"internal error: the C compiler rejected the code generated for model "
                        f"`{files.model}` ({pkg / 'model.c'}). This is a bug in cnnc; please report it "
                        f"with your spec.\ncommand: {' '.join(job)}", out.strip())
            if fresh:
                os.replace(partial, core_o)
        link = [cc, "-shared", *flags, str(tmp / "model.o"), str(tmp / "wrapper.o"), str(core_o), "-lm",
                "-o", str(tmp / so.name)]
        r = subprocess.run(link, capture_output=True, text=True)
        if r.returncode != 0:
            raise CnncBuildError(f"internal error: linking model `{files.model}` failed\n"
                                 f"command: {' '.join(link)}", (r.stdout + r.stderr).strip())
        os.replace(tmp / so.name, so)


def import_package(loader: Path, key: str):
    """Import the generated package whose loader is `loader`, under a name unique to its build."""
    name = f"_cnnc_generated_{key}"
    if name in sys.modules:
        return sys.modules[name]
    spec = importlib.util.spec_from_file_location(name, loader,
                                                  submodule_search_locations=[str(loader.parent)])
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module
    try:
        spec.loader.exec_module(module)
    except BaseException:
        del sys.modules[name]
        raise
    return module


def _loader(manifest_file: str, build_dir: str) -> str:
    """The Python of a generated package: read `manifest_file` beside it and load the extension
    from `build_dir` (names are written as Python literals, never spliced in as code)."""
    return LOADER.format(manifest=repr(manifest_file), build=repr(build_dir))


LOADER = '''"""A model generated by cnnc: `Model(seed=0)` is a trainable instance; see manifest.json."""
import importlib.machinery as _machinery
import importlib.util as _util
import json as _json
import os as _os
import pathlib as _pathlib

from cnnc.runtime.model import InputError, Model as _Model

_here = _pathlib.Path(__file__).parent
manifest = _json.loads((_here / {manifest}).read_text())
# OpenMP threads wait for work asleep, not spinning, unless the user chose (read when the
# OpenMP runtime loads, with the extension): with another process busy on a core, a spinning
# thread held the core its teammate needed, and every parallel region waited out a time
# slice (busy 2-core Zen 3: flowers batch-1 latency 96 -> 8 ms, mnist b128 step 312 -> 96 ms).
_os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")
_so = _here / {build} / (manifest["extension"] + _machinery.EXTENSION_SUFFIXES[0])
_spec = _util.spec_from_file_location(__name__ + "." + manifest["extension"], _so)
_ext = _util.module_from_spec(_spec)
_spec.loader.exec_module(_ext)
ffi, lib = _ext.ffi, _ext.lib


class Model(_Model):
    __doc__ = _Model.__doc__

    def __init__(self, seed=0):
        super().__init__(lib, ffi, manifest, seed=seed)


__all__ = ["Model", "InputError", "manifest", "ffi", "lib"]
'''
