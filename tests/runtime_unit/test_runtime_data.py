"""Datasets, splits, batching and the input checks that name the offending input."""

import os
import warnings

import numpy as np
import pytest

from cnnc.runtime import (DIGITS_CLASSES, DataError, ImageFolder, batches, load_digits, split,
                          to_batch_dict, to_input_dict)

from ._fakes import SoftmaxRegression


def test_load_digits_shapes_range_and_stratified_deterministic_split(digits):
    x_tr, y_tr, x_te, y_te = digits
    assert x_tr.dtype == np.float32 and x_tr.shape[1:] == (8, 8, 1)
    assert y_tr.dtype == np.int32 and len(x_tr) + len(x_te) == 1797
    assert abs(len(x_te) - 0.2 * 1797) <= 10
    assert x_tr.min() == 0.0 and x_tr.max() == 1.0
    assert len(DIGITS_CLASSES) == 10 and set(np.unique(y_te)) == set(range(10))
    # stratified: every class has about 20% of its examples in the test part
    for c in range(10):
        frac = (y_te == c).sum() / ((y_te == c).sum() + (y_tr == c).sum())
        assert abs(frac - 0.2) < 0.02
    again = load_digits(test_fraction=0.2, seed=0)
    assert all(np.array_equal(a, b) for a, b in zip(digits, again))
    other = load_digits(test_fraction=0.2, seed=1)
    assert not np.array_equal(digits[3], other[3])


def test_split_rejects_fractions_that_leave_a_part_empty():
    x, y = np.zeros((5, 2)), np.arange(5)
    with pytest.raises(ValueError, match="leaves 0 for validation"):
        split(x, y, 0.05, seed=0)
    with pytest.raises(ValueError, match="between 0 and 1"):
        split(x, y, 1.0)


def test_batches_include_the_partial_batch_and_shuffle_reproducibly():
    arrays = {"a": np.arange(10), "b": np.arange(10) * 2}
    sizes = [len(b["a"]) for b in batches(arrays, 4)]
    assert sizes == [4, 4, 2]
    first = [b["a"] for b in batches(arrays, 4, shuffle=True, rng=np.random.default_rng(7))]
    second = [b["a"] for b in batches(arrays, 4, shuffle=True, rng=np.random.default_rng(7))]
    assert all(np.array_equal(p, q) for p, q in zip(first, second))
    assert sorted(np.concatenate(first)) == list(range(10))
    assert not np.array_equal(np.concatenate(first), np.arange(10))
    for b in batches(arrays, 3, shuffle=True, rng=1):
        assert np.array_equal(b["b"], b["a"] * 2)  # rows stay aligned
    with pytest.raises(ValueError, match="`a` has 10, `b` has 9"):
        list(batches({"a": np.arange(10), "b": np.arange(9)}, 4))
    with pytest.raises(ValueError, match="batch_size"):
        list(batches(arrays, 0))


def test_labels_convert_between_ids_and_one_hot():
    x = np.zeros((3, 8, 8, 1), np.float64)
    ids = np.array([2, 0, 9])
    m_f32 = SoftmaxRegression(label="f32")
    out = to_batch_dict(m_f32, x, ids)
    assert out["x"].dtype == np.float32 and out["y_true"].dtype == np.float32
    assert np.array_equal(out["y_true"].argmax(axis=1), ids) and out["y_true"].sum() == 3
    m_i32 = SoftmaxRegression(label="i32")
    back = to_batch_dict(m_i32, x, out["y_true"])["y_true"]
    assert back.dtype == np.int32 and np.array_equal(back, ids)
    # integral floats are exact; they may become ids
    assert np.array_equal(to_batch_dict(m_i32, x, ids.astype(np.float64))["y_true"], ids)


def test_mismatches_raise_naming_the_input_and_expected_type():
    m = SoftmaxRegression(label="f32")
    with pytest.raises(ValueError) as e:
        to_batch_dict(m, np.zeros((32, 8, 8, 1), np.float32), np.zeros((32, 3), np.int64))
    assert str(e.value) == "input `y_true` expects f32[N, 10]; got int64 array of shape (32, 3)"
    with pytest.raises(ValueError, match=r"input `x` expects f32\[N, 8, 8, 1\]; got float32 array of shape \(4, 64\)"):
        to_batch_dict(m, np.zeros((4, 64), np.float32), np.zeros(4, np.int64))
    with pytest.raises(ValueError, match=r"`y_true`.*outside 0\.\.9"):
        to_batch_dict(m, np.zeros((2, 8, 8, 1)), np.array([3, 12]))
    m_i32 = SoftmaxRegression(label="i32")
    with pytest.raises(ValueError, match=r"input `y_true` expects i32\[N\].*fractions"):
        to_batch_dict(m_i32, np.zeros((2, 8, 8, 1)), np.array([1.0, 2.5]))
    with pytest.raises(ValueError, match=r"`y_true`.*one-hot"):
        to_batch_dict(m_i32, np.zeros((2, 8, 8, 1)), np.array([[0.3, 0.7], [0.5, 0.5]]))
    with pytest.raises(ValueError, match=r"`x`.*not numbers"):
        to_batch_dict(m_i32, np.array([["a"]]), np.array([1]))


