"""Save, or compare with a saved run, every example's numbers at fixed seeds and thread counts.

    python -m tests.tools.example_numbers save  DIR     # forward, backward, eval_step, train_step
    python -m tests.tools.example_numbers check DIR     # bit-for-bit against DIR

For a refactor of the compiler that must not change a bit of what the generated C computes:
save before, check after, on the same machine (numbers depend on -march=native). Not a pytest
test: the saved arrays belong to one CPU and compiler."""
from __future__ import annotations

import sys
import tempfile
from pathlib import Path

import numpy as np

import cnnc

ROOT = Path(__file__).resolve().parents[2]
THREADS = (1, 2)
N = 3


def _array(rng, dtype, shape, n):
    shape = [n if isinstance(d, str) else d for d in shape]
    if dtype == "f32":
        return rng.standard_normal(shape).astype(np.float32)
    if dtype == "i32":
        return rng.integers(0, 3, shape).astype(np.int32)
    return rng.integers(0, 2, shape).astype(bool)


def _shape(shape, n):
    out = []
    for d in shape:
        if isinstance(d, str):          # "N" or "2*N"
            out.append(n * (int(d.split("*")[0]) if "*" in d else 1))
        else:
            out.append(d)
    return out


def numbers(spec: Path, build: Path) -> dict[str, np.ndarray]:
    mod = cnnc.compile(spec, out_dir=build)
    man = mod.manifest
    out = {}
    for threads in THREADS:
        m = mod.Model(seed=0)
        m.threads = threads
        rng = np.random.default_rng(7)
        batch = {i["name"]: _array(rng, i["dtype"], _shape(i["shape"], N), N) for i in man["inputs"]}
        feats = {k: batch[k] for k in m.feature_inputs}
        for k, v in m.forward(**feats).items():
            out[f"t{threads}/forward/{k}"] = np.asarray(v)
        douts = {o["name"]: rng.standard_normal(_shape(o["shape"], N)).astype(np.float32)
                 for o in man["outputs"] if o["dtype"] == "f32"}
        for k, v in m.backward(feats, douts).items():
            out[f"t{threads}/backward/{k}"] = np.asarray(v)
        if man["loss"] is not None:
            for k, v in m.eval_step(**batch).items():
                out[f"t{threads}/eval/{k}"] = np.float32(v)
            if man["optimizer"] is not None:
                for step in range(3):
                    for k, v in m.train_step(**batch).items():
                        out[f"t{threads}/train{step}/{k}"] = np.float32(v)
                for k, v in m.params.items():
                    out[f"t{threads}/params/{k}"] = v.copy()
                for k, v in m.optimizer_state.items():
                    out[f"t{threads}/opt/{k}"] = v.copy()
    return out


def main(argv) -> int:
    mode, where = argv[1], Path(argv[2])
    where.mkdir(parents=True, exist_ok=True)
    bad = 0
    with tempfile.TemporaryDirectory() as build:
        for spec in sorted((ROOT / "examples").glob("*.cnn")):
            got = numbers(spec, Path(build))
            path = where / f"{spec.stem}.npz"
            if mode == "save":
                np.savez(path, **got)
                print(f"{spec.stem}: saved {len(got)} arrays")
                continue
            want = dict(np.load(path))
            diff = sorted(set(want) ^ set(got))
            diff += [k for k in want if k in got and (want[k].dtype != got[k].dtype or want[k].shape != got[k].shape
                                                     or want[k].tobytes() != got[k].tobytes())]
            bad += bool(diff)
            print(f"{spec.stem}: {'SAME' if not diff else 'DIFFERENT: ' + ', '.join(diff[:8])} ({len(got)} arrays)")
    return 1 if bad else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
