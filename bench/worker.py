"""Measure one column on one model, in its own process; print JSON.

run.py starts one worker per (column, model) with the thread environment
already set, so frameworks never share a process and a crash or hang only
loses what was not yet measured: the worker prints its cumulative result as a
JSON line after every metric, and run.py keeps the last line. Usage:

    python -m bench.worker --column torch-nchw --model mnist [--repeats 10 ...]
"""

import argparse
import gc
import json
import time
import traceback

from bench import harness, models as spec
from bench.frameworks import framework

TRAIN_BATCHES = (32, 128)
INFER_BATCH = 32
LATENCY_BATCH = 1
START = time.perf_counter()


def train_loop(column, model, batch=32, steps=10):
    """Target of harness.measure_peak_rss: build and train for a few steps."""
    module, layout = framework(column)
    ok, reason = module.available()
    if not ok:
        raise RuntimeError(reason)
    step = module.train_step_fn(model, batch, layout)
    for _ in range(steps):
        step()


def _measure(fn_factory, batch, timing, max_other_load=0.10, retries=0, budget=float("inf"),
             quiet_wait=10.0):
    """Time one callable; re-measure (up to `retries` times) while other
    processes took more than `max_other_load` of the CPU, keeping the quietest
    attempt. Each attempt first waits (up to `quiet_wait` s) for a quiet machine.
    No new attempt starts once the worker has run for `budget` seconds."""
    t0 = time.perf_counter()
    fn = fn_factory()
    setup = time.perf_counter() - t0
    best = None
    for attempt in range(1, retries + 2):
        if quiet_wait > 0:
            harness.wait_for_quiet(max_other_load, quiet_wait)
        load = harness.OtherLoad()
        stats = harness.time_fn(fn, **timing)
        other = load.share()
        result = {"batch": batch, "setup_s": setup, "time_s": stats,
                  "per_s": harness.throughput(stats, batch), "other_load": other}
        if best is None or (other or 0.0) < (best["other_load"] or 0.0):
            best = result
        if other is None or other <= max_other_load or time.perf_counter() - START > budget:
            break
    best["attempts"] = attempt
    del fn
    gc.collect()
    return best


def run(column, model, timing, max_other_load=0.10, retries=0, budget=float("inf"),
        quiet_wait=10.0):
    module, layout = framework(column)
    ok, reason = module.available()
    out = {"column": column, "model": model, "layout": layout}
    if not ok:
        return {**out, "status": "missing", "reason": reason}
    out.update(status="ok", version=module.version(), metrics={}, errors={})
    if column == "cnnc":
        out["compile_times"] = module.compile_times(model)

    jobs = []
    if module.TRAINS:
        for b in TRAIN_BATCHES:
            jobs.append((f"train_b{b}", b, lambda b=b: module.train_step_fn(model, b, layout), timing))
    jobs.append((f"infer_b{INFER_BATCH}", INFER_BATCH,
                 lambda: module.infer_fn(model, INFER_BATCH, layout), timing))
    latency_timing = dict(timing, repeats=timing["repeats"] * 5, warmup=timing["warmup"] * 3)
    jobs.append((f"latency_b{LATENCY_BATCH}", LATENCY_BATCH,
                 lambda: module.infer_fn(model, LATENCY_BATCH, layout), latency_timing))

    rows = spec.INPUTS.get(model, {}).get("rows")        # a model may ask for some rows only
    if rows:
        jobs = [job for job in jobs if job[0] in rows]
    out["planned"] = [key for key, *_ in jobs]
    print(json.dumps(out), flush=True)  # partial results: the parent keeps the last line
    for key, batch, factory, tm in jobs:
        try:
            out["metrics"][key] = _measure(factory, batch, tm, max_other_load, retries,
                                           budget, quiet_wait)
        except Exception as exc:
            out["errors"][key] = f"{type(exc).__name__}: {exc}"
            traceback.print_exc()
        print(json.dumps(out), flush=True)
    return out


def main():
    p = argparse.ArgumentParser(description=__doc__)
    p.add_argument("--column", required=True)
    p.add_argument("--model", required=True)
    p.add_argument("--warmup", type=int, default=3)
    p.add_argument("--repeats", type=int, default=10)
    p.add_argument("--min-time", type=float, default=1.0)
    p.add_argument("--max-time", type=float, default=30.0)
    p.add_argument("--max-other-load", type=float, default=0.10,
                   help="re-measure when other processes took more than this share of the CPU")
    p.add_argument("--retries", type=int, default=0, help="re-measurements allowed per metric")
    p.add_argument("--budget", type=float, default=float("inf"),
                   help="seconds after which no re-measurement starts")
    p.add_argument("--quiet-wait", type=float, default=10.0,
                   help="seconds to wait at most for a quiet machine before each measurement")
    a = p.parse_args()
    timing = {"warmup": a.warmup, "repeats": a.repeats,
              "min_time": a.min_time, "max_time": a.max_time}
    run(a.column, a.model, timing, a.max_other_load, a.retries, a.budget, a.quiet_wait)


if __name__ == "__main__":
    main()
