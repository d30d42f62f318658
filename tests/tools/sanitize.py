"""Run examples built with AddressSanitizer and UBSan: `python -m tests.tools.sanitize [NAME ...]`
(default: every examples/*.cnn). Each example is compiled with
CNNC_CFLAGS="-fsanitize=address,undefined", then trained a few steps, run forward and
backward on random data of its input types, in a Python with libasan preloaded."""
from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
# -O1, as the AddressSanitizer docs suggest: a sanitized -O3 build of the GEMM core took
# minutes to compile (digits: about 3 min against 14 s, on a busy 2-core machine)
FLAGS = "-O1 -fsanitize=address,undefined -fno-sanitize-recover=undefined -fno-omit-frame-pointer"

SCRIPT = r"""
import sys, numpy as np, cnnc
mod = cnnc.compile(sys.argv[1], out_dir=sys.argv[2])
m = mod.Model(seed=0)
m.threads = 2
rng = np.random.default_rng(0)
n = 3
feed = {}
for name, (dtype, shape) in m.inputs.items():
    dims = tuple(n if d is None else d for d in shape)
    bound = next((b["high"] for b in m.manifest.get("bounds", []) if b["input"] == name), None)
    if dtype == "i32":
        feed[name] = rng.integers(0, bound or 2, dims).astype(np.int32)
    elif name in m.label_inputs and len(dims) == 2:
        feed[name] = np.eye(dims[1], dtype=np.float32)[rng.integers(0, dims[1], n)]
    else:
        feed[name] = rng.random(dims, dtype=np.float32)
features = {k: v for k, v in feed.items() if k in m.feature_inputs}
out = m.forward(**features)
m.backward(features, {k: np.ones_like(v) for k, v in out.items() if v.dtype == np.float32})
if m.optimizer:
    for _ in range(2):
        m.train_step(**feed)
print("trained", sys.argv[1])
"""


def libasan() -> str | None:
    cc = os.environ.get("CC", "gcc")
    r = subprocess.run([cc, "-print-file-name=libasan.so"], capture_output=True, text=True)
    path = r.stdout.strip()
    return path if r.returncode == 0 and os.path.isabs(path) and os.path.exists(path) else None


def available() -> bool:
    return libasan() is not None


def run(name: str, build_dir, timeout: float = 900) -> subprocess.CompletedProcess:
    env = dict(os.environ, CNNC_CFLAGS=FLAGS, LD_PRELOAD=libasan(),
               ASAN_OPTIONS="detect_leaks=0:abort_on_error=0", UBSAN_OPTIONS="print_stacktrace=1")
    spec = ROOT / "examples" / f"{name}.cnn"
    return subprocess.run([sys.executable, "-c", SCRIPT, str(spec), str(build_dir)], env=env,
                          capture_output=True, text=True, timeout=timeout)


def main(names: list[str]) -> int:
    import tempfile
    if not available():
        print("no libasan for this compiler: install gcc's sanitizer runtime", file=sys.stderr)
        return 2
    names = names or sorted(p.stem for p in (ROOT / "examples").glob("*.cnn"))
    failed = 0
    with tempfile.TemporaryDirectory() as d:
        for name in names:
            r = run(name, d)
            clean = r.returncode == 0 and "runtime error" not in r.stderr
            print(f"{name}: {'clean' if clean else 'FAILED'}")
            if not clean:
                failed += 1
                print(r.stderr[-4000:], file=sys.stderr)
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
