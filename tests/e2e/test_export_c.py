"""The exported C library (`cnnc export --c`): built with make in a temp dir, its `predict` gives
Model.forward's outputs for every example after a few training steps; it compiles warning-free
under -std=c99 -Wall -Wextra; two contexts on two threads give one thread's results; it refuses
directories it did not write and files that are not a whole number of examples."""
from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

import numpy as np
import pytest

from cnnc import pipeline
from cnnc.compiler.library import MARKER, ExportError

from .conftest import EXAMPLES

CC = os.environ.get("CC", "gcc")
if shutil.which(CC) is None or shutil.which("make") is None:
    pytest.skip(f"no C compiler ({CC}) or make", allow_module_level=True)

SPECS = sorted(p.stem for p in EXAMPLES.glob("*.cnn"))
pytestmark = pytest.mark.slow
RTOL = 1e-4          # the bound; a default build matches bit for bit (same flags as cnnc's)


def _value(rng, dtype, shape, n, bound=None):
    shape = [n * (int(d.split("*")[0]) if "*" in d else 1) if isinstance(d, str) else d for d in shape]
    if dtype == "f32":
        return rng.random(shape, dtype=np.float32)
    if dtype == "i32":
        return rng.integers(0, bound["high"] if bound else 3, shape).astype(np.int32)
    return rng.integers(0, 2, shape).astype(bool)


def _batch(model, n, seed):
    rng = np.random.default_rng(seed)
    bounds = {b["input"]: b for b in model.manifest["bounds"]}
    return {i["name"]: _value(rng, i["dtype"], i["shape"], n, bounds.get(i["name"]))
            for i in model.manifest["inputs"]}


def _make(directory: Path, *args) -> str:
    r = subprocess.run(["make", "-j2", "-C", str(directory), f"CC={CC}", *args], capture_output=True, text=True)
    assert r.returncode == 0, r.stdout + r.stderr
    return r.stdout + r.stderr


@pytest.fixture(scope="module")
def exported(compiled, tmp_path_factory):
    """exported(name) -> (trained Model, built library dir, make's output), once per module."""
    cache = {}

    def get(name):
        if name not in cache:
            model = compiled(name).Model(seed=0)
            if model.optimizer:
                for step in range(3):
                    model.train_step(**_batch(model, 4, step))
            out = tmp_path_factory.mktemp(f"export_{name}")
            graph = pipeline.check(EXAMPLES / f"{name}.cnn")
            pipeline.export_c(graph, pipeline.load_source(EXAMPLES / f"{name}.cnn"),
                              {**model.params, **model.state}, out, "three training steps")
            cache[name] = model, out, _make(out)
        return cache[name]
    return get


def _predict(directory: Path, model, n: int, tmp_path: Path, seed=1):
    feats = {k: v for k, v in _batch(model, n, seed).items() if k in model.feature_inputs}
    files = []
    for k in model.feature_inputs:
        path = tmp_path / f"{k}.bin"
        v = feats[k]
        (v.astype("<f4") if v.dtype == np.float32 else v.astype("<i4") if v.dtype == np.int32
         else v.astype(np.uint8)).tofile(path)
        files.append(str(path))
    out = tmp_path / "out.bin"
    r = subprocess.run([str(directory / "predict"), *files, str(out)], capture_output=True, text=True)
    assert r.returncode == 0, r.stderr
    return feats, out.read_bytes()


def _split(model, data: bytes, n: int) -> dict:
    """predict's output file, cut into the model's outputs (declaration order)."""
    out, at = {}, 0
    for o in model.manifest["outputs"]:
        shape = [n * (int(d.split("*")[0]) if "*" in d else 1) if isinstance(d, str) else d for d in o["shape"]]
        dtype = {"f32": "<f4", "i32": "<i4", "bool": np.uint8}[o["dtype"]]
        count = int(np.prod(shape))
        width = np.dtype(dtype).itemsize
        out[o["name"]] = np.frombuffer(data[at:at + count * width], dtype).reshape(shape)
        at += count * width
    assert at == len(data), "predict wrote more than the outputs"
    return out


