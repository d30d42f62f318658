"""`cnnc train --workers N`: start N ranks of the same command on this host through mpiexec.

The launcher is MPI's own (mpiexec from the [mpi] extra's MPICH, or the one on PATH); this
module only builds its command line: the user's arguments without --workers, plus the threads
each rank gets (this process's cores / N unless --threads was given)."""
from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

from .errors import CnncError


def find_mpiexec() -> str | None:
    """mpiexec beside this Python (a venv with the [mpi] extra) first, then on PATH."""
    here = Path(sys.executable).parent / "mpiexec"
    if here.is_file() and os.access(here, os.X_OK):
        return str(here)
    return shutil.which("mpiexec")


def rank_argv(argv: list[str], threads: int) -> list[str]:
    """The command each rank runs: `argv` without --workers, with --threads."""
    out, skip = [], False
    for a in argv:
        if skip:
            skip = False
        elif a == "--workers":
            skip = True
        elif not a.startswith("--workers="):
            out.append(a)
    if not any(a == "--threads" or a.startswith("--threads=") for a in out):
        out += ["--threads", str(threads)]
    return out


def launch(args) -> int:
    from .runtime.distributed import INSTALL_HINT
    from .runtime.model import available_cores
    n = args.workers
    mpiexec = find_mpiexec()
    try:
        import mpi4py  # noqa: F401   the ranks import it; fail here, once, if it is missing
    except ImportError:
        mpiexec = None
    if mpiexec is None:
        raise CnncError(f"--workers {n}: {INSTALL_HINT}")
    from . import train_cmds
    train_cmds.compile_spec(args.spec, args.build_dir)     # once, here: the ranks find it built
    threads = args.threads or max(1, available_cores() // n)
    env = dict(os.environ, OMP_NUM_THREADS=str(threads),
               # Open MPI refuses to start as root without these; MPICH ignores them
               OMPI_ALLOW_RUN_AS_ROOT="1", OMPI_ALLOW_RUN_AS_ROOT_CONFIRM="1")
    cmd = [mpiexec, "-n", str(n), sys.executable, "-m", "cnnc", *rank_argv(args.argv, threads)]
    try:
        code = subprocess.call(cmd, env=env)
    except KeyboardInterrupt:
        return 130
    if code not in (0, 1):              # 1: a rank reported the error itself
        print(f"cnnc: error: training on {n} workers stopped: mpiexec exited with status {code} "
              "(a worker died or was killed; see above)", file=sys.stderr)
    return 0 if code == 0 else 1
