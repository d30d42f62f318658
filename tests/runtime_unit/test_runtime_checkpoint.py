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


# --------------------------------------------------------------------------- hostile files


def _rewrite(path, replace: dict):
    """Rewrite the .npz at `path` with some members' bytes replaced (or added)."""
    import zipfile
    with zipfile.ZipFile(path) as zf:
        members = {n: zf.read(n) for n in zf.namelist()}
    members.update(replace)
    with zipfile.ZipFile(path, "w") as zf:
        for n, data in members.items():
            zf.writestr(n, data)


def _npy(arr=None, header_shape=None, dtype="<f4", data=b""):
    """.npy bytes: a real array, or a header claiming `header_shape` followed by `data`."""
    import io
    buf = io.BytesIO()
    if arr is not None:
        np.save(buf, arr, allow_pickle=False)
        return buf.getvalue()
    np.lib.format.write_array_header_1_0(buf, {"descr": dtype, "fortran_order": False,
                                               "shape": header_shape})
    return _with_magic(buf.getvalue()) + data


def _with_magic(header: bytes) -> bytes:
    return header if header.startswith(b"\x93NUMPY") else np.lib.format.magic(1, 0) + header


def _meta_bytes(path) -> dict:
    import json
    with np.load(path) as npz:
        return json.loads(npz["cnnc_meta"].tobytes().decode())


def _with_meta(path, **changes):
    import json
    meta = _meta_bytes(path)
    meta.update(changes)
    raw = np.frombuffer(json.dumps(meta).encode(), np.uint8)
    _rewrite(path, {"cnnc_meta.npy": _npy(raw)})


def _untouched(m, before):
    params, opt, step, lr, rng = before
    assert all(np.array_equal(m.params[k], v) for k, v in params.items())
    assert all(np.array_equal(m.optimizer_state[k], v) for k, v in opt.items())
    assert (m.step, m.lr) == (step, lr) and np.array_equal(m.rng_state, rng)


@pytest.mark.parametrize("field, value, words", [
    ("step", "three", "field `step` must be a whole number"),
    ("step", -1, "field `step` must be a whole number >= 0"),
    ("lr", float("nan"), "field `lr` must be a finite number"),
    ("lr", "0.1", "field `lr` must be a finite number"),
    ("params", ["dense/weight", 7], "field `params` must be a list of distinct names"),
    ("params", ["dense/weight", "dense/weight"], "field `params` must be a list of distinct names"),
    ("fingerprint", None, "field `fingerprint` must be a string"),
    ("extra", [1, 2], "field `extra` must be an object or null"),
    ("version", "1", "field `version` must be a whole number"),
])
def test_a_bad_metadata_field_is_named_and_the_model_is_left_as_it_was(tmp_path, digits, field, value, words):
    path = tmp_path / "c.npz"
    checkpoint.save(path, _trained(digits), {"epoch": 0})
    _with_meta(path, **{field: value})
    m = SoftmaxRegression(seed=7)
    before = _state(m)
    with pytest.raises(CheckpointError, match=words):
        checkpoint.load(path, m)
    _untouched(m, before)


def test_missing_metadata_field_is_named(tmp_path):
    import json
    path = tmp_path / "c.npz"
    checkpoint.save(path, SoftmaxRegression())
    meta = _meta_bytes(path)
    del meta["step"]
    _rewrite(path, {"cnnc_meta.npy": _npy(np.frombuffer(json.dumps(meta).encode(), np.uint8))})
    with pytest.raises(CheckpointError, match="field `step` is missing"):
        checkpoint.load(path, SoftmaxRegression())


def test_a_huge_array_header_is_refused_before_anything_is_allocated(tmp_path, monkeypatch):
    path = tmp_path / "c.npz"
    checkpoint.save(path, SoftmaxRegression())
    # param_0 claims 10^12 floats but holds 16 bytes; reading it would try to allocate 4 TB
    _rewrite(path, {"param_0.npy": _npy(header_shape=(1000000, 1000000), data=b"\0" * 16)})
    read_array = np.lib.format.read_array
    calls = []
    monkeypatch.setattr(np.lib.format, "read_array", lambda *a, **k: calls.append(1) or read_array(*a, **k))
    m = SoftmaxRegression(seed=4)
    before = _state(m)
    with pytest.raises(CheckpointError) as e:
        checkpoint.load(path, m)
    assert "dense/weight" in str(e.value) and "1000000" in str(e.value)
    assert len(calls) == 1            # the metadata only: no param array was read
    _untouched(m, before)


def test_a_float64_param_is_refused_naming_it(tmp_path):
    path = tmp_path / "c.npz"
    checkpoint.save(path, SoftmaxRegression())
    _rewrite(path, {"param_1.npy": _npy(np.zeros(10, np.float64))})
    with pytest.raises(CheckpointError, match="param `dense/bias` must be float32, got float64"):
        checkpoint.load(path, SoftmaxRegression())


def test_a_truncated_later_array_leaves_every_param_as_it_was(tmp_path, digits):
    path = tmp_path / "c.npz"
    checkpoint.save(path, _trained(digits))
    # the header of the second param is right, its data stops short
    good = _npy(np.ones(10, np.float32))
    _rewrite(path, {"param_1.npy": good[:-12]})
    m = SoftmaxRegression(seed=8)
    before = _state(m)
    with pytest.raises(CheckpointError, match=str(path)):
        checkpoint.load(path, m)
    _untouched(m, before)          # dense/weight, read first, was not copied either


def test_pickled_arrays_are_refused(tmp_path):
    path = tmp_path / "c.npz"
    checkpoint.save(path, SoftmaxRegression())
    import io
    buf = io.BytesIO()
    np.save(buf, np.array([{"x": 1}], dtype=object), allow_pickle=True)
    _rewrite(path, {"param_0.npy": buf.getvalue()})
    with pytest.raises(CheckpointError, match="Python objects"):
        checkpoint.load(path, SoftmaxRegression())


def test_resume_from_a_model_save_file_says_what_to_do(tmp_path, digits):
    x, y = digits[0][:128], digits[1][:128]
    path = tmp_path / "saved.npz"
    checkpoint.save(path, SoftmaxRegression(seed=1))         # what Model.save writes: no epoch
    m = SoftmaxRegression(seed=2)
    before = _state(m)
    with pytest.raises(CheckpointError, match="records no finished epoch.*initial_epoch"):
        fit(m, x, y, epochs=2, batch_size=64, verbose=0, checkpoint=path, resume=True)
    _untouched(m, before)


def test_the_next_save_sweeps_temp_files_of_killed_saves(tmp_path):
    import subprocess
    import sys
    import time
    dead = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"],
                          capture_output=True, text=True).stdout.strip()
    stale = [f".c.npz.{dead}.abc123.tmp", ".c.npz.oldstyle.tmp"]
    live = [f".c.npz.{os.getpid()}.zzz.tmp", ".c.npz.fresh.tmp", ".other.npz.1.x.tmp"]
    for name in stale + live:
        (tmp_path / name).write_bytes(b"partial")
    old = time.time() - 2 * checkpoint.STALE_SECONDS
    os.utime(tmp_path / ".c.npz.oldstyle.tmp", (old, old))
    checkpoint.save(tmp_path / "c.npz", SoftmaxRegression())
    left = sorted(os.listdir(tmp_path))
    assert left == sorted(live + ["c.npz"])
