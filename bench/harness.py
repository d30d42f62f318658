"""Timing, memory and thread-control utilities shared by every benchmark.

Methodology (see README.md):
  * warm-up calls first (JIT tracing, allocator growth, caches) - not timed;
  * then repeated timed calls, each timed on its own with perf_counter;
  * report median, min and inter-quartile range of the per-call times;
  * every framework gets the same thread count T (default: all cores).
"""

import importlib
import json
import os
import statistics
import subprocess
import sys
import time

THREAD_ENV_VARS = ("OMP_NUM_THREADS", "MKL_NUM_THREADS", "OPENBLAS_NUM_THREADS",
                   "TF_NUM_INTRAOP_THREADS", "TF_NUM_INTEROP_THREADS")

BENCH_ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


# --------------------------------------------------------------------------
# Threads
# --------------------------------------------------------------------------

def default_threads():
    """All cores this process may run on."""
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:
        return os.cpu_count() or 1


def thread_env(threads, base=None):
    """A copy of the environment with every thread knob set to `threads`.

    Must be in place before a framework (or numpy's OpenBLAS) is imported, so
    the harness runs every measurement in a child process started with it.
    """
    env = dict(os.environ if base is None else base)
    for var in THREAD_ENV_VARS:
        env[var] = str(threads)
    env["TF_CPP_MIN_LOG_LEVEL"] = env.get("TF_CPP_MIN_LOG_LEVEL", "2")
    # Children import `bench.*`; make the repository root importable.
    env["PYTHONPATH"] = os.pathsep.join(p for p in (BENCH_ROOT, env.get("PYTHONPATH")) if p)
    return env


def set_torch_threads(torch, threads):
    torch.set_num_threads(threads)
    try:
        torch.set_num_interop_threads(threads)
    except RuntimeError:
        pass  # can only be set once, before any parallel work


def set_tf_threads(tf, threads):
    tf.config.threading.set_intra_op_parallelism_threads(threads)
    tf.config.threading.set_inter_op_parallelism_threads(threads)


def ort_session_options(ort, threads):
    opts = ort.SessionOptions()
    opts.intra_op_num_threads = threads
    opts.inter_op_num_threads = threads
    opts.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    return opts


# --------------------------------------------------------------------------
# Timing
# --------------------------------------------------------------------------

def summarize(samples):
    """Median, min and IQR (seconds) of a list of per-call times."""
    s = sorted(samples)
    if len(s) >= 2:
        q1, _, q3 = statistics.quantiles(s, n=4, method="inclusive")
    else:
        q1 = q3 = s[0]
    return {"median": statistics.median(s), "min": s[0], "q1": q1, "q3": q3,
            "iqr": q3 - q1, "n": len(s)}


def time_fn(fn, warmup=3, repeats=10, min_time=1.0, max_time=30.0):
    """Time `fn()` call by call; return summarize() of the timed calls.

    Runs `warmup` untimed calls (stopping early once they take max_time/4),
    then timed calls until at least `repeats` calls and `min_time` seconds
    are done, or `max_time` seconds have passed (with at least 3 calls, or
    1 call if a single call already exceeds max_time).
    """
    start = time.perf_counter()
    for _ in range(warmup):
        fn()
        if time.perf_counter() - start > max_time / 4:
            break
    samples = []
    start = time.perf_counter()
    while True:
        t0 = time.perf_counter()
        fn()
        samples.append(time.perf_counter() - t0)
        elapsed = time.perf_counter() - start
        if len(samples) >= repeats and elapsed >= min_time:
            break
        if elapsed >= max_time and (len(samples) >= 3 or elapsed >= 2 * max_time):
            break
    return summarize(samples)


def throughput(stats, batch):
    """Examples per second from a timing summary (median and best)."""
    return {"median": batch / stats["median"], "best": batch / stats["min"]}


# --------------------------------------------------------------------------
# Peak memory in a fresh process
# --------------------------------------------------------------------------

def peak_rss_mb():
    """Peak resident set size of this process so far, in MB."""
    try:
        with open("/proc/self/status") as f:
            for line in f:
                if line.startswith("VmHWM:"):
                    return int(line.split()[1]) / 1024.0
    except OSError:
        pass
    import resource
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0  # KB on Linux


def measure_peak_rss(target, kwargs=None, threads=None, timeout=300):
    """Run `target(**kwargs)` in a fresh Python process; return its peak RSS.

    `target` is a module-level callable (or a "module:function" string), so the
    child can import it; typically it builds a model and runs a short training
    loop. The child reads its own VmHWM from /proc/self/status (falling back
    to getrusage ru_maxrss) after the call and prints it as JSON. Returns a
    dict with peak_rss_mb (None and an "error" reason when it failed).
    """
    if callable(target):
        target = f"{target.__module__}:{target.__qualname__}"
    env = thread_env(threads or default_threads())
    cmd = [sys.executable, "-m", "bench.harness", "--call", target,
           "--kwargs", json.dumps(kwargs or {})]
    proc = subprocess.Popen(cmd, env=env, cwd=BENCH_ROOT, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True)
    try:
        out, err = proc.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.communicate()
        return {"peak_rss_mb": None, "error": f"timed out after {timeout}s"}
    result = _last_json_line(out)
    if proc.returncode != 0 or result is None:
        return {"peak_rss_mb": None, "error": _tail(err) or f"exit code {proc.returncode}"}
    return result


