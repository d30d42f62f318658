"""The GEMM core is compiled once per target, compiler and flags into the cache
(cnnc/cache.py) and linked into every model: a second model reuses it, an unwritable cache
falls back to the output folder, and no model exports the core's symbols."""
import os
import subprocess

import numpy as np
import pytest

import cnnc
from cnnc import cache

pytestmark = pytest.mark.slow

SPEC = """model {name}
input x: f32[N, 6, 6, 2]
param w: f32[3, 3, 2, 4] = random_normal(stddev=0.5)
output y = conv2d(x, w, strides=1, padding="SAME")
"""


def _conv(x, w):
    """SAME 3x3 stride-1 conv in plain NumPy."""
    xp = np.pad(x, ((0, 0), (1, 1), (1, 1), (0, 0)))
    out = np.zeros(x.shape[:3] + (w.shape[3],), np.float64)
    for a in range(3):
        for b in range(3):
            out += np.einsum("nhwc,co->nhwo", xp[:, a:a + x.shape[1], b:b + x.shape[2]], w[a, b])
    return out


def _check(mod):
    m = mod.Model(seed=1)
    x = np.random.default_rng(0).standard_normal((2, 6, 6, 2)).astype(np.float32)
    np.testing.assert_allclose(m.forward(x=x)["y"], _conv(x, m.params["w"]), rtol=1e-5, atol=1e-5)


def test_the_core_is_compiled_once_and_shared(tmp_path, monkeypatch):
    monkeypatch.setenv("CNNC_CACHE_DIR", str(tmp_path / "cache"))
    a = cnnc.compile(SPEC.format(name="core_a"), out_dir=tmp_path / "a")
    objects = list((tmp_path / "cache" / "core").glob("*/gemm_core.o"))
    assert len(objects) == 1
    stamp = objects[0].stat().st_mtime_ns
    b = cnnc.compile(SPEC.format(name="core_b"), out_dir=tmp_path / "b")
    assert list((tmp_path / "cache" / "core").glob("*/gemm_core.o")) == objects
    assert objects[0].stat().st_mtime_ns == stamp          # reused, not rebuilt
    _check(a)
    _check(b)


def test_an_unwritable_cache_falls_back_to_the_output_folder(tmp_path, monkeypatch):
    blocked = tmp_path / "not-a-folder"
    blocked.write_text("a file where the cache would go")
    monkeypatch.setenv("CNNC_CACHE_DIR", str(blocked))
    assert cache.folder("core") is None
    mod = cnnc.compile(SPEC.format(name="core_c"), out_dir=tmp_path / "out")
    assert list((tmp_path / "out" / ".cnnc-cache" / "core").glob("*/gemm_core.o"))
    _check(mod)


def test_cache_folders_are_private(tmp_path, monkeypatch):
    monkeypatch.setenv("CNNC_CACHE_DIR", str(tmp_path / "c"))
    d = cache.folder("parser")
    for p in (tmp_path / "c", d):
        assert p.stat().st_mode & 0o077 == 0, oct(p.stat().st_mode)


def test_models_export_none_of_the_core(tmp_path):
    """Hidden visibility: two models built for different targets and loaded in one process
    each call their own core, never the other's (ELF would otherwise bind both to one)."""
    mod = cnnc.compile(SPEC.format(name="core_d"), out_dir=tmp_path)
    so = next(tmp_path.glob("core_d/build-*/*.so"))
    r = subprocess.run(["nm", "-D", "--defined-only", str(so)], capture_output=True, text=True)
    if r.returncode != 0:
        pytest.skip(f"nm unavailable: {r.stderr.strip()}")
    assert " cg_" not in r.stdout
    assert "core_d_forward" in r.stdout                    # the model's own API is there


def test_two_targets_in_one_process_agree(tmp_path, monkeypatch):
    monkeypatch.setenv("CNNC_TARGET", "generic")
    generic = cnnc.compile(SPEC.format(name="core_e"), out_dir=tmp_path / "g")
    monkeypatch.setenv("CNNC_TARGET", "native")
    native = cnnc.compile(SPEC.format(name="core_e"), out_dir=tmp_path / "n")
    assert generic is not native
    _check(generic)
    _check(native)
