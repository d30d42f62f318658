"""Thread counts: training is bitwise deterministic for a seed and a thread count, and one and
two threads agree within float32 rounding. Each run is a fresh process (OMP_NUM_THREADS is read
once, when OpenMP starts)."""
import json
import os
import subprocess
import sys

import numpy as np

from .conftest import TINY_FLOWERS

SCRIPT = r"""
import json, sys, numpy as np, cnnc
mod = cnnc.compile(sys.argv[1], out_dir=sys.argv[2])
m = mod.Model(seed=0)
rng = np.random.default_rng(1)
x = rng.random((16, 16, 16, 3), dtype=np.float32)
y = rng.integers(0, 3, 16).astype(np.int32)
for _ in range(4):
    m.train_step(x=x, y=y)
json.dump({k: v.tolist() for k, v in m.params.items()}, sys.stdout)
"""


def _train(threads, spec, build):
    env = dict(os.environ, OMP_NUM_THREADS=str(threads))
    r = subprocess.run([sys.executable, "-c", SCRIPT, str(spec), str(build)], capture_output=True,
                       text=True, env=env, timeout=300, check=True)
    return {k: np.array(v, np.float32) for k, v in json.loads(r.stdout).items()}


def test_thread_counts(tmp_path):
    spec = tmp_path / "tiny.cnn"
    spec.write_text(TINY_FLOWERS)
    build = tmp_path / "gen"
    two_a, two_b, one = _train(2, spec, build), _train(2, spec, build), _train(1, spec, build)
    for k in one:
        np.testing.assert_array_equal(two_a[k], two_b[k], err_msg=f"{k}: two runs with 2 threads differ")
        # Filter gradients sum partials per thread, so 1 and 2 threads round differently (~1e-7
        # relative per sum). Four Adam steps of lr 0.01 move params by ~0.04; 1e-5 absolute is
        # far below that and far above the rounding drift.
        np.testing.assert_allclose(one[k], two_a[k], rtol=1e-4, atol=1e-5, err_msg=k)
