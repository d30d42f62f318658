"""The build: warning-free C, a plain C program linking model.c, the content-hash cache,
deterministic output, compiler errors reported as CnncBuildError, and the spec pipeline."""
from __future__ import annotations

import copy
import dataclasses
import subprocess
from pathlib import Path

import numpy as np
import pytest

from cnnc import pipeline
from cnnc.compiler import build, emit
from cnnc.compiler.build import CnncBuildError
from cnnc.errors import CnncError

from .conftest import REPO, batch, build_once, small_cnn

MAIN_C = r"""
#include <stdio.h>
#include <stdlib.h>
#include "model.h"

static void *read_file(const char *path, size_t bytes)
{
    void *p = malloc(bytes ? bytes : 1);
    FILE *f = fopen(path, "rb");
    if (!p || !f || fread(p, 1, bytes, f) != bytes) { fprintf(stderr, "cannot read %s\n", path); exit(1); }
    fclose(f);
    return p;
}

int main(int argc, char **argv)
{
    if (argc != 4) return 2;
    const int N = atoi(argv[1]);
    float *params = read_file(argv[2], sizeof(float) * small_params_size());
    float *x = read_file(argv[3], sizeof(float) * (size_t)N * 72);
    uint8_t *ws = malloc(small_workspace_size(N));
    float *logits = malloc(sizeof(float) * (size_t)N * 3);
    small_forward(params, ws, x, logits, N);
    for (int i = 0; i < N * 3; i++) printf("%.9g\n", logits[i]);
    free(params); free(x); free(ws); free(logits);
    return 0;
}
"""


@pytest.fixture(scope="module")
def mod(out_root):
    return build_once("small_sgd", small_cnn("small"), out_root)


def _generated(out_root) -> list[Path]:
    return sorted(out_root.glob("*/*/model.c"))


def _compile_strict(c: Path, flags: list[str]) -> subprocess.CompletedProcess:
    """Compile one generated model.c with every warning an error."""
    return subprocess.run([build.compiler(), "-std=c11", "-pedantic", "-Wall", "-Wextra", "-Wshadow", "-Werror",
                           *flags, "-c", str(c), "-o", "/dev/null"], capture_output=True, text=True)


@pytest.mark.parametrize("openmp", [False, True], ids=["serial", "openmp"])
def test_generated_c_is_warning_free(mod, out_root, openmp):
    files = _generated(out_root)
    assert files
    flags = ["-fopenmp"] if openmp and build.openmp_flags() else []
    for c in files:
        r = _compile_strict(c, ["-O2", *flags])
        assert r.returncode == 0, f"{c}:\n{r.stderr}"


@pytest.mark.parametrize("flags", [["-O2"], ["-O3", "-march=native", "-fopenmp"]], ids=["O2-serial", "O3-openmp"])
def test_gemm_core_is_warning_free(mod, out_root, flags):
    """The GEMM core every model links (gemm_core.c beside model.c), under the same rules."""
    core = Path(mod.__file__).parent / "gemm_core.c"
    assert core.exists()
    r = _compile_strict(core, [*flags, "-I", str(core.parent)])
    assert r.returncode == 0, r.stderr


EXAMPLE_SPECS = sorted((REPO / "examples").glob("*.cnn"))


@pytest.mark.parametrize("spec", EXAMPLE_SPECS, ids=lambda p: p.stem)
def test_every_example_compiles_warning_free(spec, tmp_path):
    """Each example's C at two optimization levels, with and without OpenMP: constant
    propagation at -O2 and -O3 exposes different warnings (and a kernel named like an entry
    point would clash with its prototype)."""
    from cnnc import pipeline
    pkg = pipeline.compile(str(spec), out_dir=tmp_path, emit_only=True)
    c = next(Path(pkg).glob("**/model.c")) if Path(pkg).is_dir() else None
    assert c is not None, pkg
    omp = build.openmp_flags()
    for flags in (["-O2", *omp], ["-O3", "-march=native"]):
        r = _compile_strict(c, flags)
        assert r.returncode == 0, f"{spec.name} {flags}:\n{r.stderr}"


def test_plain_c_program_runs_inference(mod, tmp_path):
    pkg = Path(mod.__file__).parent
    (tmp_path / "main.c").write_text(MAIN_C)
    exe = tmp_path / "infer"
    r = subprocess.run([build.compiler(), "-O2", "-Wall", "-Wextra", "-Werror", "-I", str(pkg), str(tmp_path / "main.c"),
                        str(pkg / "model.c"), str(pkg / "gemm_core.c"), "-lm", "-o", str(exe)],
                       capture_output=True, text=True)
    assert r.returncode == 0, r.stderr
    m = mod.Model(seed=5)
    slab = np.zeros(mod.manifest["params_size"], np.float32)
    for p in mod.manifest["params"]:
        v = m.params[p["name"]].ravel()
        slab[p["offset"]:p["offset"] + v.size] = v
    slab.tofile(tmp_path / "params.bin")
    x = batch(3, seed=2)["x"]
    x.tofile(tmp_path / "x.bin")
    out = subprocess.run([str(exe), "3", str(tmp_path / "params.bin"), str(tmp_path / "x.bin")],
                         capture_output=True, text=True, check=True).stdout
    got = np.array([float(v) for v in out.split()], np.float32).reshape(3, 3)
    # same code, different flags (-O2, no OpenMP vs -O3 -march=native): FMA contraction may differ
    np.testing.assert_allclose(got, m.forward(x=x)["logits"], rtol=1e-5, atol=1e-6)


