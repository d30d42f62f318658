"""Datasets and batching: the built-in digits, image folders, seeded splits, and the checks
that turn user arrays into exactly the dtypes and shapes a compiled model's inputs declare."""

from __future__ import annotations

import os
import warnings
from typing import Iterator, Mapping

import numpy as np

DIGITS_CLASSES = tuple(str(d) for d in range(10))


class DataError(ValueError):
    """A dataset on disk is not laid out or readable as expected."""


# --------------------------------------------------------------------------- splits


def split(x, y, validation_fraction: float, seed: int = 0, stratify: bool = True):
    """Seeded split into (x_train, y_train, x_val, y_val).

    With `stratify`, each class gives round(fraction * its count) examples to validation, so
    small classes are not left out by chance. Both parts come back in a seeded shuffled order."""
    if not 0.0 < validation_fraction < 1.0:
        raise ValueError(f"validation_fraction must be between 0 and 1; got {validation_fraction}")
    x, y_arr = np.asarray(x), np.asarray(y)
    n = len(y_arr)
    if len(x) != n:
        raise ValueError(f"x has {len(x)} examples but y has {n}")
    rng = np.random.default_rng(seed)
    if stratify:
        keys = y_arr.argmax(axis=1) if y_arr.ndim == 2 else y_arr
        val_parts = []
        for c in np.unique(keys):
            idx = np.flatnonzero(keys == c)
            take = int(round(validation_fraction * len(idx)))
            val_parts.append(rng.permutation(idx)[:take])
        val = np.concatenate(val_parts) if val_parts else np.zeros(0, np.int64)
    else:
        val = rng.permutation(n)[: int(round(validation_fraction * n))]
    if len(val) == 0 or len(val) == n:
        raise ValueError(f"validation_fraction={validation_fraction} of {n} examples leaves "
                         f"{len(val)} for validation and {n - len(val)} for training")
    is_val = np.zeros(n, bool)
    is_val[val] = True
    train = rng.permutation(np.flatnonzero(~is_val))
    val = rng.permutation(val)
    return x[train], y_arr[train], x[val], y_arr[val]


# --------------------------------------------------------------------------- datasets


def load_digits(test_fraction: float = 0.2, seed: int = 0):
    """The UCI handwritten digits shipped with scikit-learn: 1,797 8x8 grey images.

    Returns (x_train, y_train, x_test, y_test): x float32 [n, 8, 8, 1] in [0, 1], y int32 class
    ids; the split is stratified and depends only on `seed`."""
    try:
        from sklearn.datasets import load_digits as _sk_load_digits
    except ImportError as e:  # a declared dependency, but say what to do if it is missing
        raise ImportError("load_digits needs scikit-learn: pip install scikit-learn") from e
    bunch = _sk_load_digits()
    x = (bunch.images.astype(np.float32) / np.float32(16.0))[..., None]
    y = bunch.target.astype(np.int32)
    return split(x, y, test_fraction, seed=seed, stratify=True)


def digit_segments(x, y, threshold: float = 0.5) -> np.ndarray:
    """A per-pixel target derived from digit images and their classes, for segmentation
    models: i32 [n, h, w], 0 where a pixel is background, 1 + the digit where it is ink
    (brighter than `threshold`)."""
    x, y = np.asarray(x), np.asarray(y)
    if x.ndim == 4 and x.shape[3] == 1:
        x = x[..., 0]
    if x.ndim != 3 or y.shape != (len(x),):
        raise DataError(f"digit_segments needs images [n, h, w(, 1)] and class ids [n]; got {x.shape} and {y.shape}")
    return np.where(x > threshold, y[:, None, None] + 1, 0).astype(np.int32)


def load_image(path, size, channels: int = 3) -> np.ndarray:
    """One image file as float32 [h, w, channels] in [0, 1]: the preprocessing every dataset
    and `predict` share (EXIF orientation, RGB or grey, bilinear resize to size=(h, w))."""
    from PIL import Image, ImageOps

    with Image.open(path) as img:
        img.load()
        img = ImageOps.exif_transpose(img)
        if img.mode in ("P", "LA", "PA") or (img.mode == "RGBA" and channels == 1):
            img = img.convert("RGBA")
        img = img.convert("RGB" if channels == 3 else "L")
        h, w = size
        img = img.resize((w, h), Image.Resampling.BILINEAR)
        arr = np.asarray(img, dtype=np.float32) / np.float32(255.0)
    return arr if channels == 3 else arr[..., None]


