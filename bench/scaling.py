"""Data-parallel scaling: training throughput with 1 and 2 ranks (same total threads) for cnnc
on MPI and PyTorch DDP (gloo), the allreduce's time per step, and a model of larger clusters.

    python -m bench.scaling [--models mnist,flowers] [--threads 2] [--steps 10]

Each (column, ranks) cell is one `mpiexec -n R python -m bench.scaling --worker ...` job on a
synthetic global batch (each rank trains its slice), OMP_NUM_THREADS = threads / R. Timing
starts after two warm-up steps; the slowest rank's time counts. `allreduce` is the time inside
the gradient Allreduce per step (it includes waiting for the slower rank); `alone` is the same
Allreduce timed by itself after a barrier, i.e. the communication cost only."""
from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time

import numpy as np

BATCH = {"mnist": 128, "flowers": 32}
COLUMNS = ("cnnc", "torch-ddp")


# --------------------------------------------------------------------------- workers (one rank)


def _rank_and_size():
    from mpi4py import MPI
    return MPI.COMM_WORLD.Get_rank(), MPI.COMM_WORLD.Get_size()


def _cnnc_worker(name, batch, steps):
    from bench import cnnc_runner
    from cnnc.runtime import distributed
    group = distributed.world()
    module, _ = cnnc_runner._compile(name)
    model = module.Model(seed=0)
    data = cnnc_runner._batch(model, name, batch, np.random.default_rng(0))
    start, stop = group.shard(batch)
    local = {k: v[start:stop] for k, v in data.items()}
    for _ in range(2):
        distributed.train_step(group, model, local, batch)
    group.comm.Barrier()
    group.allreduce_seconds = 0.0
    t0 = time.perf_counter()
    for _ in range(steps):
        distributed.train_step(group, model, local, batch)
    elapsed = time.perf_counter() - t0
    waited = group.allreduce_seconds / steps
    alone = _allreduce_alone(group, model.grad_slab)
    return group, elapsed, waited, alone, model.grad_slab.nbytes


def _allreduce_alone(group, buf, repeats=5):
    buf = buf.copy()
    best = float("inf")
    for _ in range(repeats):
        group.comm.Barrier()
        t0 = time.perf_counter()
        group.sum_in_place(buf)
        best = min(best, time.perf_counter() - t0)
    return best


def _torch_worker(name, batch, steps, port):
    import torch
    import torch.distributed as dist
    from bench.peers import torch_models
    from cnnc.runtime import distributed
    rank, size = _rank_and_size()
    torch.set_num_threads(int(os.environ.get("OMP_NUM_THREADS", "1")))
    dist.init_process_group("gloo", init_method=f"tcp://127.0.0.1:{port}", rank=rank, world_size=size)
    model = torch.nn.parallel.DistributedDataParallel(torch_models.make_model(name))
    opt = torch_models.make_optimizer(name, model.module)
    x, y = torch_models.make_batch(name, batch)
    start, stop = distributed.shard(batch, rank, size)
    x, y = x[start:stop], y[start:stop]
    # no comm hook: timing DDP's bucket allreduces would serialize the overlap it is built for;
    # its communication is measured alone below
    def step():
        opt.zero_grad(set_to_none=True)
        model.module.loss(model(x), y).backward()
        opt.step()
    for _ in range(2):
        step()
    dist.barrier()
    t0 = time.perf_counter()
    for _ in range(steps):
        step()
    elapsed = time.perf_counter() - t0
    grads = torch.cat([p.detach().reshape(-1) for p in model.parameters()])
    best = float("inf")
    for _ in range(5):
        dist.barrier()
        t1 = time.perf_counter()
        dist.all_reduce(grads)
        best = min(best, time.perf_counter() - t1)
    dist.destroy_process_group()
    from mpi4py import MPI
    return MPI.COMM_WORLD, elapsed, float("nan"), best, grads.numel() * 4


def worker(column, name, batch, steps, port):
    if column == "cnnc":
        group, elapsed, waited, alone, nbytes = _cnnc_worker(name, batch, steps)
        comm = group.comm
    else:
        comm, elapsed, waited, alone, nbytes = _torch_worker(name, batch, steps, port)
    slowest = comm.allreduce(elapsed, op=_max())
    waited = comm.allreduce(waited) / comm.Get_size()
    if comm.Get_rank() == 0:
        step = slowest / steps
        print(json.dumps({"column": column, "model": name, "ranks": comm.Get_size(), "batch": batch,
                          "step_s": step, "ex_per_s": batch / step, "allreduce_s": waited,
                          "allreduce_share": waited / step, "alone_s": alone, "grad_bytes": nbytes}),
              flush=True)


def _max():
    from mpi4py import MPI
    return MPI.MAX


# --------------------------------------------------------------------------- the driver


