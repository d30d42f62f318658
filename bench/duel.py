"""Interleaved latency: two columns timed in alternating blocks, so both see the same machine.

Independent per-column runs on a shared host can differ by 20-30% from host contention
alone, which is larger than the gap a batch-1 latency comparison has to resolve. Here each
column runs in its own process (frameworks never share one, so their thread pools never
compete) and the parent lets them run in turn: A B B A A B ... . A process that is not
running waits on a pipe, so its threads are idle; the first calls of every block are
dropped so the other process's spinning threads have gone to sleep. Reported per column:
the median of all kept calls; and the median over block pairs of the ratio of their
medians - the paired figure that cancels slow drift of the machine's speed.

    python -m bench.duel --models flowers,mnist,textcnn [--columns cnnc,ort] [--blocks 24] [--contend]

--contend runs a CPU-bound competitor pinned to one of the cores this process may use for
the whole duel, as a busy laptop or a shared server would: both columns meet the same
competitor, so the paired ratio says which one degrades more gracefully.
"""

import argparse
import json
import os
import statistics
import subprocess
import sys
import time

if __package__ in (None, ""):  # run as a script: make `bench` importable
    sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from bench import harness  # noqa: E402
from bench.frameworks import COLUMNS, framework  # noqa: E402

SETTLE = 5          # calls dropped at the start of each block


# ---- child: one column, timed on command ------------------------------------

def child(column, model, batch):
    """Build the column's inference callable, then time blocks on request.

    Reads "run K" lines from stdin and answers each with a JSON list of K per-call
    times in seconds; "quit" or end of input stops it."""
    module, layout = framework(column)
    ok, reason = module.available()
    if not ok:
        print(json.dumps({"error": reason}), flush=True)
        return
    fn = module.infer_fn(model, batch, layout)
    t0 = time.perf_counter()
    calls = 0
    while calls < 20 or time.perf_counter() - t0 < 0.5:   # warm-up, also sizes a block
        fn()
        calls += 1
    print(json.dumps({"ready": True, "call_s": (time.perf_counter() - t0) / calls}), flush=True)
    for line in sys.stdin:
        words = line.split()
        if not words or words[0] != "run":
            break
        samples = []
        for _ in range(int(words[1])):
            t = time.perf_counter()
            fn()
            samples.append(time.perf_counter() - t)
        print(json.dumps(samples), flush=True)


# ---- the competitor --------------------------------------------------------------

class Contender:
    """A process that spins on one core (the last this process may use) until stopped: the
    other load a latency figure must survive. Used as a context manager."""

    SPIN = "while True:\n    pass\n"

    def __init__(self):
        self.core = max(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else None
        self.proc = None

    def _pin(self):                       # runs in the child, before it spins
        if self.core is not None:
            os.sched_setaffinity(0, {self.core})

    def __enter__(self):
        self.proc = subprocess.Popen([sys.executable, "-c", self.SPIN], preexec_fn=self._pin,
                                     stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL)
        return self

    def __exit__(self, *exc):
        self.proc.kill()
        self.proc.wait()
        return False


# ---- parent: alternate the children ---------------------------------------------

class _Child:
    def __init__(self, column, label, model, batch, threads):
        self.column, self.label = column, label
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "bench.duel", "--child", "--columns", column,
             "--models", model, "--batch", str(batch)],
            env=harness.thread_env(threads), cwd=harness.BENCH_ROOT, text=True,
            stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
        self.hello = self._read()

    def _read(self):
        while True:
            line = self.proc.stdout.readline()
            if not line:
                err = harness._tail(self.proc.stderr.read())
                raise RuntimeError(f"{self.column}: {err or 'exited'}")
            try:
                return json.loads(line)
            except ValueError:
                continue          # a framework's own chatter on stdout

    def run(self, calls):
        self.proc.stdin.write(f"run {calls}\n")
        self.proc.stdin.flush()
        return self._read()

    def close(self):
        try:
            self.proc.stdin.write("quit\n")
            self.proc.stdin.close()
            self.proc.wait(timeout=30)
        except Exception:
            self.proc.kill()