def _assert_close(got: dict, want: dict):
    for k, w in want.items():
        w = np.asarray(w)
        g = got[k].astype(w.dtype)
        if w.dtype != np.float32:
            np.testing.assert_array_equal(g, w, err_msg=k)
            continue
        scale = float(np.abs(w).max()) if w.size else 0.0
        # relative to each value, or to the output's scale for values near zero (cancellation)
        np.testing.assert_allclose(g, w, rtol=RTOL, atol=RTOL * scale, err_msg=k)


@pytest.mark.parametrize("name", SPECS)
@pytest.mark.parametrize("n", [1, 7])
def test_predict_equals_forward(exported, name, n, tmp_path):
    model, directory, make_output = exported(name)
    assert "warning" not in make_output, make_output
    feats, data = _predict(directory, model, n, tmp_path)
    _assert_close(_split(model, data, n), model.forward(**feats))


@pytest.mark.parametrize("name", SPECS)
def test_the_library_is_forward_only_and_warning_free(exported, name):
    model, directory, make_output = exported(name)
    assert "-std=c99" in make_output and "-Wall -Wextra" in make_output
    c = (directory / "model.c").read_text()
    for absent in ("_backward", "_train_step", "_eval_step", "dropout_mask", "grads"):
        assert absent not in c, absent
    for o in ("model.o", "weights.o"):        # no writable data outside thread-local storage
        sizes = subprocess.run(["size", "-A", str(directory / o)], capture_output=True, text=True).stdout
        writable = {line.split()[0]: int(line.split()[1]) for line in sizes.splitlines()
                    if line.split()[:1] and line.split()[0] in (".data", ".bss")}
        assert not any(writable.values()), (o, writable)


def test_a_portable_and_an_openmp_build_agree(exported, tmp_path):
    """MARCH= (the compiler's baseline: the generic tile here) and OPENMP=1 still give forward's outputs."""
    model, directory, _ = exported("digits")
    for i, flags in enumerate((["MARCH="], ["OPENMP=1"])):
        copy = tmp_path / f"build{i}"
        shutil.copytree(directory, copy)
        _make(copy, "clean")
        output = _make(copy, *flags)
        assert "warning" not in output, output
        assert ("-march" in output) != (flags == ["MARCH="]), output
        run = tmp_path / f"run{i}"
        run.mkdir()
        feats, data = _predict(copy, model, 7, run)
        _assert_close(_split(model, data, 7), model.forward(**feats))


THREADS_C = r"""
#define _POSIX_C_SOURCE 200112L
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include "model.h"

#define ROUNDS 20
enum { A = 1, B = 5 };                         /* two batch sizes, one per thread */

typedef struct { int n; float *x, *logits, *probs; int bad; } job;

static void fill(float *x, size_t count, unsigned seed)
{
    for (size_t i = 0; i < count; i++) {
        seed = seed * 1103515245u + 12345u;
        x[i] = (float)((seed >> 8) % 1000) / 1000.0f;
    }
}

static void *work(void *arg)
{
    job *j = arg;
    digits_context *ctx = digits_create(0);
    float *l = malloc(DIGITS_LOGITS_COUNT(j->n) * sizeof *l), *p = malloc(DIGITS_PROBABILITIES_COUNT(j->n) * sizeof *p);
    for (int r = 0; r < ROUNDS; r++) {
        if (digits_run(ctx, j->x, l, p, j->n) != DIGITS_OK ||
            memcmp(l, j->logits, DIGITS_LOGITS_COUNT(j->n) * sizeof *l) != 0 ||
            memcmp(p, j->probs, DIGITS_PROBABILITIES_COUNT(j->n) * sizeof *p) != 0)
            j->bad++;
    }
    digits_free(ctx);
    free(l);
    free(p);
    return NULL;
}

int main(void)
{
    job jobs[2] = {{A, 0, 0, 0, 0}, {B, 0, 0, 0, 0}};
    digits_context *one = digits_create(0);
    for (int k = 0; k < 2; k++) {               /* the reference: one context, one thread */
        job *j = &jobs[k];
        j->x = malloc(DIGITS_X_COUNT(j->n) * sizeof(float));
        j->logits = malloc(DIGITS_LOGITS_COUNT(j->n) * sizeof(float));
        j->probs = malloc(DIGITS_PROBABILITIES_COUNT(j->n) * sizeof(float));
        fill(j->x, DIGITS_X_COUNT(j->n), 7u + (unsigned)k);
        if (digits_run(one, j->x, j->logits, j->probs, j->n) != DIGITS_OK)
            return 3;
    }
    digits_free(one);
    pthread_t t[2];
    for (int k = 0; k < 2; k++)
        pthread_create(&t[k], NULL, work, &jobs[k]);
    for (int k = 0; k < 2; k++)
        pthread_join(t[k], NULL);
    printf("%d %d\n", jobs[0].bad, jobs[1].bad);
    return jobs[0].bad || jobs[1].bad;
}
"""


