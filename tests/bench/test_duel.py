"""The interleaved-latency benchmark's protocol, run with cnnc on both sides (no peers needed)."""
import os

import pytest

from bench import duel, harness

pytestmark = pytest.mark.slow


def test_duel_alternates_blocks_and_pairs_their_medians():
    r = duel.duel("mnist", ("cnnc", "cnnc"), threads=1, blocks=3, block_s=0.01)
    assert r["status"] == "ok", r.get("reason")
    assert r["columns"] == ["cnnc", "cnnc#2"]   # the same column twice gets two labels
    for label in r["columns"]:
        medians = r["results"][label]["block_medians_s"]
        assert len(medians) == 3 and all(m > 0 for m in medians)
        assert r["results"][label]["time_s"]["n"] >= 3 * 10   # >= 10 kept calls per block
    assert r["paired_ratio"]["n"] == 3
    a, b = (r["results"][label]["block_medians_s"] for label in r["columns"])
    assert r["paired_ratio"]["median"] == pytest.approx(sorted(x / y for x, y in zip(a, b))[1])
    assert 0 <= r["blocks_won"] <= 3


def test_duel_reports_an_unknown_model_as_an_error_not_a_crash():
    r = duel.duel("no-such-model", ("cnnc", "cnnc"), threads=1, blocks=1, block_s=0.01)
    assert r["status"] in ("error", "missing") and r["reason"]


def test_other_load_counts_live_children_as_own(tmp_path):
    """A child that has used 0.3 s of CPU and is still alive counts as this process's own.
    The child spins for CPU time, not wall time, so a loaded machine only makes it slower
    (it spins to 0.4 s: /proc counts whole clock ticks, the child's own clock does not)."""
    import subprocess
    import sys
    import time
    spin = ("import time\nwhile time.process_time() < 0.4: pass\ntime.sleep(60)")
    busy = subprocess.Popen([sys.executable, "-c", spin])
    try:
        load = harness.OtherLoad(pids=[busy.pid])
        deadline = time.perf_counter() + 60
        while harness._pid_cpu(busy.pid) < 0.3 and time.perf_counter() < deadline:
            time.sleep(0.05)
        assert busy.poll() is None                    # still running: a live child
        own = load._own() - load.start[2]
    finally:
        busy.kill()
        busy.wait()
    assert own > 0.2               # the child's spinning is counted as this process's CPU


def test_contender_spins_on_one_core_while_the_duel_runs_and_stops_after():
    import os
    import time
    with duel.Contender() as c:
        pid = c.proc.pid
        assert os.sched_getaffinity(pid) == {c.core}      # pinned to one allowed core
        t0 = harness._pid_cpu(pid)
        time.sleep(0.5)
        assert harness._pid_cpu(pid) - t0 > 0.1            # and busy on it
    assert c.proc.poll() is not None                       # gone once the block ends


def test_duel_under_contention_says_so():
    r = duel.duel("mnist", ("cnnc", "cnnc"), threads=1, blocks=1, block_s=0.01, contend=True)
    assert r["status"] == "ok", r.get("reason")
    assert r["contended_core"] in os.sched_getaffinity(0)
    assert "competitor spinning on core" in duel.describe(r)
