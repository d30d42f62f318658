"""Data-parallel training on MPI (issue 17), through the real mpiexec on loopback: the same
params as one process, resume with another worker count, failures that end the job with a
message instead of a hang, and mismatched ranks caught at start-up. Needs the [mpi] extra."""
import shutil
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

from cnnc.runtime.checkpoint import read_extra
from cnnc.workers import find_mpiexec

from .conftest import EXAMPLES

pytest.importorskip("mpi4py", reason='the [mpi] extra is not installed: pip install -e ".[mpi]"')
MPIEXEC = find_mpiexec()
pytestmark = [pytest.mark.slow, pytest.mark.skipif(MPIEXEC is None, reason="no mpiexec")]
DIGITS = EXAMPLES / "digits.cnn"
JOB = Path(__file__).with_name("distributed_job.py")


def cnnc(*args, timeout=300):
    return subprocess.run([sys.executable, "-m", "cnnc", *map(str, args)], capture_output=True,
                          text=True, timeout=timeout)


def mpiexec(*args, timeout=300):
    return subprocess.run([MPIEXEC, *map(str, args)], capture_output=True, text=True, timeout=timeout)


def train(tmp, name, *extra, epochs=2):
    r = cnnc("train", DIGITS, "--epochs", epochs, "--batch-size", 64, "--seed", 0, "-q",
             "--checkpoint", tmp / f"{name}.npz", "--build-dir", tmp / "gen", *extra)
    assert r.returncode == 0, r.stderr
    return r


def arrays(path) -> dict:
    with np.load(path) as z:
        return {k: z[k] for k in z.files if z[k].dtype == np.float32}


def assert_same_up_to_summation_order(a, b):
    """Every array's largest difference within 1e-5 of its largest value: one step's gradients
    differ by ~1e-8 relative (float32 sums of two half batches), and after the steps of these
    runs the params differ by ~6e-7 (measured); a wrong mask or a lost update is 1e-2 or more."""
    a, b = arrays(a), arrays(b)
    assert a.keys() == b.keys()
    for k in a:
        scale = np.abs(b[k]).max()
        assert np.abs(a[k] - b[k]).max() <= 1e-5 * scale, k


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    """digits (dropout 0.25), global batch 64, seed 0, one thread per rank: one worker for two
    epochs; two workers for two; two for one then one more epoch on one worker."""
    tmp = tmp_path_factory.mktemp("dist")
    one = train(tmp, "one", "--threads", 1)
    two = train(tmp, "two", "--workers", 2, "--threads", 1)
    train(tmp, "switch", "--workers", 2, "--threads", 1, epochs=1)
    train(tmp, "switch", "--threads", 1, "--resume")
    return tmp, one, two


def test_two_workers_give_one_workers_params_dropout_included(runs):
    tmp, one, two = runs
    assert "on 2 workers x 1 threads" in two.stderr
    assert_same_up_to_summation_order(tmp / "two.npz", tmp / "one.npz")
    assert read_extra(tmp / "two.npz")["epoch"] == 1
    assert two.stdout.count("held-out test") == 1           # rank 0 alone reports
    acc = float(two.stdout.split("accuracy ")[1].split("%")[0])
    assert acc > 70.0


def test_resume_with_another_worker_count(runs):
    tmp, _, _ = runs
    assert read_extra(tmp / "switch.npz")["epoch"] == 1
    assert_same_up_to_summation_order(tmp / "switch.npz", tmp / "one.npz")


def test_ranks_hold_the_same_params_and_evaluate_shards_and_sums(tmp_path):
    r = mpiexec("-n", 2, sys.executable, JOB, tmp_path / "gen", tmp_path, "evaluate")
    assert r.returncode == 0, r.stderr
    lines = dict(line.split(" ", 1) for line in r.stdout.splitlines())
    assert lines["params"] == "1 distinct on 2 ranks"
    together, alone = (np.array(lines[k].split(), float) for k in ("together", "alone"))
    np.testing.assert_allclose(together, alone, rtol=1e-6)   # float32 batch means summed in float64