def _build_and_run(directory: Path, src: Path, *flags) -> subprocess.CompletedProcess:
    """Compile `src` against the library in `directory` warning-free, run it."""
    exe = src.with_suffix("")
    r = subprocess.run([CC, "-std=c99", "-Wall", "-Wextra", "-O2", *flags, f"-I{directory}", str(src),
                        str(next(directory.glob("lib*.a"))), "-lm", "-o", str(exe)], capture_output=True, text=True)
    assert r.returncode == 0 and "warning" not in r.stderr, r.stderr
    return subprocess.run([str(exe)], capture_output=True, text=True, timeout=120)


@pytest.mark.parametrize("openmp", [False, True])
def test_two_contexts_on_two_threads_match_one(exported, tmp_path, openmp):
    _, directory, _ = exported("digits")
    if openmp:                                  # each pthread then runs its own OpenMP team
        shutil.copytree(directory, tmp_path / "lib")
        directory = tmp_path / "lib"
        _make(directory, "clean")
        _make(directory, "OPENMP=1")
    src = tmp_path / "threads.c"
    src.write_text(THREADS_C)
    r = _build_and_run(directory, src, "-pthread", *(["-fopenmp"] if openmp else []))
    assert r.returncode == 0 and r.stdout.split() == ["0", "0"], (r.returncode, r.stdout, r.stderr)


@pytest.mark.parametrize("name", ["digits", "textcnn"])
def test_the_readme_example_runs(exported, tmp_path, name):
    """The C example in the exported README.md compiles warning-free and runs."""
    _, directory, _ = exported(name)
    readme = (directory / "README.md").read_text()
    block = readme.split("```c\n", 1)[1].split("```", 1)[0].splitlines()
    includes = [line for line in block if line.startswith("#include")]
    body = [line for line in block if not line.startswith("#include")]
    src = tmp_path / "example.c"
    src.write_text("\n".join(["#include <stdio.h>", *includes, "int main(void)", "{", *body,
                              "    return status;", "}", ""]))
    r = _build_and_run(directory, src)
    assert r.returncode == 0, (r.stdout, r.stderr)


def test_a_file_that_is_not_whole_examples_is_a_clear_error(exported, tmp_path):
    _, directory, _ = exported("digits")
    for size in (100, 0):                      # an example of x is 64 floats, 256 bytes
        bad = tmp_path / f"bad{size}.bin"
        bad.write_bytes(b"\0" * size)
        r = subprocess.run([str(directory / "predict"), str(bad), str(tmp_path / "out.bin")],
                           capture_output=True, text=True)
        assert r.returncode == 1
        assert f"holds {size} bytes, which is not a whole number of examples of `x`" in r.stderr
        assert "256 bytes each" in r.stderr
        assert not (tmp_path / "out.bin").exists()
    r = subprocess.run([str(directory / "predict"), str(bad)], capture_output=True, text=True)
    assert r.returncode == 2 and "usage" in r.stderr


def test_an_id_out_of_range_is_refused(exported, tmp_path):
    _, directory, _ = exported("textcnn")
    words = np.zeros((2, 100), "<i4")
    words[1, 3] = 10000                         # the vocabulary is 10000 words
    words.tofile(tmp_path / "words.bin")
    r = subprocess.run([str(directory / "predict"), str(tmp_path / "words.bin"), str(tmp_path / "out.bin")],
                       capture_output=True, text=True)
    assert r.returncode == 1 and "id lies outside its range" in r.stderr


def _digits_export(out, params=None):
    graph = pipeline.check(EXAMPLES / "digits.cnn")
    if params is None:
        mod = pipeline.inference_program(graph)
        params = {p["name"]: np.zeros(p["shape"], np.float32) for p in mod.manifest["params"]}
    return pipeline.export_c(graph, pipeline.load_source(EXAMPLES / "digits.cnn"), params, out)


