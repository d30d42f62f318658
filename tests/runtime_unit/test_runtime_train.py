"""fit / evaluate / predict: learning, determinism, exact resume, divergence, interrupts."""

import ast
import math
import pathlib

import numpy as np
import pytest

from cnnc.runtime import Callback, TrainingDiverged, checkpoint, evaluate, fit, predict

from ._fakes import SoftmaxRegression


def _params(m):
    return {k: v.copy() for k, v in m.params.items()}


def _same(a, b):
    return a.keys() == b.keys() and all(np.array_equal(a[k], b[k]) for k in a)


def test_softmax_regression_learns_digits(digits):
    x_tr, y_tr, x_te, y_te = digits
    m = SoftmaxRegression(lr=0.2)
    hist = fit(m, x_tr, y_tr, epochs=4, batch_size=32, validation_split=0.1, verbose=0)
    losses = hist.history["loss"]
    assert all(a > b for a, b in zip(losses, losses[1:])), losses
    assert losses[-1] < 0.5 * losses[0]
    assert set(hist.history) == {"loss", "accuracy", "val_loss", "val_accuracy", "lr"}
    assert hist.epoch == [0, 1, 2, 3]
    res = evaluate(m, x_te, y_te, batch_size=50)
    assert res["accuracy"] > 0.85
    probs = predict(m, x_te, batch_size=50)["probs"]
    assert probs.shape == (len(x_te), 10)
    assert math.isclose((probs.argmax(axis=1) == y_te).mean(), res["accuracy"], rel_tol=1e-9)
    # validation_split took the LAST 10% of the training data, unshuffled (Keras' rule)
    cut = math.ceil(len(x_tr) * 0.9)
    assert math.isclose(evaluate(m, x_tr[cut:], y_tr[cut:])["loss"], hist.history["val_loss"][-1])


def test_epoch_means_are_weighted_by_batch_size(digits):
    x, y = digits[2][:70], digits[3][:70]  # batches of 32, 32, 6
    m = SoftmaxRegression(seed=4)
    whole = m.eval_step(x=x, y_true=y)
    assert math.isclose(evaluate(m, x, y, batch_size=32)["loss"], whole["loss"], rel_tol=1e-5)
    assert math.isclose(evaluate(m, data={"x": x, "y_true": y}, batch_size=32)["accuracy"],
                        whole["accuracy"], rel_tol=1e-12)


def test_same_seed_same_result_different_seed_differs(digits):
    x, y = digits[0][:300], digits[1][:300]
    runs = []
    for seed in (1, 1, 2):
        m = SoftmaxRegression()
        fit(m, x, y, epochs=2, batch_size=16, seed=seed, verbose=0)
        runs.append(_params(m))
    assert _same(runs[0], runs[1]) and not _same(runs[0], runs[2])


@pytest.mark.parametrize("how", ["initial_epoch", "resume"])
def test_exact_resume_matches_an_uninterrupted_run(tmp_path, digits, how):
    x, y = digits[0][:400], digits[1][:400]
    straight = SoftmaxRegression()
    fit(straight, x, y, epochs=3, batch_size=32, seed=7, validation_split=0.2, verbose=0)

    path = tmp_path / "run.npz"
    first = SoftmaxRegression()
    fit(first, x, y, epochs=1, batch_size=32, seed=7, validation_split=0.2, verbose=0, checkpoint=path)
    resumed = SoftmaxRegression(seed=123)  # different init: everything must come from the file
    if how == "initial_epoch":
        extra = checkpoint.load(path, resumed)
        assert extra["epoch"] == 0
        fit(resumed, x, y, epochs=3, batch_size=32, seed=7, validation_split=0.2, verbose=0,
            initial_epoch=1)
    else:
        hist = fit(resumed, x, y, epochs=3, batch_size=32, seed=7, validation_split=0.2, verbose=0,
                   checkpoint=path, resume=True)
        assert hist.epoch == [0, 1, 2] and len(hist.history["loss"]) == 3  # history carried over
    assert _same(_params(straight), _params(resumed))
    assert _same(straight.optimizer_state, resumed.optimizer_state)
    assert straight.step == resumed.step and np.array_equal(straight.rng_state, resumed.rng_state)