@pytest.mark.parametrize("mode", ["kill", "raise"])
def test_a_failed_rank_ends_the_job_with_a_message(tmp_path, mode):
    r = mpiexec("-n", 2, sys.executable, JOB, tmp_path / "gen", tmp_path, mode, timeout=240)
    ended = time.time()
    assert r.returncode != 0
    assert ended - float((tmp_path / "failed_at").read_text()) < 20    # seconds, not a hang
    if mode == "raise":
        assert "rank 1 of 2 failed (RuntimeError: a failure on purpose); stopping every rank" in r.stderr
        assert "Traceback" not in r.stderr
    else:
        assert "signal 9" in r.stdout + r.stderr              # mpiexec names what happened
    assert read_extra(tmp_path / "job.npz")["epoch"] == 0     # epoch 1's checkpoint, loadable


def test_ranks_with_different_specs_are_caught_at_start(tmp_path):
    other = tmp_path / "other.cnn"
    other.write_text(DIGITS.read_text().replace("dropout(0.25)", "dropout(0.5)"))
    rank = [sys.executable, "-m", "cnnc", "train", "--epochs", 1, "--build-dir", tmp_path / "gen",
            "--checkpoint", tmp_path / "x.npz"]
    r = mpiexec("-n", 1, *rank, DIGITS, ":", "-n", 1, *rank, other)
    assert r.returncode == 1
    assert "the spec's fingerprint is" in r.stderr and "rank 1" in r.stderr
    assert "Traceback" not in r.stderr and not (tmp_path / "x.npz").exists()


def test_workers_without_mpi_say_what_to_install(tmp_path):
    code = ("import sys; sys.modules['mpi4py'] = None; from cnnc.cli import main; "
            f"sys.exit(main(['train', {str(DIGITS)!r}, '--workers', '2', '--build-dir', {str(tmp_path)!r}]))")
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert r.returncode == 1
    assert r.stderr.strip().count("\n") == 0 and 'pip install "cnnc[mpi]"' in r.stderr


def _descendants(pid: int) -> list[int]:
    children: dict[int, list[int]] = {}
    for d in Path("/proc").iterdir():
        if d.name.isdigit():
            try:
                ppid = int((d / "stat").read_text().rsplit(")", 1)[1].split()[1])
            except (OSError, IndexError, ValueError):
                continue
            children.setdefault(ppid, []).append(int(d.name))
    out, todo = [], [pid]
    while todo:
        for c in children.get(todo.pop(), []):
            out.append(c)
            todo.append(c)
    return out


@pytest.mark.skipif(not Path("/proc/self/stat").exists(), reason="needs /proc to find the ranks")
def test_killing_a_worker_of_cnnc_train_ends_it_with_one_line(tmp_path):
    import os
    import signal
    ck = tmp_path / "k.npz"
    cmd = ["train", DIGITS, "--workers", 2, "--epochs", 500, "-q", "--checkpoint", ck, "--build-dir", tmp_path / "gen"]
    p = subprocess.Popen([sys.executable, "-m", "cnnc", *map(str, cmd)],
                         stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        deadline = time.time() + 240
        while not ck.exists() and time.time() < deadline and p.poll() is None:
            time.sleep(0.2)
        assert ck.exists(), p.stderr.read() if p.poll() is not None else "no checkpoint in time"
        ranks = [q for q in _descendants(p.pid)
                 if b"cnnc" in Path(f"/proc/{q}/cmdline").read_bytes() and q != p.pid]
        ranks = [q for q in ranks if b"mpiexec" not in Path(f"/proc/{q}/cmdline").read_bytes()]
        assert ranks
        os.kill(ranks[-1], signal.SIGKILL)
        killed = time.time()
        _, err = p.communicate(timeout=60)
    finally:
        if p.poll() is None:
            p.kill()
    assert time.time() - killed < 20 and p.returncode == 1
    assert err.strip().splitlines()[-1].startswith("cnnc: error: training on 2 workers stopped")
    assert "Traceback" not in err
    assert read_extra(ck)["epoch"] >= 0


def test_batch_norm_state_is_averaged_and_the_same_on_every_rank(tmp_path):
    """Each rank updates the moving statistics from its own part of the batch; the ranks
    average the new values, so all hold the same state (and params), and it moved."""
    r = mpiexec("-n", 2, sys.executable, JOB, tmp_path / "gen", tmp_path, "state")
    assert r.returncode == 0, r.stderr
    assert "params 1 distinct on 2 ranks" in r.stdout
    line = next(l for l in r.stdout.splitlines() if l.startswith("state "))
    assert line.startswith("state 1 distinct on 2 ranks"), line
    assert float(line.rsplit("moved ", 1)[1]) > 1e-3          # the moving mean left its zeros
