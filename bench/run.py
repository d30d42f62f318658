"""Run the cnnc-vs-peers benchmark and print/save the comparison table.

    python -m bench.run [--models mnist,flowers,textcnn] [--threads 2] [--quick]
    python bench/run.py --install            # pip-install the peer frameworks first

Every measurement runs in a child process started with the same thread
environment (see harness.thread_env); see README.md for the methodology.
"""

import argparse
import datetime
import json
import os
import platform
import subprocess
import sys
import time

if __package__ in (None, ""):  # run as a script: make `bench` importable
    sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from bench import duel, harness, models as spec, report, sgemm  # noqa: E402
from bench.frameworks import COLUMNS, DEFAULT_BASELINE, framework  # noqa: E402

# Benchmark-only packages; never runtime dependencies of cnnc.
PEER_PACKAGES = ["torch==2.13.0", "onnx", "onnxruntime", "onnxscript", "tensorflow-cpu"]

# Timing budgets. retries: re-measurements of a metric while other processes
# take more than max_other_load of the CPU (the quietest attempt is kept).
# quiet_wait: seconds to wait at most for a quiet machine before each measurement.
FULL = {"warmup": 3, "repeats": 10, "min_time": 2.0, "max_time": 30.0, "retries": 2,
        "max_other_load": 0.10, "quiet_wait": 10.0, "rss_steps": 10, "timeout": 360,
        "sgemm_sizes": "1024,2048", "duel_blocks": 24}
QUICK = {"warmup": 1, "repeats": 3, "min_time": 0.2, "max_time": 5.0, "retries": 0,
         "max_other_load": 0.10, "quiet_wait": 0.0, "rss_steps": 3, "timeout": 180,
         "sgemm_sizes": "1024,2048", "duel_blocks": 4}


# Column pairs whose batch-1 latency is timed again in alternating blocks (when both run):
# cnnc against ONNX Runtime, and the exported C library against in-Python cnnc and ORT (on
# PyTorch's export and on cnnc's own).
DUELS = [("cnnc", "ort"), ("cnnc-c", "cnnc"), ("cnnc-c", "ort"), ("cnnc-c", "ort-cnnc")]


def install_peers():
    """pip-install each peer package separately; return {package: "ok" | reason}."""
    results = {}
    for pkg in PEER_PACKAGES:
        print(f"pip install {pkg} ...", flush=True)
        proc = subprocess.run([sys.executable, "-m", "pip", "install", "-q", pkg],
                              capture_output=True, text=True)
        results[pkg] = "ok" if proc.returncode == 0 else \
            "failed: " + (harness._tail(proc.stderr) or f"exit code {proc.returncode}")
        print(f"  {pkg}: {results[pkg]}", flush=True)
    return results


def cpu_name():
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown"


def machine_line():
    """The CPU, the widest ISA its -march=native has, the cores this process may use, and
    the target cnnc builds for (CNNC_TARGET, or native)."""
    try:
        from cnnc.compiler import target
        isa = target.native().name
        built = target.current().name
    except Exception as exc:                  # pragma: no cover - cnnc missing or no compiler
        isa, built = "unknown ISA", f"unknown ({exc})"
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    return f"{cpu_name()}, {isa}, {cores} cores; cnnc target {built}"


def measure_sgemm(threads, opts):
    sizes = tuple(int(n) for n in opts["sgemm_sizes"].split(","))
    result = sgemm.yardstick(threads, sizes, max(5, opts["repeats"]), opts["timeout"])
    for label, run in result["runs"].items():
        print(f"sgemm {label}: " + (f"{run['gflops']:.1f} GFLOP/s ({run.get('kernels')} kernels)"
                                    if run.get("gflops") else f"failed: {run.get('error')}"),
              flush=True)
    return result


