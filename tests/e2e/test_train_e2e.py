"""Training a compiled model end to end: loss falls, checkpoints resume exactly, divergence
stops cleanly, bad inputs are named. These exercise the generated C and the runtime together."""
import numpy as np
import pytest

from cnnc.runtime import checkpoint, data
from cnnc.runtime.train import TrainingDiverged, evaluate, fit, predict

from .conftest import TINY_FLOWERS


def _folder_arrays(root):
    x, y, names = data.ImageFolder(root, size=(16, 16), channels=3).load()
    return x, y, names


def test_tiny_flowers_loss_falls_and_predicts(compiled, image_folder):
    model = compiled(TINY_FLOWERS).Model(seed=0)
    x, y, names = _folder_arrays(image_folder)
    assert names == ["blue", "green", "red"] and x.shape == (36, 16, 16, 3)
    hist = fit(model, x, y, epochs=8, batch_size=8, seed=0, verbose=0)
    losses = hist.history["loss"]
    assert losses[-1] < 0.5 * losses[0], losses
    probs = predict(model, x[:3])["logits"]
    assert probs.shape == (3, 3) and np.all(np.isfinite(probs))


def test_exact_resume(compiled, tmp_path):
    """2 epochs straight == 1 epoch, checkpoint, fresh model, load, 1 more (dropout included)."""
    x, y, _, _ = data.load_digits()
    x, y = x[:256], y[:256]
    mod = compiled("digits")
    a = mod.Model(seed=3)
    fit(a, x, y, epochs=2, batch_size=32, seed=7, verbose=0)
    ck = tmp_path / "d.npz"
    b = mod.Model(seed=3)
    fit(b, x, y, epochs=1, batch_size=32, seed=7, verbose=0, checkpoint=str(ck))
    c = mod.Model(seed=99)                        # different init: everything must come from the file
    fit(c, x, y, epochs=2, batch_size=32, seed=7, verbose=0, checkpoint=str(ck), resume=True)
    for name in a.params:
        np.testing.assert_array_equal(a.params[name], c.params[name], err_msg=name)


def test_nan_stops_and_keeps_checkpoint(compiled, tmp_path):
    x, y, _, _ = data.load_digits()
    x, y = x[:256], y[:256]
    model = compiled("digits").Model(seed=0)
    ck = tmp_path / "d.npz"
    fit(model, x, y, epochs=1, batch_size=64, verbose=0, checkpoint=str(ck))
    good = {k: v.copy() for k, v in model.params.items()}
    model.lr = 1e30                               # the next updates overflow to Inf/NaN
    with pytest.raises(TrainingDiverged) as info:
        fit(model, x, y, epochs=3, batch_size=64, verbose=0, checkpoint=str(ck), initial_epoch=1)
    assert "step" in str(info.value) and str(ck) in str(info.value)
    fresh = compiled("digits").Model(seed=5)
    checkpoint.load(str(ck), fresh)
    for k in good:
        np.testing.assert_array_equal(fresh.params[k], good[k])


def test_mismatched_checkpoint_lists_every_param(compiled, tmp_path):
    model = compiled("digits").Model(seed=0)
    ck = tmp_path / "d.npz"
    checkpoint.save(str(ck), model)
    other = compiled(TINY_FLOWERS).Model(seed=0)
    with pytest.raises(checkpoint.CheckpointMismatch) as info:
        checkpoint.load(str(ck), other)
    text = str(info.value)
    assert "layer1-conv1/weight" in text and "conv1/weight" in text
    assert "[3, 3, 3, 8]" in text or "(3, 3, 3, 8)" in text


def test_bad_inputs_name_the_input(compiled):
    model = compiled("digits").Model(seed=0)
    with pytest.raises(ValueError, match="`x`"):
        model.forward(x=np.zeros((2, 9, 9, 1), np.float32))
    with pytest.raises(ValueError, match="`y`"):
        fit(model, np.zeros((4, 8, 8, 1), np.float32), np.array([0.5, 1.0, 2.0, 3.0]), epochs=1, verbose=0)


def test_empty_image_folder_is_a_clear_error(tmp_path):
    (tmp_path / "empty").mkdir()
    with pytest.raises(data.DataError, match="no class folders"):
        data.ImageFolder(tmp_path / "empty", size=(16, 16)).load()


def test_digits_learn_quickly(compiled):
    """A few epochs of the built-in example already classify most held-out digits."""
    x, y, xt, yt = data.load_digits()
    model = compiled("digits").Model(seed=0)
    fit(model, x, y, epochs=4, batch_size=32, seed=0, verbose=0)
    assert evaluate(model, xt, yt)["accuracy"] > 0.9