def test_unchanged_spec_is_not_rebuilt(mod, out_root, monkeypatch):
    def fail(*a, **k):
        raise AssertionError("the C compiler was invoked for an unchanged spec")
    monkeypatch.setattr(build, "compile_extension", fail)
    again = pipeline.generate(small_cnn("small"), "", out_root / "small_sgd")
    assert again.Model().name == "small"


def test_output_is_deterministic_and_graph_untouched():
    g = small_cnn("small", dropout=0.3)
    before = (len(g.nodes), len(g.const_values), g._next_id)
    a = emit.render(pipeline.lowered(g), "fp")
    b = emit.render(pipeline.lowered(copy.deepcopy(g)), "fp")
    assert a.c == b.c and a.h == b.h and a.manifest_json == b.manifest_json
    assert (len(g.nodes), len(g.const_values), g._next_id) == before
    assert "static void h_conv2d_forward(" in a.c and "static void dh_input(" in a.c
    assert not [line for line in emit.cdef(a.h).splitlines() if line.startswith("#")]


def test_compiler_errors_become_cnnc_build_errors(tmp_path):
    files = emit.render(pipeline.lowered(small_cnn("broken")), "fp")
    broken = dataclasses.replace(files, c=files.c + "\nthis is not C;\n")
    with pytest.raises(CnncBuildError) as e:
        build.build(broken, tmp_path)
    assert isinstance(e.value, CnncError)
    assert "error" in e.value.output and "internal error" in str(e.value)


def test_memory_plan_reuses_buffers():
    g = small_cnn("small")
    summary = pipeline.memory_summary(g, batch_sizes=(1, 32))
    assert set(summary) == {"params", "grads", "optimizer state", "workspace", "total at N=1", "total at N=32"}
    assert summary["workspace"].endswith("*N")
    mem = pipeline.lowered(g).memory
    assert mem["params_bytes"] == 4 * pipeline.lowered(g).params_size
    assert mem["total_bytes"]["32"] > mem["total_bytes"]["1"]
    # the training step keeps conv, relu, pool and the logits (36*4 + ... floats per example);
    # without reuse it would need every intermediate at once
    program = pipeline.lowered(g)
    train = next(e for e in program.entries if e.name == "train_step")
    naive = sum(4 * 6 * 6 * 4 for _ in range(6))
    assert train.workspace.per_example < naive


SPEC = """\
model specnet

input x: f32[N, 16]
input y: f32[N, 3]

scope "layer-1" {
  param w: f32[4, 4, 1, 2] = random_normal(stddev=0.5)
  img = reshape(x, [-1, 4, 4, 1])
  conv = conv2d(img, w, strides=[1, 2, 2, 1], padding="SAME")
}
flat = reshape(conv, [-1, 8])
param v: f32[8, 3] = glorot_uniform()
output logits = matmul(flat, v)
loss = reduce_mean(softmax_cross_entropy_with_logits(labels=y, logits=logits))
optimizer = momentum(lr=0.1, momentum=0.9)
"""


def test_spec_pipeline_builds_a_package_with_spec_lines(tmp_path):
    cnnc = pytest.importorskip("cnnc.pipeline")
    module = cnnc.compile(SPEC, out_dir=tmp_path, filename="specnet.cnn")
    c = (tmp_path / "specnet" / "model.c").read_text()
    assert "/* specnet.cnn:9  layer-1/conv = conv2d(" in c
    assert "static void conv_forward(" in c
    m = module.Model(seed=0)
    x = np.random.default_rng(0).standard_normal((2, 16)).astype(np.float32)
    assert m.forward(x=x)["logits"].shape == (2, 3)
    out = m.train_step(x=x, y=np.eye(3, dtype=np.float32)[[0, 2]])
    assert np.isfinite(out["loss"])
    assert module.manifest["fingerprint"] and module.manifest["optimizer"]["slots"] == ["momentum"]
    assert (tmp_path / "specnet" / "__init__.py").exists()


def test_specs_differing_only_in_runtime_values_get_their_own_manifest(tmp_path):
    """The learning rate is not in the C: both specs share one extension, but each module must
    carry its own spec's manifest (a stale cache once returned the first spec's lr)."""
    import cnnc
    import re
    text = (Path(__file__).resolve().parents[2] / "examples" / "digits.cnn").read_text()
    with_lr = lambda lr: re.sub(r"^optimizer = .*$", f"optimizer = adam(lr={lr})", text, flags=re.M)  # noqa: E731
    a = cnnc.compile(with_lr(0.002), out_dir=tmp_path)
    b = cnnc.compile(with_lr(0.0005), out_dir=tmp_path)
    assert a.Model().lr == pytest.approx(0.002) and b.Model().lr == pytest.approx(0.0005)
    assert a.manifest["extension"] == b.manifest["extension"]      # no second C build


def test_cache_key_covers_the_cpu_target(monkeypatch):
    """A build for one CPU is not loaded on another: -march=native's resolution is in the key."""
    files = emit.render(pipeline.lowered(small_cnn("small")), "fp")
    here = build.cache_key(files)
    assert "-march=" in build.native_target()
    monkeypatch.setitem(build._TARGET, build.compiler(), "  -march=  some-older-cpu\n")
    assert build.cache_key(files) != here
