"""Data-parallel training on MPI through mpi4py: every rank holds the whole model, computes the
gradients of its slice of each global batch, and one in-place Allreduce over the gradient slab
sums them before every rank applies the same update.

MPI is an optional extra (`pip install "cnnc[mpi]"`): this module imports mpi4py only when a
Group is made, so single-process training never needs it. The rules, in one place:
- a global batch of B examples is split over R ranks as numpy.array_split does: the first
  B mod R ranks take one example more; a rank with none contributes zero gradients;
- each rank scales its slab (gradients, then loss and metrics) by its share of the batch,
  so the allreduced sum is the global batch's mean, whatever the split;
- rank 0's params, optimizer state, step, dropout stream and learning rate are broadcast at the
  start, after any resume, so every rank begins from the same bytes."""
from __future__ import annotations

import hashlib
import os
import sys
import time

import numpy as np

INSTALL_HINT = ('data-parallel training needs MPI: pip install "cnnc[mpi]" (mpi4py and MPICH), or '
                'pip install mpi4py built against the MPI you have')

# variables an MPI launcher sets in each process it starts: hydra (MPICH, Intel MPI), Open MPI, PMIx
_LAUNCHER_VARS = ("PMI_RANK", "PMI_SIZE", "OMPI_COMM_WORLD_SIZE", "PMIX_RANK")


class DistributedError(RuntimeError):
    """The ranks cannot train together: MPI is missing, or they disagree on the spec or data."""


def under_mpi() -> bool:
    """Whether an MPI launcher (mpiexec, mpirun, srun with PMI) started this process."""
    return any(k in os.environ for k in _LAUNCHER_VARS)


def _mpi():
    try:
        from mpi4py import MPI
    except ImportError:
        raise DistributedError(INSTALL_HINT) from None
    return MPI


def shard(n: int, rank: int, size: int) -> tuple[int, int]:
    """[start, stop) of rank's part of n examples: equal parts, the first n % size one longer."""
    q, r = divmod(n, size)
    start = rank * q + min(rank, r)
    return start, start + q + (rank < r)


class Group:
    """The ranks that train one model together, and the few collectives training needs."""

    def __init__(self, comm=None):
        MPI = _mpi()
        self._MPI = MPI
        self.comm = comm if comm is not None else MPI.COMM_WORLD
        self.rank, self.size = self.comm.Get_rank(), self.comm.Get_size()
        self.allreduce_seconds = 0.0        # time spent in the gradient allreduce, for benchmarks
        self.allreduce_calls = 0

    @property
    def is_root(self) -> bool:
        return self.rank == 0

    def shard(self, n: int) -> tuple[int, int]:
        return shard(n, self.rank, self.size)

    def sum_in_place(self, buf: np.ndarray) -> None:
        """buf <- the sum of every rank's buf, elementwise (one Allreduce, no copy)."""
        t0 = time.perf_counter()
        self.comm.Allreduce(self._MPI.IN_PLACE, buf, op=self._MPI.SUM)
        self.allreduce_seconds += time.perf_counter() - t0
        self.allreduce_calls += 1

    def sum(self, values) -> np.ndarray:
        """The elementwise sum over the ranks of a small float64 vector (validation sums)."""
        buf = np.array(values, np.float64)
        self.comm.Allreduce(self._MPI.IN_PLACE, buf, op=self._MPI.SUM)
        return buf

    def broadcast(self, obj):
        """Rank 0's `obj` on every rank (pickled: for small things)."""
        return self.comm.bcast(obj, root=0)

    def broadcast_array(self, arr: np.ndarray) -> None:
        """Rank 0's bytes of `arr` into `arr` on every rank, in place."""
        self.comm.Bcast(arr, root=0)

    def any(self, flag: bool) -> bool:
        """Whether any rank passed True."""
        return bool(self.comm.allreduce(bool(flag), op=self._MPI.LOR))

    def agree(self, facts: dict) -> None:
        """Raise DistributedError naming the first fact on which some rank differs from rank 0."""
        every = self.comm.allgather(facts)
        for key, mine in every[0].items():
            odd = [r for r, f in enumerate(every) if f.get(key) != mine]
            if odd:
                raise DistributedError(
                    f"the {self.size} ranks do not train the same thing: {key} is {mine} on rank 0 but "
                    f"{every[odd[0]].get(key)} on rank{'s' if len(odd) > 1 else ''} "
                    f"{', '.join(map(str, odd))}; start every rank with the same spec, data and options")

    def fail(self, exc: BaseException) -> None:
        """An error raised on this rank alone: say so and end every rank (MPI_Abort), since the
        others are, or soon will be, waiting for this one in a collective."""
        if self.size == 1:
            return
        what = "interrupted" if isinstance(exc, KeyboardInterrupt) else f"{type(exc).__name__}: {exc}"
        print(f"cnnc: rank {self.rank} of {self.size} failed ({what}); stopping every rank",
              file=sys.stderr, flush=True)
        self.abort(130 if isinstance(exc, KeyboardInterrupt) else 1)

    def abort(self, code: int = 1) -> None:
        """End every rank now (after an error on this one), so none waits forever for it. MPICH's
        MPI_Abort may return while the launcher kills the job: this process ends here anyway."""
        sys.stderr.flush()
        self.comm.Abort(code)
        os._exit(code)


def world() -> Group:
    """The group of every rank mpiexec started (one rank when run without it)."""
    return Group()


def data_digest(arrays: dict) -> str:
    """A short hash of training arrays, to check that every rank loaded the same data."""
    h = hashlib.blake2b(digest_size=8)
    for k in sorted(arrays):
        a = np.ascontiguousarray(arrays[k])
        h.update(f"{k}:{a.dtype}:{a.shape};".encode())
        h.update(memoryview(a).cast("B"))
    return h.hexdigest()


def broadcast_model(group: Group, model) -> None:
    """Rank 0's params, optimizer state, step, dropout stream and learning rate on every rank."""
    group.broadcast_array(model._params)
    group.broadcast_array(model._opt)
    if model.manifest.get("state_size"):
        group.broadcast_array(model._state)
    step, rng, lr = group.broadcast((int(model.step), [int(v) for v in model.rng_state], float(model.lr)))
    model.step, model.rng_state, model.lr = step, rng, lr


def train_step(group: Group, model, batch: dict, size: int) -> dict:
    """One data-parallel step on this rank's part of a global batch of `size` examples
    (`batch` holds just that part, or no rows): gradients, allreduce, the same update everywhere."""
    slab = model.grad_slab
    start, stop = group.shard(size)
    new_state = model._state_next
    if stop > start:
        model.grad_step(start, **batch)
        if stop - start != size:
            np.multiply(slab, np.float32((stop - start) / size), out=slab)
            np.multiply(new_state, np.float32((stop - start) / size), out=new_state)
    else:
        slab[...] = 0.0
        new_state[...] = 0.0
    group.sum_in_place(slab)
    if model.manifest.get("state_size"):
        # each rank's state updates (batch norm's moving statistics from its own slice, as DDP
        # computes them), averaged by share so that every rank keeps the same state
        group.sum_in_place(new_state)
    return model.apply_update()
