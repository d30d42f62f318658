"""Checkpoints: exact round trip, atomic writes, full mismatch reports, unreadable files."""

import os

import numpy as np
import pytest

from cnnc.runtime import checkpoint
from cnnc.runtime import CheckpointError, CheckpointMismatch, fit

from ._fakes import SoftmaxRegression


def _trained(digits, **kw):
    x, y = digits[0][:256], digits[1][:256]
    m = SoftmaxRegression(**kw)
    fit(m, x, y, epochs=1, batch_size=64, verbose=0, seed=5)
    return m


def _state(m):
    return ({k: v.copy() for k, v in m.params.items()},
            {k: v.copy() for k, v in m.optimizer_state.items()}, m.step, m.lr, m.rng_state.copy())


def test_round_trip_restores_everything(tmp_path, digits):
    m = _trained(digits)
    m.lr = 0.123
    extra = {"epoch": np.int64(3), "history": {"loss": [1.5, np.float32(0.5)]}, "best": 0.25}
    path = tmp_path / "run.ckpt"
    checkpoint.save(path, m, extra)
    fresh = SoftmaxRegression(seed=99)
    got = checkpoint.load(path, fresh)
    assert got == {"epoch": 3, "history": {"loss": [1.5, 0.5]}, "best": 0.25}
    params, opt, step, lr, rng = _state(m)
    assert all(np.array_equal(fresh.params[k], v) for k, v in params.items())
    assert all(np.array_equal(fresh.optimizer_state[k], v) for k, v in opt.items())
    assert len(opt) == 2 and np.abs(opt["momentum/v/dense/weight"]).sum() > 0
    assert (fresh.step, fresh.lr) == (step, 0.123) and step == 4
    assert np.array_equal(fresh.rng_state, rng) and rng[0] == 5 + 4
    assert checkpoint.read_extra(path)["best"] == 0.25


@pytest.mark.parametrize("crash", [OSError("disk full"), KeyboardInterrupt()])
def test_crash_mid_write_keeps_previous_checkpoint_and_leaves_no_temp(tmp_path, digits, monkeypatch, crash):
    m = _trained(digits)
    path = tmp_path / "last.npz"
    checkpoint.save(path, m, {"epoch": 0})
    before = _state(m)
    for v in m.params.values():
        v += 1.0
    real_savez = np.savez

    def half_write(f, **arrays):
        real_savez(f, **arrays)
        f.truncate(f.tell() // 2)  # half a file is on disk when the "crash" comes
        raise crash

    monkeypatch.setattr(checkpoint.np, "savez", half_write)
    with pytest.raises(type(crash)):
        checkpoint.save(path, m, {"epoch": 1})
    monkeypatch.undo()
    assert os.listdir(tmp_path) == ["last.npz"]
    fresh = SoftmaxRegression(seed=3)
    assert checkpoint.load(path, fresh) == {"epoch": 0}
    assert all(np.array_equal(fresh.params[k], v) for k, v in before[0].items())


def test_crash_on_first_write_leaves_nothing(tmp_path, digits, monkeypatch):
    m = SoftmaxRegression()

    def boom(f, **arrays):
        f.write(b"PK\x03\x04partial")
        raise OSError("no space left")

    monkeypatch.setattr(checkpoint.np, "savez", boom)
    with pytest.raises(OSError):
        checkpoint.save(tmp_path / "c.npz", m)
    assert os.listdir(tmp_path) == []


def test_unserialisable_extra_fails_before_touching_the_file(tmp_path):
    m = SoftmaxRegression()
    path = tmp_path / "c.npz"
    checkpoint.save(path, m, {"epoch": 0})
    with pytest.raises(TypeError, match="JSON-able.*object"):
        checkpoint.save(path, m, {"epoch": object()})
    assert checkpoint.read_extra(path) == {"epoch": 0} and os.listdir(tmp_path) == ["c.npz"]


def test_mismatch_lists_every_bad_param_with_both_shapes(tmp_path):
    saved = SoftmaxRegression(n_classes=10)
    saved.params["old/kernel"] = np.zeros((3, 3), np.float32)
    path = tmp_path / "c.npz"
    checkpoint.save(path, saved)
    other = SoftmaxRegression(n_classes=5, optimizer="sgd", name="other")
    other.params["new/gamma"] = np.ones(7, np.float32)
    before = {k: v.copy() for k, v in other.params.items()}
    with pytest.raises(CheckpointMismatch) as e:
        checkpoint.load(path, other)
    msg = str(e.value)
    lines = msg.splitlines()
    assert str(path) in lines[0] and "(6 problems)" in lines[0]
    assert "  dense/weight: checkpoint f32[64, 10], model f32[64, 5]" in lines
    assert "  dense/bias: checkpoint f32[10], model f32[5]" in lines
    assert "  new/gamma: missing from checkpoint (model f32[7])" in lines
    assert "  old/kernel: unexpected in checkpoint (checkpoint f32[3, 3]), not in model" in lines
    assert "  optimizer state momentum/v/dense/weight: unexpected in checkpoint (checkpoint f32[64, 10]), not in model" in lines
    assert "different spec" in lines[-1] and saved.fingerprint in lines[-1]
    assert len(e.value.problems) == 6
    assert all(np.array_equal(other.params[k], v) for k, v in before.items())  # untouched
    assert other.step == 0


def test_non_strict_loads_what_fits(tmp_path):
    saved = SoftmaxRegression(n_classes=10, seed=1)
    saved.params["extra/p"] = np.ones(2, np.float32)
    checkpoint.save(tmp_path / "c.npz", saved)
    other = SoftmaxRegression(n_classes=10, seed=2)
    with pytest.warns(UserWarning, match="extra/p"):
        checkpoint.load(tmp_path / "c.npz", other, strict=False)
    assert np.array_equal(other.params["dense/weight"], saved.params["dense/weight"])


def test_fingerprint_change_alone_warns_and_loads(tmp_path):
    saved = SoftmaxRegression(seed=1)
    checkpoint.save(tmp_path / "c.npz", saved)
    other = SoftmaxRegression(seed=2)
    other.fingerprint = "different"
    with pytest.warns(UserWarning, match="different spec"):
        checkpoint.load(tmp_path / "c.npz", other)
    assert np.array_equal(other.params["dense/weight"], saved.params["dense/weight"])


def test_unreadable_files_raise_checkpoint_error_naming_the_path(tmp_path):
    m = SoftmaxRegression()
    good = tmp_path / "good.npz"
    checkpoint.save(good, m)
    data = good.read_bytes()
    cases = {"truncated.npz": data[: len(data) // 2], "tail_cut.npz": data[:-30],
             "text.npz": b"hello, not a checkpoint\n"}
    for name, content in cases.items():
        (tmp_path / name).write_bytes(content)
    np.savez(tmp_path / "plain.npz", a=np.zeros(3))
    np.save(tmp_path / "array.npy", np.zeros(3))
    for name in [*cases, "plain.npz", "array.npy", "missing.npz"]:
        with pytest.raises(CheckpointError) as e:
            checkpoint.load(tmp_path / name, m)
        assert str(tmp_path / name) in str(e.value), name
    with pytest.raises(CheckpointError, match="not a cnnc checkpoint"):
        checkpoint.load(tmp_path / "plain.npz", m)