def test_nan_loss_stops_at_once_and_keeps_the_last_good_checkpoint(tmp_path, digits):
    x, y = digits[0][:320], digits[1][:320]  # 10 steps per epoch with batch 32
    path = tmp_path / "last.npz"
    m = SoftmaxRegression(nan_at_step=25)
    with pytest.raises(TrainingDiverged) as e:
        fit(m, x, y, epochs=5, batch_size=32, verbose=0, checkpoint=path)
    err = e.value
    assert (err.epoch, err.step) == (2, 25) and math.isnan(err.loss)
    msg = str(err)
    assert "epoch 3/5" in msg and "global step 25" in msg and "batch loss was nan" in msg
    assert f"last good checkpoint at {path} (from epoch 2, step 20) was kept" in msg
    assert m.step == 25  # no batch ran after the bad one
    fresh = SoftmaxRegression(seed=9)
    extra = checkpoint.load(path, fresh)
    assert extra["epoch"] == 1 and fresh.step == 20
    assert all(np.isfinite(v).all() for v in fresh.params.values())


def test_nan_in_first_epoch_says_no_checkpoint_was_written(tmp_path, digits):
    path = tmp_path / "last.npz"
    with pytest.raises(TrainingDiverged, match="No checkpoint had been written yet"):
        fit(SoftmaxRegression(nan_at_step=3), digits[0][:320], digits[1][:320], epochs=2,
            verbose=0, checkpoint=path)
    assert not path.exists()


def test_nan_params_after_the_last_batch_are_caught_before_saving(tmp_path, digits):
    x, y = digits[0][:64], digits[1][:64]
    path = tmp_path / "last.npz"

    class Overflow(Callback):  # the last update of epoch 2 overflows; its batch loss was still finite
        def on_batch_end(self, batch, logs=None):
            if self.run.epoch == 1 and batch == 1:
                self.model.params["dense/bias"][0] = np.inf

    with pytest.raises(TrainingDiverged, match="`dense/bias` hold NaN or Inf") as e:
        fit(SoftmaxRegression(), x, y, epochs=3, batch_size=32, verbose=0, checkpoint=path,
            callbacks=[Overflow()])
    assert e.value.step == 4 and e.value.epoch == 1
    assert checkpoint.read_extra(path)["epoch"] == 0


def test_keyboard_interrupt_reraises_and_keeps_the_checkpoint(tmp_path, digits):
    x, y = digits[0][:320], digits[1][:320]
    path = tmp_path / "last.npz"
    m = SoftmaxRegression(interrupt_at_step=15)
    with pytest.raises(KeyboardInterrupt):
        fit(m, x, y, epochs=3, batch_size=32, verbose=1, checkpoint=path)
    fresh = SoftmaxRegression()
    assert checkpoint.load(path, fresh)["epoch"] == 0 and fresh.step == 10


def test_progress_bar_shows_epochs_loss_and_rate(digits, capsys):
    fit(SoftmaxRegression(), digits[0][:200], digits[1][:200], epochs=2, verbose=1)
    err = capsys.readouterr().err
    assert "epoch 1/2" in err and "epoch 2/2" in err and "loss=" in err and "ex/s" in err
    fit(SoftmaxRegression(), digits[0][:200], digits[1][:200], epochs=1, verbose=0)
    assert capsys.readouterr().err == ""


def test_fit_rejects_bad_arguments_naming_what_is_wrong(digits):
    m = SoftmaxRegression()
    x, y = digits[0][:40], digits[1][:40]
    with pytest.raises(ValueError, match="no labels.*`y_true`"):
        fit(m, x, verbose=0)
    with pytest.raises(ValueError, match="not both"):
        fit(m, x, y, validation_data=(x, y), validation_split=0.5, verbose=0)
    with pytest.raises(ValueError, match="input `x` expects"):
        fit(m, x.reshape(40, 64), y, verbose=0)
    with pytest.raises(ValueError, match="input `y_true` expects"):
        fit(m, x, y, validation_data=(x, y[:, None] * 0.5), verbose=0)
    with pytest.raises(ValueError, match="seed"):
        fit(m, x, y, seed=-1, verbose=0)
    assert m.step == 0


def test_runtime_never_imports_the_compiler_or_spec():
    runtime = pathlib.Path(__file__).resolve().parents[2] / "runtime"
    for path in runtime.glob("*.py"):
        for node in ast.walk(ast.parse(path.read_text())):
            names = ([a.name for a in node.names] if isinstance(node, ast.Import) else
                     [node.module or ""] if isinstance(node, ast.ImportFrom) else [])
            for name in names:
                assert not name.startswith(("cnnc.spec", "cnnc.compiler", "spec", "compiler")), path
                if isinstance(node, ast.ImportFrom) and node.level == 0:
                    assert not name.startswith("cnnc"), f"{path}: use relative imports"
