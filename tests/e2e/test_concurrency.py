"""One Model from several Python threads, per-model thread counts, and fork: each call gives
the bits it gives alone."""
import os
import subprocess
import sys
import threading
from pathlib import Path

import numpy as np
import pytest

from cnnc.runtime.model import available_cores

ROOT = Path(__file__).resolve().parents[2]


def _digits_batch(n=64, seed=0):
    rng = np.random.default_rng(seed)
    return rng.random((n, 8, 8, 1), dtype=np.float32), rng.integers(0, 10, n).astype(np.int32)


def _run_threads(fns):
    errors = []

    def guard(f):
        try:
            f()
        except BaseException as e:      # surfaced below, not lost in the thread
            errors.append(e)
    threads = [threading.Thread(target=guard, args=(f,)) for f in fns]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=120)
    assert not errors, errors
    assert not any(t.is_alive() for t in threads), "a thread hung"


def test_one_model_trained_from_two_threads_equals_the_same_steps_in_sequence(compiled):
    mod = compiled("digits")
    x, y = _digits_batch()
    alone = mod.Model(seed=3)
    for _ in range(12):
        alone.train_step(x=x, y=y)
    shared = mod.Model(seed=3)
    # every step uses the same batch, so any interleaving of whole steps gives the same bits;
    # steps that overlapped inside the C would share one workspace and gradient slab
    _run_threads([lambda: [shared.train_step(x=x, y=y) for _ in range(6)]] * 2)
    assert shared.step == 12
    for k, v in alone.params.items():
        np.testing.assert_array_equal(shared.params[k], v, err_msg=k)


def test_one_model_predicting_from_four_threads_gives_each_its_own_answer(compiled):
    mod = compiled("digits")
    m = mod.Model(seed=0)
    batches = [_digits_batch(n=8 * (i + 1), seed=i)[0] for i in range(4)]
    want = [m.forward(x=b)["logits"] for b in batches]
    got = [None] * 4

    def work(i):
        def f():
            for _ in range(20):
                got[i] = m.forward(x=batches[i])["logits"]
        return f
    _run_threads([work(i) for i in range(4)])
    for i in range(4):
        np.testing.assert_array_equal(got[i], want[i])


def test_threads_are_per_model_and_clamped_to_the_cores_we_may_use(compiled):
    mod = compiled("digits")
    a, b = mod.Model(seed=0), mod.Model(seed=0)
    a.threads = 1
    b.threads = 100000                  # used to segfault inside libgomp
    assert a.threads == 1
    assert 1 <= b.threads <= available_cores()
    x, _ = _digits_batch()
    np.testing.assert_allclose(b.forward(x=x)["logits"], a.forward(x=x)["logits"], rtol=1e-5, atol=1e-6)
    assert a.threads == 1               # b's calls did not change a's count
    with pytest.raises(ValueError, match="whole number"):
        a.threads = 0


FORK = r"""
import multiprocessing as mp, sys
import numpy as np, cnnc
mod = cnnc.compile(sys.argv[1], out_dir=sys.argv[2])
m = mod.Model(seed=0)
m.threads = 2
x = np.random.default_rng(0).random((64, 784), dtype=np.float32)
ref = m.forward(x=x)["y_predict"]          # the parent's OpenMP threads now exist


def child(_):
    return m.forward(x=x)["y_predict"]


with mp.get_context("fork").Pool(1) as pool:
    out = pool.apply_async(child, (0,)).get(timeout=60)
print("same" if np.array_equal(out, ref) else "different")
"""


def test_a_forked_child_runs_the_model_instead_of_hanging(build_dir):
    r = subprocess.run([sys.executable, "-c", FORK, str(ROOT / "examples" / "mnist.cnn"), str(build_dir)],
                       capture_output=True, text=True, timeout=240)
    assert r.returncode == 0, r.stderr[-2000:]
    assert r.stdout.strip() == "same"


def _feed(m, n, rng):
    feed = {}
    for name, (dtype, shape) in m.inputs.items():
        dims = tuple(n if d is None else d for d in shape)
        if dtype == "i32":
            high = next(b["high"] for b in m.manifest["bounds"] if b["input"] == name)
            feed[name] = rng.integers(0, high, dims).astype(np.int32)
        elif name in m.label_inputs:
            feed[name] = np.eye(dims[1], dtype=np.float32)[rng.integers(0, dims[1], n)]
        else:
            feed[name] = rng.random(dims, dtype=np.float32)
    return feed


@pytest.mark.parametrize("spec", ["mnist", "tiny_flowers"])
def test_two_models_in_two_threads_equal_the_same_calls_in_sequence(compiled, spec):
    """Each model trains 6 steps (filter gradients, packed GEMMs) and predicts a single example
    (the few-row product, whose threads add partial sums) on 2 threads of its own."""
    from .conftest import TINY_FLOWERS
    mod = compiled(TINY_FLOWERS if spec == "tiny_flowers" else spec)
    rng = np.random.default_rng(0)
    probe = mod.Model(seed=0)
    feeds = [_feed(probe, 16, rng) for _ in range(2)]
    singles = [{k: v[:1] for k, v in f.items() if k in probe.feature_inputs} for f in feeds]

    def work(seed, out):
        def run():
            m = mod.Model(seed=seed)
            m.threads = 2
            for _ in range(6):
                m.train_step(**feeds[seed])
                out.append(m.forward(**singles[seed]))
            out.append({k: v.copy() for k, v in m.params.items()})
        return run

    alone = [[], []]
    for s in range(2):
        work(s, alone[s])()
    together = [[], []]
    _run_threads([work(0, together[0]), work(1, together[1])])
    for s in range(2):
        for got, want in zip(together[s], alone[s]):
            for k in want:
                np.testing.assert_array_equal(got[k], want[k], err_msg=f"model {s}: {k}")