def test_input_dicts_name_unknown_missing_and_misaligned_inputs():
    m = SoftmaxRegression()
    x, y = np.zeros((4, 8, 8, 1), np.float32), np.zeros(4, np.int32)
    with pytest.raises(ValueError, match="unknown input.*`labels`.*inputs `x`, `y_true`"):
        to_input_dict(m, {"x": x, "labels": y})
    with pytest.raises(ValueError, match=r"missing input.*`y_true`: i32\[N\]"):
        to_input_dict(m, {"x": x})
    with pytest.raises(ValueError, match="`x` has 4, `y_true` has 3"):
        to_input_dict(m, {"x": x, "y_true": y[:3]})


# --------------------------------------------------------------------------- ImageFolder

COLOURS = {"blue": (0, 0, 255), "green": (0, 255, 0), "red": (255, 0, 0)}


def _make_folder(root):
    from PIL import Image
    for i, (name, rgb) in enumerate(COLOURS.items()):
        d = root / name
        d.mkdir(parents=True)
        Image.new("RGB", (12 + i, 10), rgb).save(d / "a.png")
        Image.new("RGB", (20, 16), rgb).save(d / "b.jpg", quality=95)
        Image.new("L", (5, 5), 128).convert("P").save(d / "c.png")  # palette image, grey
    (root / "red" / "broken.jpg").write_bytes(b"\xff\xd8\xff\xe0 this is not really a jpeg")
    (root / "green" / "notes.txt").write_text("not an image")
    (root / "LICENSE.txt").write_text("files at the root are not classes")


def test_image_folder_loads_resizes_labels_and_warns_about_bad_files(tmp_path):
    _make_folder(tmp_path)
    with pytest.warns(UserWarning) as record:
        x, y, names = ImageFolder(tmp_path, size=(6, 7), channels=3).load()
    message = "\n".join(str(w.message) for w in record)
    assert os.path.join("red", "broken.jpg") in message and os.path.join("green", "notes.txt") in message
    assert "skipped 2 file(s)" in message
    assert names == ["blue", "green", "red"]
    assert x.shape == (9, 6, 7, 3) and x.dtype == np.float32 and y.dtype == np.int32
    assert 0.0 <= x.min() and x.max() <= 1.0
    assert list(y) == [0, 0, 0, 1, 1, 1, 2, 2, 2]
    coloured = x[[0, 1, 3, 4, 6, 7]].mean(axis=(1, 2))  # a.png and b.jpg of each class
    assert list(coloured.argmax(axis=1)) == [2, 2, 1, 1, 0, 0]  # blue, green, red channels
    assert np.allclose(x[2], 128 / 255, atol=1e-6)  # the grey palette image


def test_image_folder_grey_and_split(tmp_path):
    _make_folder(tmp_path)
    folder = ImageFolder(tmp_path, size=(4, 4), channels=1)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        x_tr, y_tr, x_va, y_va = folder.split(validation_fraction=0.34, seed=0)
    assert x_tr.shape[1:] == (4, 4, 1) and len(x_tr) + len(x_va) == 9
    assert sorted(y_va) == [0, 1, 2]  # stratified: one of each class
    assert folder.class_names == ["blue", "green", "red"]


def test_image_folder_errors_name_the_folder(tmp_path):
    with pytest.raises(DataError, match="no class folders"):
        ImageFolder(tmp_path).load()
    (tmp_path / "only_a_file.txt").write_text("x")
    with pytest.raises(DataError, match=f"{tmp_path}.*one subfolder per class"):
        ImageFolder(tmp_path).load()
    with pytest.raises(DataError, match="does not exist"):
        ImageFolder(tmp_path / "missing").load()
    (tmp_path / "cats").mkdir()
    (tmp_path / "cats" / "bad.jpg").write_bytes(b"nope")
    with pytest.raises(DataError) as e:
        ImageFolder(tmp_path).load()
    assert str(tmp_path / "cats") in str(e.value) and "no readable image" in str(e.value)
    assert str(tmp_path / "cats" / "bad.jpg") in str(e.value)
    with pytest.raises(ValueError, match="channels"):
        ImageFolder(tmp_path, channels=2)