def test_a_directory_that_holds_no_export_is_refused(tmp_path):
    mine = tmp_path / "mine"
    mine.mkdir()
    (mine / "notes.txt").write_text("keep me")
    with pytest.raises(ExportError, match="not empty and holds no earlier export"):
        _digits_export(mine)
    assert sorted(p.name for p in mine.iterdir()) == ["notes.txt"]
    (tmp_path / "file").write_text("x")
    with pytest.raises(ExportError, match="not a directory"):
        _digits_export(tmp_path / "file")


def test_an_earlier_export_is_replaced(tmp_path):
    out = tmp_path / "out"
    _digits_export(out)                         # a new directory
    (out / "predict").write_text("a stale build product")
    (out / "mine.txt").write_text("not the export's")
    _digits_export(out)
    assert (out / MARKER).is_file() and not (out / "predict").exists()
    assert (out / "mine.txt").read_text() == "not the export's"
    empty = tmp_path / "empty"
    empty.mkdir()
    _digits_export(empty)
    assert (empty / "model.c").is_file()


def test_params_that_do_not_fit_are_listed(tmp_path):
    graph = pipeline.check(EXAMPLES / "digits.cnn")
    params = {p["name"]: np.zeros(p["shape"], np.float32)
              for p in pipeline.inference_program(graph).manifest["params"]}
    first = next(iter(params))
    params[first] = np.zeros((2, 2), np.float32)
    params["stray"] = np.zeros(3, np.float32)
    with pytest.raises(ExportError) as e:
        pipeline.export_c(graph, None, params, tmp_path / "out")
    assert f"`{first}` has shape [2, 2]" in str(e.value) and "`stray` is not a param" in str(e.value)
    assert not (tmp_path / "out").exists()


def test_the_command_exports_a_checkpoint(exported, build_dir, tmp_path, capsys):
    """`cnnc export SPEC --checkpoint CKPT --c DIR`, then make: predict gives the checkpoint's outputs."""
    from cnnc import cli
    model, _, _ = exported("digits")
    model.save(tmp_path / "d.npz")
    out = tmp_path / "out"
    capsys.readouterr()
    code = cli.main(["export", str(EXAMPLES / "digits.cnn"), "--checkpoint", str(tmp_path / "d.npz"),
                     "--c", str(out), "--build-dir", str(build_dir)])
    err = capsys.readouterr().err
    assert code == 0, err
    assert f"to {out}/" in err and f"make -C {out}" in err and "d.npz (step 3)" in err
    assert "d.npz (step 3)" in (out / "README.md").read_text()
    _make(out)
    feats, data = _predict(out, model, 7, tmp_path)
    _assert_close(_split(model, data, 7), model.forward(**feats))


def test_the_command_refuses_a_directory_before_building(tmp_path, capsys):
    from cnnc import cli
    (tmp_path / "out").mkdir()
    (tmp_path / "out" / "thesis.tex").write_text("precious")
    code = cli.main(["export", str(EXAMPLES / "digits.cnn"), "--c", str(tmp_path / "out"),
                     "--build-dir", str(tmp_path / "gen")])
    err = capsys.readouterr().err
    assert code == 1 and "is not empty and holds no earlier export" in err and "Traceback" not in err
    assert not (tmp_path / "gen").exists()
    assert (tmp_path / "out" / "thesis.tex").read_text() == "precious"


def test_model_export_c(exported, tmp_path):
    model, directory, _ = exported("digits")
    out = model.export_c(tmp_path / "lib")
    assert "model `digits` at step 3" in (out / "README.md").read_text()
    assert (out / "weights.c").read_text().split("=", 1)[1] == (directory / "weights.c").read_text().split("=", 1)[1]


@pytest.mark.parametrize("size", [0, 1, 31, 32, 33, 100])
def test_the_weights_literal_holds_the_bytes(size):
    from cnnc.compiler.library import _string_literal
    data = bytes(np.random.default_rng(size).integers(0, 256, size, dtype=np.uint8))
    text = _string_literal(data)
    assert all(line.startswith('    "') and line.endswith('"') and len(line) <= 4 * 32 + 6
               for line in text.splitlines())
    assert eval(" ".join("b" + line.strip() for line in text.splitlines())) == data   # C's escapes, Python's too