def measure_cell(column, model, threads, opts):
    """Run the worker for one (column, model), then its peak-RSS training run."""
    args = ["bench.worker", "--column", column, "--model", model,
            "--warmup", str(opts["warmup"]), "--repeats", str(opts["repeats"]),
            "--min-time", str(opts["min_time"]), "--max-time", str(opts["max_time"]),
            "--retries", str(opts["retries"]), "--max-other-load", str(opts["max_other_load"]),
            "--budget", str(opts["timeout"] / 2), "--quiet-wait", str(opts["quiet_wait"])]
    cell, err = harness.run_json_child(args, threads, opts["timeout"])
    if err:
        return {"column": column, "model": model, "status": "error", "reason": f"error: {err}"}
    stopped = cell.get("timed_out") or cell.get("crashed")
    for key in cell.get("planned", []):  # metrics a timeout or crash cut off
        if stopped and key not in cell.get("metrics", {}) and key not in cell.get("errors", {}):
            cell["errors"][key] = f"not measured: worker {stopped}"
    if cell["status"] == "ok" and framework(column)[0].TRAINS:       # peak RSS of a training loop
        cell["peak_rss"] = harness.measure_peak_rss(
            "bench.worker:train_loop",
            {"column": column, "model": model, "batch": 32, "steps": opts["rss_steps"]},
            threads=threads, timeout=opts["timeout"])
    return cell


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--models", default=",".join(spec.MODELS))
    p.add_argument("--columns", default=",".join(COLUMNS),
                   help="implementations to run (default: all of %(default)s)")
    p.add_argument("--baseline", default=DEFAULT_BASELINE,
                   help="column the ratios are taken against (default: %(default)s)")
    p.add_argument("--threads", type=int, default=harness.default_threads())
    p.add_argument("--repeats", type=int, help="minimum timed calls per measurement")
    p.add_argument("--quick", action="store_true", help="few repeats, short time budgets")
    p.add_argument("--out", default=os.path.join(harness.BENCH_ROOT, "bench", "results",
                                                  "latest.json"))
    p.add_argument("--install", action="store_true", help="pip-install the peers first")
    p.add_argument("--contend", action="store_true",
                   help="also run the latency duel with a CPU-bound competitor on one core")
    p.add_argument("--target", help="CNNC_TARGET for the cnnc column: native, avx512, avx2, neon, generic")
    a = p.parse_args(argv)
    if a.target:
        os.environ["CNNC_TARGET"] = a.target      # inherited by every worker; only cnnc reads it

    opts = dict(QUICK if a.quick else FULL)
    if a.repeats:
        opts["repeats"] = a.repeats
    models = [m.strip() for m in a.models.split(",") if m.strip()]
    columns = [c.strip() for c in a.columns.split(",") if c.strip()]
    for name in models:
        if name not in spec.MODELS:
            p.error(f"unknown model {name!r}; choose from {', '.join(spec.MODELS)}")
    for name in columns + [a.baseline]:
        if name not in COLUMNS:
            p.error(f"unknown column {name!r}; choose from {', '.join(COLUMNS)}")

    started = time.time()
    installed = install_peers() if a.install else None
    machine = machine_line()
    print(f"threads {a.threads}, models {','.join(models)}, columns {','.join(columns)}, "
          f"{'quick' if a.quick else 'full'} run; {machine}", flush=True)
    yard = measure_sgemm(a.threads, opts)

    cells = {}
    for model in models:
        for column in columns:
            t0 = time.time()
            cell = measure_cell(column, model, a.threads, opts)
            report.add_derived(cell, yard.get("gflops"))
            cells[(model, column)] = cell
            load = report.other_load(cell)
            load = f"other load {100 * load:3.0f}%" if load is not None else ""
            print(f"  {model:8s} {column:11s} {cell['status']:8s} {time.time() - t0:6.1f}s "
                  f"{load}  {cell.get('reason', '')}", flush=True)

    # Batch-1 latency again, cnnc and ONNX Runtime in alternating blocks (bench/duel.py):
    # the independent columns above can differ by more than the gap from host noise alone.
    duels = []
    for pair in DUELS:
        if not all(c in columns for c in pair):
            continue
        print(f"interleaved batch-1 latency ({pair[0]} and {pair[1]} in alternating blocks):", flush=True)
        for model in models:
            d = duel.duel(model, pair, a.threads, blocks=opts["duel_blocks"])
            print("  " + duel.describe(d), flush=True)
            duels.append(d)
            if a.contend:       # the same duel with a competitor holding one core
                d = duel.duel(model, ("cnnc", "ort"), a.threads, blocks=opts["duel_blocks"], contend=True)
                print("  " + duel.describe(d), flush=True)
                duels.append(d)

    baseline_ok = any(c.get("status") == "ok" for (m, col), c in cells.items() if col == a.baseline)
    print()
    for model in models:
        table = report.model_table(model, {c: cells[(model, c)] for c in columns}, columns,
                                   a.baseline, a.threads, yard.get("gflops") or 0.0, machine)
        print("\n".join(table) + "\n")
    print(report.legend(a.baseline, baseline_ok))
    for pkg, status in (installed or {}).items():
        if status != "ok":
            print(f"install {pkg}: {status}")

    versions = {c["column"]: c.get("version") for c in cells.values() if c.get("version")}
    result = {
        "meta": {"date": datetime.datetime.now().isoformat(timespec="seconds"),
                 "cpu": cpu_name(), "machine": machine, "threads": a.threads, "python": platform.python_version(),
                 "options": opts, "baseline": a.baseline, "models": models, "columns": columns,
                 "versions": versions, "installed": installed,
                 "seconds": round(time.time() - started, 1)},
        "flops": {m: {"forward": spec.forward_flops(m), "train": spec.train_flops(m)}
                  for m in models},
        "sgemm": yard,
        "results": list(cells.values()),
        "latency_interleaved": duels,
    }
    os.makedirs(os.path.dirname(os.path.abspath(a.out)), exist_ok=True)
    with open(a.out, "w") as f:
        json.dump(result, f, indent=1)
    print(f"\nwrote {a.out} ({result['meta']['seconds']:.0f}s)")


if __name__ == "__main__":
    main()