def _call_and_report(target, kwargs):
    module, func = target.split(":")
    t0 = time.perf_counter()
    getattr(importlib.import_module(module), func)(**kwargs)
    print(json.dumps({"peak_rss_mb": peak_rss_mb(),
                      "seconds": time.perf_counter() - t0}), flush=True)


def _last_json_line(text):
    for line in reversed(text.strip().splitlines()):
        try:
            value = json.loads(line)
        except ValueError:
            continue
        if isinstance(value, dict):
            return value
    return None


def _tail(text, lines=3):
    kept = [l for l in text.strip().splitlines() if l.strip()]
    return " | ".join(kept[-lines:])


def run_json_child(args, threads, timeout, env=None):
    """Run `python -m <args>` with thread env; parse the last JSON line of stdout.

    Returns (result, None) or (None, reason). On a timeout the child is killed
    and the last JSON line it printed so far (if any) is returned, with
    "timed_out" set: workers print cumulative partial results. The result gets
    "other_load": the share of the machine's CPU time used by processes other
    than the child while it ran (other sessions, steal) - a noise indicator.
    """
    load = OtherLoad()
    proc = subprocess.Popen([sys.executable, "-m", *args], env=thread_env(threads, env),
                            cwd=BENCH_ROOT, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True)
    timed_out = False
    try:
        out, err = proc.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        proc.kill()
        out, err = proc.communicate()  # everything printed before the kill
        timed_out = True
    result = _last_json_line(out)
    if result is None:
        return None, (f"timed out after {timeout}s" if timed_out
                      else _tail(err) or f"exit code {proc.returncode}")
    if timed_out:
        result["timed_out"] = f"timed out after {timeout}s"
    elif proc.returncode != 0:
        result["crashed"] = _tail(err) or f"exit code {proc.returncode}"
    result["other_load"] = load.share()
    return result, None


class OtherLoad:
    """CPU time used by everything but this process and its children, as a share.

    Reads the machine's busy time from /proc/stat (user..steal, so hypervisor
    steal counts too) and subtracts this process's and its waited-for
    children's CPU time (getrusage). 0.0 on an otherwise idle machine.
    """

    def __init__(self, pids=()):
        self.pids = tuple(pids)   # running children to count as our own
        self.start = (time.perf_counter(), _machine_busy(), self._own())

    def _own(self):
        return _own_cpu() + sum(_pid_cpu(pid) for pid in self.pids)

    def share(self):
        wall0, busy0, own0 = self.start
        wall = time.perf_counter() - wall0
        busy, own = _machine_busy(), self._own()
        if busy is None or wall <= 0:
            return None
        other = (busy - busy0) - (own - own0)
        return max(0.0, other / (wall * (os.cpu_count() or 1)))


def wait_for_quiet(max_load=0.10, timeout=10.0, window=0.5):
    """Sleep until other processes use at most `max_load` of the CPU over a
    `window`-second sample, or `timeout` seconds pass. Returns the last share."""
    deadline = time.perf_counter() + timeout
    while True:
        load = OtherLoad()
        time.sleep(window)
        share = load.share()
        if share is None or share <= max_load or time.perf_counter() >= deadline:
            return share


def _machine_busy():
    try:
        with open("/proc/stat") as f:
            fields = [int(v) for v in f.readline().split()[1:9]]
    except (OSError, ValueError):
        return None
    user, nice, system, idle, iowait, irq, softirq, steal = fields
    return (user + nice + system + irq + softirq + steal) / os.sysconf("SC_CLK_TCK")


def _pid_cpu(pid):
    """CPU seconds (user + system) a live process has used so far; 0.0 once it is gone."""
    try:
        with open(f"/proc/{pid}/stat") as f:
            fields = f.read().rsplit(")", 1)[1].split()
    except (OSError, IndexError):
        return 0.0
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def _own_cpu():
    import resource
    total = 0.0
    for who in (resource.RUSAGE_SELF, resource.RUSAGE_CHILDREN):
        r = resource.getrusage(who)
        total += r.ru_utime + r.ru_stime
    return total


if __name__ == "__main__":
    import argparse
    p = argparse.ArgumentParser(description="child entry point of measure_peak_rss")
    p.add_argument("--call", required=True, help="module:function")
    p.add_argument("--kwargs", default="{}")
    a = p.parse_args()
    _call_and_report(a.call, json.loads(a.kwargs))