def duel(model, columns=("cnnc", "ort"), threads=None, batch=1, blocks=24, block_s=0.15,
         contend=False):
    """Time `columns` on `model` in alternating blocks; return a JSON-able summary. With
    `contend`, a Contender spins on one core throughout (its CPU counts as other load)."""
    if contend:
        with Contender() as c:
            out = duel(model, columns, threads, batch, blocks, block_s)
        out["contended_core"] = c.core
        return out
    threads = threads or harness.default_threads()
    out = {"model": model, "batch": batch, "threads": threads, "columns": [],
           "blocks": blocks, "settle_calls": SETTLE, "contended_core": None}
    children = []
    try:
        labels = list(columns) if columns[0] != columns[1] else [columns[0], columns[1] + "#2"]
        for column, label in zip(columns, labels):
            c = _Child(column, label, model, batch, threads)
            if "error" in c.hello:
                c.close()
                out.update(status="missing", reason=f"{column}: {c.hello['error']}")
                return out
            children.append(c)
        out["columns"] = labels
        calls = [SETTLE + max(10, int(block_s / c.hello["call_s"])) for c in children]
        load = harness.OtherLoad(pids=[c.proc.pid for c in children])
        medians = {c.label: [] for c in children}
        kept = {c.label: [] for c in children}
        for b in range(blocks):
            order = children if b % 2 == 0 else children[::-1]   # A B, B A, ...
            for c in order:
                samples = c.run(calls[children.index(c)])[SETTLE:]
                kept[c.label] += samples
                medians[c.label].append(statistics.median(samples))
        first, second = labels
        ratios = [a / b for a, b in zip(medians[first], medians[second])]
        out.update(status="ok", other_load=load.share(), results={
            col: {"time_s": harness.summarize(kept[col]),
                  "block_medians_s": medians[col]} for col in kept},
            ratio=f"{first}/{second}", paired_ratio=harness.summarize(ratios),
            blocks_won=sum(r < 1.0 for r in ratios))
        return out
    except Exception as exc:
        out.update(status="error", reason=f"{type(exc).__name__}: {exc}")
        return out
    finally:
        for c in children:
            c.close()


def describe(result):
    """One line for the console."""
    if result["status"] != "ok":
        return f"{result['model']:8s} {result['status']}: {result.get('reason', '')}"
    a, b = result["columns"]
    ta = result["results"][a]["time_s"]["median"] * 1e3
    tb = result["results"][b]["time_s"]["median"] * 1e3
    pr = result["paired_ratio"]
    return (f"{result['model']:8s} {a} {ta:7.3f} ms  {b} {tb:7.3f} ms  "
            f"{result['ratio']} {pr['median']:.3f} (IQR {pr['q1']:.3f}-{pr['q3']:.3f}), "
            f"{a} faster in {result['blocks_won']}/{result['blocks']} blocks, "
            f"other load {100 * (result['other_load'] or 0):.0f}%"
            + (f" (a competitor spinning on core {result['contended_core']})"
               if result.get("contended_core") is not None else ""))


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--models", default="flowers,mnist,textcnn")
    p.add_argument("--columns", default="cnnc,ort", help="two columns, compared first/second")
    p.add_argument("--threads", type=int, default=harness.default_threads())
    p.add_argument("--batch", type=int, default=1)
    p.add_argument("--blocks", type=int, default=24)
    p.add_argument("--block-seconds", type=float, default=0.15)
    p.add_argument("--contend", action="store_true",
                   help="run a CPU-bound competitor on one core during the duel")
    p.add_argument("--out", help="write the results as JSON here")
    p.add_argument("--child", action="store_true", help=argparse.SUPPRESS)
    a = p.parse_args(argv)
    columns = [c.strip() for c in a.columns.split(",") if c.strip()]
    models = [m.strip() for m in a.models.split(",") if m.strip()]
    if a.child:
        return child(columns[0], models[0], a.batch)
    if len(columns) != 2 or any(c not in COLUMNS for c in columns):
        p.error(f"--columns takes two of {', '.join(COLUMNS)}")
    results = []
    for model in models:
        r = duel(model, columns, a.threads, a.batch, a.blocks, a.block_seconds, a.contend)
        print(describe(r), flush=True)
        results.append(r)
    if a.out:
        with open(a.out, "w") as f:
            json.dump(results, f, indent=1)


if __name__ == "__main__":
    main()
