"""The machine's achieved float32 GEMM rate, measured with numpy (OpenBLAS).

This is the yardstick for "achieved GFLOP/s": a model's GFLOP/s is reported
as a percentage of the best median sgemm rate measured here, with the same
thread count. Each measurement runs in a child process, because the thread
count (OPENBLAS_NUM_THREADS) and kernel choice must be set before numpy loads.

OpenBLAS picks its kernels at run time from the CPU, unless the environment
variable OPENBLAS_CORETYPE forces a family. Some sandboxes set it (this one
sets OPENBLAS_CORETYPE=Haswell: AVX2 kernels, about half the AVX-512 rate of
the CPU), so when it is set the rate is measured both as the environment
says and with the variable removed (auto-detection), and the yardstick is the
better of the two. Both are kept in the JSON.

    python -m bench.sgemm [--sizes 1024,2048] [--repeats 5] [--threads T] [--json]
"""

import argparse
import json
import os
import sys
import time

if __package__ in (None, ""):  # run as a script: make `bench` importable
    sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from bench.harness import default_threads, run_json_child, summarize, wait_for_quiet


def sgemm_rate(n, repeats=5, warmup=2):
    """Median and best GFLOP/s of an n x n x n float32 matrix product."""
    import numpy as np
    rng = np.random.default_rng(0)
    a = rng.standard_normal((n, n), dtype=np.float32)
    b = rng.standard_normal((n, n), dtype=np.float32)
    c = np.empty((n, n), dtype=np.float32)
    wait_for_quiet()
    for _ in range(warmup):
        np.matmul(a, b, out=c)
    samples = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        np.matmul(a, b, out=c)
        samples.append(time.perf_counter() - t0)
    stats = summarize(samples)
    flops = 2.0 * n ** 3
    return {"n": n, "gflops_median": flops / stats["median"] / 1e9,
            "gflops_best": flops / stats["min"] / 1e9, "time_s": stats}


def blas_name():
    import numpy as np
    try:
        info = np.show_config(mode="dicts")
        return info["Build Dependencies"]["blas"]["name"]
    except Exception:
        return "unknown"


def measure(sizes=(1024, 2048), repeats=5):
    rates = [sgemm_rate(n, repeats) for n in sizes]
    import numpy as np
    return {"numpy": np.__version__, "blas": blas_name(), "sizes": rates,
            "gflops": max(r["gflops_median"] for r in rates)}


def yardstick(threads, sizes=(1024, 2048), repeats=5, timeout=300):
    """Measure sgemm in child processes for each kernel choice; keep the best."""
    forced = os.environ.get("OPENBLAS_CORETYPE")
    choices = {"auto": None}
    if forced:
        choices = {f"OPENBLAS_CORETYPE={forced}": forced, "auto-detected": None}
    runs = {}
    for label, core in choices.items():
        env = dict(os.environ)
        env.pop("OPENBLAS_CORETYPE", None)
        if core:
            env["OPENBLAS_CORETYPE"] = core
        args = ["bench.sgemm", "--child", "--sizes", ",".join(map(str, sizes)),
                "--repeats", str(repeats)]
        result, err = run_json_child(args, threads, timeout, env=env)
        runs[label] = result if result else {"gflops": None, "error": err}
    best = max((r for r in runs.values() if r.get("gflops")),
               key=lambda r: r["gflops"], default=None)
    return {"gflops": best["gflops"] if best else None, "threads": threads,
            "kernels": best.get("kernels") if best else None, "runs": runs}


def kernels():
    """OpenBLAS's kernel family as loaded (via threadpoolctl if present)."""
    try:
        import threadpoolctl
        for info in threadpoolctl.threadpool_info():
            if info.get("internal_api") == "openblas":
                return info.get("architecture")
    except Exception:
        pass
    return os.environ.get("OPENBLAS_CORETYPE", "unknown")


def main():
    p = argparse.ArgumentParser(description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--sizes", default="1024,2048")
    p.add_argument("--repeats", type=int, default=5)
    p.add_argument("--threads", type=int, default=default_threads())
    p.add_argument("--json", action="store_true", help="print one JSON line")
    p.add_argument("--child", action="store_true", help=argparse.SUPPRESS)
    a = p.parse_args()
    sizes = tuple(int(s) for s in a.sizes.split(","))
    if a.child:  # measure in this process, as configured by the environment
        result = measure(sizes, a.repeats)
        result["kernels"] = kernels()
        print(json.dumps(result))
        return
    result = yardstick(a.threads, sizes, a.repeats)
    if a.json:
        print(json.dumps(result))
        return
    for label, run in result["runs"].items():
        if not run.get("gflops"):
            print(f"{label}: failed: {run.get('error')}")
            continue
        for r in run["sizes"]:
            print(f"{label} ({run['kernels']} kernels) sgemm {r['n']:5d}^3: "
                  f"median {r['gflops_median']:6.1f} GFLOP/s, best {r['gflops_best']:6.1f}")
    if result["gflops"]:
        print(f"yardstick, {a.threads} threads: {result['gflops']:.1f} GFLOP/s "
              f"({result['kernels']} kernels)")


if __name__ == "__main__":
    main()