class ImageFolder:
    """Images laid out one subfolder per class (`flower_photos/daisy/*.jpg`), classes sorted by name.

    Files Pillow cannot decode are skipped with one warning naming each; `load()` returns
    (x float32 NHWC in [0, 1], y int32, class_names)."""

    def __init__(self, root, size=(64, 64), channels: int = 3):
        if channels not in (1, 3):
            raise ValueError(f"channels must be 1 (grey) or 3 (RGB); got {channels}")
        if (len(tuple(size)) != 2 or not all(isinstance(s, (int, np.integer)) and s > 0 for s in size)):
            raise ValueError(f"size must be (height, width) in pixels; got {size!r}")
        self.root = os.fspath(root)
        self.size = (int(size[0]), int(size[1]))
        self.channels = channels
        self.class_names: list[str] | None = None
        self._loaded = None

    def _class_dirs(self) -> list[str]:
        if not os.path.isdir(self.root):
            raise DataError(f"image folder {self.root} does not exist or is not a directory")
        names = sorted(d for d in os.listdir(self.root)
                       if not d.startswith(".") and os.path.isdir(os.path.join(self.root, d)))
        if not names:
            raise DataError(f"image folder {self.root} has no class folders; expected one "
                            f"subfolder per class holding its images, e.g. {self.root}/daisy/*.jpg")
        return names

    def _files(self, class_dir: str) -> list[str]:
        out = []
        for dirpath, dirnames, filenames in os.walk(class_dir):
            dirnames[:] = sorted(d for d in dirnames if not d.startswith("."))
            out.extend(os.path.join(dirpath, f) for f in sorted(filenames) if not f.startswith("."))
        return out

    def _decode(self, path: str) -> np.ndarray:
        return load_image(path, self.size, self.channels)

    def load(self):
        """Decode every image: returns (x [n, h, w, channels] float32, y int32, class_names)."""
        if self._loaded is not None:
            return self._loaded
        try:
            import PIL  # noqa: F401
        except ImportError as e:
            raise ImportError("ImageFolder needs Pillow: pip install pillow") from e
        names = self._class_dirs()
        files = [self._files(os.path.join(self.root, name)) for name in names]
        # Decode straight into one preallocated array: stacking a list would need twice the memory.
        x = np.empty((sum(map(len, files)), *self.size, self.channels), np.float32)
        labels, skipped = [], []
        for label, (name, paths) in enumerate(zip(names, files)):
            class_dir = os.path.join(self.root, name)
            count, skipped_before = 0, len(skipped)
            for path in paths:
                try:
                    x[len(labels)] = self._decode(path)
                except Exception as e:  # Pillow raises many types for bad files
                    skipped.append(f"{path}: {type(e).__name__}: {e}")
                    continue
                labels.append(label)
                count += 1
            if count == 0:
                bad = skipped[skipped_before:]
                raise DataError(f"class folder {class_dir} has no readable image; expected image "
                                f"files Pillow can decode (jpg, png, ...)"
                                + (":\n  " + "\n  ".join(bad) if bad else ", found no files"))
        if skipped:
            warnings.warn(f"ImageFolder {self.root}: skipped {len(skipped)} file(s) that are not "
                          f"readable images:\n  " + "\n  ".join(skipped), stacklevel=2)
        self.class_names = names
        self._loaded = (x[:len(labels)], np.asarray(labels, np.int32), list(names))
        return self._loaded

    def split(self, validation_fraction: float = 0.2, seed: int = 0):
        """Stratified seeded split of the loaded images: (x_train, y_train, x_val, y_val)."""
        x, y, _ = self.load()
        return split(x, y, validation_fraction, seed=seed, stratify=True)


# --------------------------------------------------------------------------- batching


def batches(arrays: Mapping[str, np.ndarray], batch_size: int, shuffle: bool = False,
            rng=None) -> Iterator[dict]:
    """Yield dicts of aligned slices of `arrays`, `batch_size` examples each (the last may be smaller).

    With `shuffle`, the order is `rng.permutation(n)`; `rng` is a Generator, an int seed, or None."""
    for idx in batch_indices(_num_examples(arrays), batch_size, shuffle, rng):
        yield {k: v[idx] for k, v in arrays.items()}


def batch_indices(n: int, batch_size: int, shuffle: bool = False, rng=None) -> Iterator:
    """The examples of each batch `batches` yields, as a slice or an index array: data-parallel
    training takes every rank's part of a global batch from the same order."""
    if not isinstance(batch_size, (int, np.integer)) or batch_size < 1:
        raise ValueError(f"batch_size must be a positive integer; got {batch_size!r}")
    order = np.random.default_rng(rng).permutation(n) if shuffle else None
    for start in range(0, n, batch_size):
        yield slice(start, min(start + batch_size, n)) if order is None else order[start:start + batch_size]


def _num_examples(arrays: Mapping[str, np.ndarray]) -> int:
    if not arrays:
        raise ValueError("no arrays to batch")
    sizes = {k: len(v) for k, v in arrays.items()}
    if len(set(sizes.values())) != 1:
        raise ValueError("inputs have different numbers of examples: "
                         + ", ".join(f"`{k}` has {s}" for k, s in sizes.items()))
    return next(iter(sizes.values()))


