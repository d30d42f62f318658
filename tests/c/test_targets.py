"""Generated models built for every target this CPU runs (compiler/target.py), against the
NumPy reference: convolutions whose channel counts are and are not whole panels of the target
(so both the unpacked-filter and the packed paths, the gather and col2im input gradients), and
matmuls, each at batch 1 (no packing) and batch 20 (packed tiles with a partial edge)."""
from __future__ import annotations

import pytest

from cnnc.compiler import build, target
from tests.reference import numpy_ops as ref

from .conftest import N, Case, check_case, normal, run_zoo

RUNNABLE = [name for name, t in target.TARGETS.items() if target.runnable(t)]


def _conv(i, h, c, oc, k, s, pad):
    return Case(f"conv_{i}_{h}x{h}x{c}to{oc}_k{k}_s{s}_{pad}", "conv2d",
                [((N, h, h, c), "f32", normal), ((k, k, c, oc), "f32", normal)],
                dict(strides=(s, s), padding=pad),
                ref=lambda x, f: ref.conv2d(x, f, (s, s), pad),
                vjp=lambda x, f, d: ref.conv2d_vjp(x, f, d, (s, s), pad))


def _matmul(i, k, n):
    return Case(f"matmul_{i}_{k}to{n}", "matmul", [((N, k), "f32", normal), ((k, n), "f32", normal)],
                dict(transpose_a=False, transpose_b=False),
                ref=lambda a, b: a @ b, vjp=lambda a, b, d: (d @ b.T, a.T @ d))


# 48 and 96 channels are whole panels of every tile width here (8, 16, 32); 20 and 3 are not
CASES = [_conv(0, 9, 3, 48, 5, 1, "SAME"), _conv(1, 8, 20, 96, 3, 1, "SAME"), _conv(2, 9, 20, 20, 3, 2, "VALID"),
         _conv(3, 7, 48, 5, 3, 1, "SAME"), _matmul(4, 70, 33), _matmul(5, 300, 40)]


@pytest.mark.parametrize("name", RUNNABLE)
def test_models_built_for_each_target(name, out_root, monkeypatch):
    monkeypatch.setenv("CNNC_TARGET", name)
    assert "-march=native" in build.c_flags()
    for n in (1, 20):
        run = run_zoo(f"target_zoo_{name}", CASES, out_root, n=n)
        for case in CASES:
            check_case(run, case)
    model_c = out_root / f"target_zoo_{name}" / f"target_zoo_{name}" / "model.c"
    t = target.TARGETS[name]
    assert f"#define CG_VL {t.vl}\n#define CG_MR {t.mr}\n" in model_c.read_text()


def test_target_from_environment(monkeypatch):
    """CNNC_TARGET picks a row of the table; native is the widest target the CPU runs; an
    unknown name is an error that lists the targets."""
    monkeypatch.setenv("CNNC_TARGET", "generic")
    assert target.current() is target.TARGETS["generic"]
    monkeypatch.setenv("CNNC_TARGET", "native")
    assert target.current() is target.native() and target.runnable(target.native())
    monkeypatch.delenv("CNNC_TARGET")
    assert target.current() is target.native()
    monkeypatch.setenv("CNNC_TARGET", "sse9")
    with pytest.raises(Exception, match="avx2"):
        target.current()


def test_tiles_fit_their_register_files():
    """Each tile's accumulators, its row of B and one broadcast of A fit the vector registers,
    and the column block is a whole number of panels."""
    for t in target.TARGETS.values():
        assert t.mr * t.nrv + t.nrv + 1 <= t.registers, t.name
        assert t.nc % t.nr == 0 and t.mc % t.mr == 0, t.name
