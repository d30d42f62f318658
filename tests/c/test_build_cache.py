"""The build cache under concurrency: two processes building different specs that share a
model name into one folder each get their own model; the same spec at two paths is built
once; old builds are swept only when old."""
import os
import subprocess
import sys
import time

import pytest

import cnnc
from cnnc.compiler import build

SPEC = """model same
input x: f32[N, 4]
param w: f32[4, {units}] = ones()
output y = matmul(x, w)
"""

WORKER = r"""
import sys, numpy as np, cnnc
units, out = int(sys.argv[1]), sys.argv[2]
for _ in range(3):
    mod = cnnc.compile(sys.argv[3].replace("UNITS", str(units)), out_dir=out)
    y = mod.Model().forward(x=np.ones((2, 4), np.float32))["y"]
    assert y.shape == (2, units) and (y == 4).all(), (units, y.shape)
print("ok", units)
"""


def test_two_processes_building_specs_with_one_model_name_each_get_their_own(tmp_path):
    spec = SPEC.format(units="UNITS")
    procs = [subprocess.Popen([sys.executable, "-c", WORKER, str(u), str(tmp_path), spec],
                              stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True) for u in (3, 5, 3, 5)]
    outs = [p.communicate(timeout=600) for p in procs]
    for p, (out, err) in zip(procs, outs):
        assert p.returncode == 0, err[-3000:]
        assert out.startswith("ok")
    assert len(list((tmp_path / "same").glob("build-*/*.so"))) == 2      # one build per spec


def test_the_same_spec_at_two_paths_is_built_once(tmp_path, monkeypatch):
    a = cnnc.compile(SPEC.format(units=2), out_dir=tmp_path / "out", filename=str(tmp_path / "one" / "m.cnn"))

    def no_second_build(*args, **kwargs):
        raise AssertionError("rebuilt an unchanged spec")
    monkeypatch.setattr(build, "compile_extension", no_second_build)
    b = cnnc.compile(SPEC.format(units=2), out_dir=tmp_path / "out", filename=str(tmp_path / "two" / "m.cnn"))
    assert a.manifest["extension"] == b.manifest["extension"]
    assert b.manifest["source"].endswith("two/m.cnn")          # each keeps its own manifest


def test_a_newer_build_never_removes_a_recent_one(tmp_path):
    first = cnnc.compile(SPEC.format(units=2), out_dir=tmp_path)
    cnnc.compile(SPEC.format(units=7), out_dir=tmp_path)
    builds = sorted((tmp_path / "same").glob("build-*"))
    assert len(builds) == 2
    assert first.Model().forward(x=__import__("numpy").ones((1, 4), "float32"))["y"].shape == (1, 2)


def test_old_builds_and_killed_build_folders_are_swept(tmp_path):
    pkg = tmp_path / "m"
    pkg.mkdir()
    old = time.time() - 2 * build.SWEEP_AFTER_S
    made = []
    for i in range(build.KEEP_BUILDS + 3):
        d = pkg / f"build-{i:012x}"
        (d / ".build-killed").mkdir(parents=True)
        os.utime(d / ".build-killed", (old, old))
        os.utime(d, (old + i, old + i))
        made.append(d)
    fresh = pkg / "build-fresh"
    fresh.mkdir()
    build._sweep(pkg, keep=fresh)
    left = sorted(p.name for p in pkg.glob("build-*"))
    # the newest KEEP_BUILDS - 1 old ones stay beside the one just built
    assert left == sorted(["build-fresh"] + [d.name for d in made[-(build.KEEP_BUILDS - 1):]])
    assert not list(pkg.glob("build-*/.build-*"))