# --------------------------------------------------------------------------- input checks


def type_str(dtype: str, shape) -> str:
    """f32[N, 10] for ("f32", (None, 10))."""
    return f"{dtype}[{', '.join('N' if d is None else str(d) for d in shape)}]"


def _fits(shape, declared) -> bool:
    return len(shape) == len(declared) and all(
        not isinstance(d, (int, np.integer)) or d == s for s, d in zip(shape, declared))


def conform(name: str, dtype: str, shape, value, label: bool = False) -> np.ndarray:
    """`value` as a contiguous array of exactly input `name`'s dtype and shape, or a ValueError naming it.

    Lossless casts only (ints and bools to f32, integral floats to i32). For labels, class ids
    are one-hot encoded for an f32[N, C] input and one-hot rows become ids for an i32[N] input."""
    arr = np.asarray(value)
    expected = type_str(dtype, shape)

    def fail(why: str = ""):
        raise ValueError(f"input `{name}` expects {expected}; got {arr.dtype} array of shape "
                         f"{tuple(arr.shape)}" + (f" ({why})" if why else ""))

    if arr.dtype.kind not in "biuf":
        fail("not numbers")
    if dtype == "f32":
        if label and arr.ndim == 1 and len(shape) == 2 and arr.dtype.kind in "iu":
            return _one_hot(name, expected, arr, shape[1])
        if not _fits(arr.shape, shape):
            fail()
        return np.ascontiguousarray(arr, dtype=np.float32)
    if dtype == "i32":
        if label and len(shape) == 1 and arr.ndim == 2:
            return np.ascontiguousarray(_ids_from_one_hot(arr, fail), dtype=np.int32)
        if not _fits(arr.shape, shape):
            fail()
        if arr.dtype.kind == "f" and not np.array_equal(arr, np.round(arr)):
            fail("values with fractions; cnnc does not round them silently")
        if arr.size and (arr.min() < np.iinfo(np.int32).min or arr.max() > np.iinfo(np.int32).max):
            fail("values outside the int32 range")
        return np.ascontiguousarray(arr, dtype=np.int32)
    raise ValueError(f"input `{name}` has unknown dtype {dtype!r}")


def _one_hot(name: str, expected: str, ids: np.ndarray, depth) -> np.ndarray:
    if not isinstance(depth, (int, np.integer)):
        raise ValueError(f"input `{name}` expects {expected}; cannot one-hot class ids without a "
                         f"fixed class count")
    if ids.size and (ids.min() < 0 or ids.max() >= depth):
        raise ValueError(f"input `{name}` expects {expected} (one-hot of {depth} classes); got class "
                         f"ids from {ids.min()} to {ids.max()}, outside 0..{depth - 1}")
    out = np.zeros((len(ids), depth), np.float32)
    out[np.arange(len(ids)), ids] = 1.0
    return out


def _ids_from_one_hot(arr: np.ndarray, fail) -> np.ndarray:
    if arr.shape[1] == 0 or not np.isin(arr, (0, 1)).all() or not (arr.sum(axis=1) == 1).all():
        fail("2-D labels for a class-id input must be one-hot rows")
    return arr.argmax(axis=1)


def to_input_dict(model, arrays: Mapping[str, np.ndarray], names=None) -> dict:
    """Check and convert a dict of arrays for the model inputs `names` (default: all its inputs)."""
    names = list(model.inputs) if names is None else list(names)
    unknown = [k for k in arrays if k not in model.inputs]
    if unknown:
        raise ValueError(f"unknown input(s) {', '.join(f'`{k}`' for k in unknown)}; model "
                         f"`{model.name}` has inputs {', '.join(f'`{k}`' for k in model.inputs)}")
    missing = [k for k in names if k not in arrays]
    if missing:
        raise ValueError(f"missing input(s) {', '.join(f'`{k}`' for k in missing)}; expected "
                         + ", ".join(f"`{k}`: {type_str(*model.inputs[k])}" for k in missing))
    labels = set(model.label_inputs)
    out = {k: conform(k, *model.inputs[k], arrays[k], label=k in labels) for k in names}
    _num_examples(out)
    return out


def to_batch_dict(model, x, y=None) -> dict:
    """Map (x, y) to the model's first feature and label inputs, converting labels as `conform` does."""
    if len(model.feature_inputs) != 1 or (y is not None and len(model.label_inputs) != 1):
        raise ValueError(f"model `{model.name}` has inputs {', '.join(f'`{k}`' for k in model.inputs)}; "
                         f"pass a dict of arrays by input name instead of (x, y)")
    arrays = {model.feature_inputs[0]: x}
    if y is not None:
        arrays[model.label_inputs[0]] = y
    return to_input_dict(model, arrays, names=list(arrays))
