"""The machine's achieved float32 GEMM rate, measured with numpy (OpenBLAS).

This is the yardstick for "achieved GFLOP/s": a model's GFLOP/s is reported
as a percentage of the best median sgemm rate measured here, with the same
thread count (OPENBLAS_NUM_THREADS etc. must be set before numpy is imported,
which run.py does by running this in a child process).

    python -m bench.sgemm [--sizes 1024,2048] [--repeats 5] [--json]
"""

import argparse
import json
import time

from bench.harness import summarize


def sgemm_rate(n, repeats=5, warmup=2):
    """Median and best GFLOP/s of an n x n x n float32 matrix product."""
    import numpy as np
    rng = np.random.default_rng(0)
    a = rng.standard_normal((n, n), dtype=np.float32)
    b = rng.standard_normal((n, n), dtype=np.float32)
    c = np.empty((n, n), dtype=np.float32)
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


def main():
    p = argparse.ArgumentParser(description=__doc__)
    p.add_argument("--sizes", default="1024,2048")
    p.add_argument("--repeats", type=int, default=5)
    p.add_argument("--json", action="store_true", help="print one JSON line")
    a = p.parse_args()
    result = measure(tuple(int(s) for s in a.sizes.split(",")), a.repeats)
    if a.json:
        print(json.dumps(result))
        return
    for r in result["sizes"]:
        print(f"sgemm {r['n']:5d}^3: median {r['gflops_median']:7.1f} GFLOP/s, "
              f"best {r['gflops_best']:7.1f} GFLOP/s")
    print(f"yardstick ({result['blas']}): {result['gflops']:.1f} GFLOP/s")


if __name__ == "__main__":
    main()
