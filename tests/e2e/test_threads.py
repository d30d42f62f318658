"""Thread counts: training is bitwise deterministic for a seed and a thread count, and one and
two threads agree within float32 rounding. Each run is a fresh process (OMP_NUM_THREADS is read
once, when OpenMP starts)."""
import json
import os
import re
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from .conftest import TINY_FLOWERS

SCRIPT = r"""
import json, sys, numpy as np, cnnc
mod = cnnc.compile(sys.argv[1], out_dir=sys.argv[2])
m = mod.Model(seed=0)
rng = np.random.default_rng(1)
n, h = int(sys.argv[3]), int(sys.argv[4])
x = rng.random((n, h, h, 3), dtype=np.float32)
y = rng.integers(0, 3, n).astype(np.int32)
for _ in range(4):
    m.train_step(x=x, y=y)
json.dump({k: v.tolist() for k, v in m.params.items()}, sys.stdout)
"""

# Wide enough at batch 80 that every kind of threaded kernel runs threaded: the bias-gradient
# row sums (80*32*32 rows of 32 > 2M points), pooling and its gradient, the convs, and the
# optimizer update (the fc weight alone is 16*16*32*40 = 327,680 floats).
WIDE = """
model wide
input x: f32[N, 32, 32, 3]
input y: i32[N]
param w1: f32[3, 3, 3, 32] = truncated_normal(stddev=0.1)
param b1: f32[32] = constant(0.0)
h1 = max_pool(relu(bias_add(conv2d(x, w1, strides=[1, 1, 1, 1], padding="SAME"), b1)), ksize=[1, 2, 2, 1], strides=[1, 2, 2, 1], padding="VALID")
param w2: f32[16*16*32, 40] = truncated_normal(stddev=0.02)
param b2: f32[40] = constant(0.1)
h2 = relu(matmul(reshape(h1, [-1, 16*16*32]), w2) + b2)
param w3: f32[40, 3] = truncated_normal(stddev=0.1)
logits = matmul(h2, w3)
output logits
loss = reduce_mean(sparse_softmax_cross_entropy_with_logits(labels=y, logits=logits))
optimizer = adam(lr=0.01)
"""


def _train(threads, spec, build, n, h):
    env = dict(os.environ, OMP_NUM_THREADS=str(threads))
    r = subprocess.run([sys.executable, "-c", SCRIPT, str(spec), str(build), str(n), str(h)], capture_output=True,
                       text=True, env=env, timeout=300, check=True)
    return {k: np.array(v, np.float32) for k, v in json.loads(r.stdout).items()}


def _threaded_at(src: str, n: int, marker: str) -> bool:
    """Whether the function of model.c containing `marker` has a thread condition true at N = n."""
    fns = [f for f in re.split(r"\n(?=static void |void )", src) if marker in f]
    assert fns, f"no function with {marker!r}"
    conds = re.findall(r"CNNC_PARALLEL(?:_FOR)?\((N >= \d+|1)\)", fns[0])
    return any(c == "1" or n >= int(c.split()[-1]) for c in conds)


@pytest.mark.parametrize("name, text, n, h", [("tiny", TINY_FLOWERS, 16, 16), ("wide", WIDE, 80, 32)])
def test_thread_counts(tmp_path, name, text, n, h):
    spec = tmp_path / f"{name}.cnn"
    spec.write_text(text)
    build = tmp_path / "gen"
    two_a, two_b, one = _train(2, spec, build, n, h), _train(2, spec, build, n, h), _train(1, spec, build, n, h)
    if name == "wide":
        src = next(build.glob("*/model.c")).read_text()
        for marker in ("cg_share(32, 16", "the windows tile the image", "adam update"):
            assert _threaded_at(src, n, marker), f"the kernel with {marker!r} is serial at N = {n}"
    for k in one:
        np.testing.assert_array_equal(two_a[k], two_b[k], err_msg=f"{k}: two runs with 2 threads differ")
        # Filter gradients sum partials per thread, so 1 and 2 threads round differently (~1e-7
        # relative per sum). Four Adam steps of lr 0.01 move params by ~0.04; 1e-5 absolute is
        # far below that and far above the rounding drift, for all but a handful of elements:
        # Adam divides each gradient by its own running size, so a weight whose gradient is at
        # rounding level (its input sits at relu's kink in one run and not the other) takes a
        # step that differs by a visible fraction of lr. Those may be at most 1 in 10,000, and
        # none may differ by a tenth of one step (1e-3).
        diff = np.abs(one[k] - two_a[k])
        off = diff > 1e-5 + 1e-4 * np.abs(two_a[k])
        assert off.mean() <= 1e-4, f"{k}: {off.sum()} of {off.size} elements differ past rounding"
        assert diff.max() < 1e-3, f"{k}: 1 and 2 threads differ by {diff.max():.2e}"


SET_SCRIPT = r"""
import json, sys, numpy as np, cnnc
mod = cnnc.compile(sys.argv[1], out_dir=sys.argv[2])
m = mod.Model(seed=0)
before = m.threads
m.threads = int(sys.argv[3])
rng = np.random.default_rng(1)
x = rng.random((80, 32, 32, 3), dtype=np.float32)
y = rng.integers(0, 3, 80).astype(np.int32)
for _ in range(2):
    m.train_step(x=x, y=y)
json.dump({"before": before, "after": m.threads, "params": {k: v.tolist() for k, v in m.params.items()}}, sys.stdout)
"""


def test_threads_property_sets_the_kernels_thread_count(tmp_path):
    """Model.threads = 1 under OMP_NUM_THREADS=2 trains exactly as a one-thread process does."""
    spec = tmp_path / "wide.cnn"
    spec.write_text(WIDE)
    build = tmp_path / "gen"

    def run(env_threads, set_to):
        env = dict(os.environ, OMP_NUM_THREADS=str(env_threads))
        r = subprocess.run([sys.executable, "-c", SET_SCRIPT, str(spec), str(build), str(set_to)],
                           capture_output=True, text=True, env=env, timeout=300, check=True)
        return json.loads(r.stdout)

    set_one, one, two = run(2, 1), run(1, 1), run(2, 2)
    assert (set_one["before"], set_one["after"]) == (2, 1)
    for k, v in one["params"].items():
        np.testing.assert_array_equal(np.array(set_one["params"][k]), np.array(v), err_msg=k)
    # and the setting matters: two threads sum filter-gradient partials in another order
    assert any(not np.array_equal(np.array(two["params"][k]), np.array(v)) for k, v in one["params"].items())


def test_threads_must_be_positive(tmp_path):
    import cnnc
    spec = tmp_path / "tiny.cnn"
    spec.write_text(TINY_FLOWERS)
    m = cnnc.compile(str(spec), out_dir=tmp_path / "gen").Model(seed=0)
    for bad in (0, -1, 1.5, True, "2"):
        with pytest.raises(ValueError, match="whole number"):
            m.threads = bad