def run_cell(column, name, ranks, threads, steps, port):
    from cnnc.workers import find_mpiexec
    env = dict(os.environ, OMP_NUM_THREADS=str(max(1, threads // ranks)))
    cmd = [find_mpiexec(), "-n", str(ranks), sys.executable, "-m", "bench.scaling", "--worker", column,
           "--models", name, "--batch", str(BATCH[name]), "--steps", str(steps), "--port", str(port)]
    r = subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=1800)
    lines = [x for x in r.stdout.splitlines() if x.startswith("{")]
    if r.returncode or not lines:
        return {"column": column, "model": name, "ranks": ranks, "error": (r.stderr or r.stdout)[-300:]}
    return json.loads(lines[-1])


def cluster_model(per_example_s: float, grad_bytes: int, hosts=(2, 4, 8, 16, 32, 64), gbps=(10, 100),
                  batch=None):
    """Ring allreduce without overlap: a step on N hosts takes c*B/N compute plus
    2(N-1)/N * bytes / bandwidth; efficiency = compute / step. Returns rows of
    (gbps, hosts, efficiency at `batch`, smallest global batch keeping 90%)."""
    rows = []
    for g in gbps:
        bw = g * 1e9 / 8
        for n in hosts:
            comm = 2 * (n - 1) / n * grad_bytes / bw
            eff = None
            if batch:
                compute = per_example_s * batch / n
                eff = compute / (compute + comm)
            need = max(n, int(np.ceil(9 * comm * n / per_example_s)))   # c*B/N >= 9*comm, B >= N
            rows.append((g, n, eff, need))
    return rows


def _grad_bytes(name: str) -> int:
    from bench import cnnc_runner
    module, _ = cnnc_runner._compile(name)
    return module.Model(seed=0).grad_slab.nbytes


def _print_model(name, per_example_s, grad_bytes, batch):
    print(f"\ncluster model, {name}: one rank per host as fast as this one, ring allreduce without "
          f"overlap; {1e3 * per_example_s:.3g} ms of compute per example, {grad_bytes / 1e6:.2f} MB of gradients")
    print(f"| Gb/s | hosts | efficiency at global batch {batch} | global batch for 90% |")
    print("| --- | --- | --- | --- |")
    for g, n, eff, need in cluster_model(per_example_s, grad_bytes, batch=batch):
        print(f"| {g} | {n} | {eff:.0%} | {need} |")


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--models", default="mnist,flowers")
    p.add_argument("--columns", default=",".join(COLUMNS))
    p.add_argument("--threads", type=int, default=os.cpu_count() or 1, help="total threads per cell")
    p.add_argument("--steps", type=int, default=10)
    p.add_argument("--batch", type=int)
    p.add_argument("--compute-ms", help="per-example compute for the cluster model instead of this run's, "
                   "e.g. mnist=0.39,flowers=13 (quiet figures); with --model-only nothing is measured")
    p.add_argument("--model-only", action="store_true", help="print the cluster model only")
    p.add_argument("--worker", help=argparse.SUPPRESS)
    p.add_argument("--port", type=int, default=29517, help=argparse.SUPPRESS)
    p.add_argument("--out", default=os.path.join(os.path.dirname(__file__), "results", "scaling.json"))
    a = p.parse_args(argv)
    if a.worker:
        worker(a.worker, a.models, a.batch, a.steps, a.port)
        return 0
    load = os.getloadavg()[0]
    compute = {k: float(v) / 1e3 for k, v in (x.split("=") for x in a.compute_ms.split(","))} if a.compute_ms else {}
    if a.model_only:
        for name in a.models.split(","):
            _print_model(name, compute[name], _grad_bytes(name), BATCH[name])
        return 0
    results = []
    for name in a.models.split(","):
        for column in a.columns.split(","):
            for ranks in (1, 2):
                steps = a.steps if name == "mnist" else max(3, a.steps // 2)
                r = run_cell(column, name, ranks, a.threads, steps, a.port + len(results))
                results.append(r)
                print(json.dumps(r), file=sys.stderr)
    print(f"\nload average at start {load:.2f} on {os.cpu_count()} cores; {a.threads} threads per cell\n")
    print("| model | column | ranks x threads | batch | ex/s | step ms | allreduce ms (share) | alone ms | grad MB |")
    print("| --- | --- | --- | --- | --- | --- | --- | --- | --- |")
    for r in results:
        if "error" in r:
            print(f"| {r['model']} | {r['column']} | {r['ranks']} | - | failed: {r['error'][-80:]!r} |")
            continue
        print(f"| {r['model']} | {r['column']} | {r['ranks']} x {max(1, a.threads // r['ranks'])} | {r['batch']} "
              f"| {r['ex_per_s']:.0f} | {1e3 * r['step_s']:.1f} | {1e3 * r['allreduce_s']:.2f} "
              f"({r['allreduce_share']:.1%}) | {1e3 * r['alone_s']:.2f} | {r['grad_bytes'] / 1e6:.2f} |")
    for r in results:
        if r.get("column") == "cnnc" and r.get("ranks") == 1 and "error" not in r:
            c = compute.get(r["model"], r["step_s"] / r["batch"])
            _print_model(r["model"], c, r["grad_bytes"], r["batch"])
    os.makedirs(os.path.dirname(a.out), exist_ok=True)
    with open(a.out, "w") as f:
        json.dump({"load": load, "threads": a.threads, "results": results}, f, indent=1)
    return 0


if __name__ == "__main__":
    sys.exit(main())
