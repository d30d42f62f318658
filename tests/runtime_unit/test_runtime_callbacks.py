"""Callbacks: early stopping, LR schedules, checkpoint files, resumable callback state, plots."""

import math
import sys

import numpy as np
import pytest

from cnnc.runtime import (EarlyStopping, LearningRateScheduler, ModelCheckpoint, checkpoint,
                          exponential_decay, fit, plot_history, step_decay)

from ._fakes import ScriptedModel, scripted_data


def _fit(model, epochs, callbacks=(), validation=True, **kw):
    x, y = scripted_data()
    return fit(model, x, y, epochs=epochs, batch_size=4, verbose=0, callbacks=callbacks,
               validation_data=(x, y) if validation else None, **kw)


def test_early_stopping_stops_after_patience_and_restores_best_weights():
    m = ScriptedModel([1.0, 0.8, 0.9, 0.85, 0.95, 0.7, 0.6])
    es = EarlyStopping(monitor="val_loss", patience=2, restore_best_weights=True)
    hist = _fit(m, 7, [es])
    assert hist.epoch == [0, 1, 2, 3] and es.stopped_epoch == 3 and es.best_epoch == 1
    assert m.params["w"][0] == 2  # the params after epoch 2's single step


def test_early_stopping_min_delta_patience_zero_and_max_mode():
    es = EarlyStopping(patience=1, min_delta=0.15)
    assert _fit(ScriptedModel([1.0, 0.9, 0.8, 0.7]), 4, [es]).epoch == [0, 1]
    es = EarlyStopping(patience=0)
    assert _fit(ScriptedModel([1.0, 0.5, 0.6, 0.4]), 4, [es]).epoch == [0, 1, 2]
    es = EarlyStopping(monitor="val_accuracy", patience=1)  # auto: higher is better
    hist = _fit(ScriptedModel([1.0] * 5, val_accs=[0.5, 0.6, 0.7, 0.65, 0.9]), 5, [es])
    assert hist.epoch == [0, 1, 2, 3] and es.mode == "max"


def test_early_stopping_on_an_unlogged_metric_fails_before_training():
    m = ScriptedModel([1.0, 0.9])
    with pytest.raises(ValueError, match="`val_loss`.*does not log.*validation data"):
        _fit(m, 2, [EarlyStopping()], validation=False)
    assert m.step == 0


def test_learning_rate_schedules_set_model_lr_each_epoch():
    m = ScriptedModel([1.0] * 5)
    hist = _fit(m, 5, [LearningRateScheduler(step_decay(0.1, drop=0.5, epochs_drop=2))])
    assert m.lrs_seen == [0.1, 0.1, 0.05, 0.05, 0.025] and hist.history["lr"] == m.lrs_seen
    sched = exponential_decay(1.0, 0.5, decay_epochs=2)
    assert sched(2, None) == 0.5 and math.isclose(sched(1, None), 0.5 ** 0.5)
    assert exponential_decay(1.0, 0.5, decay_epochs=2, staircase=True)(3, None) == 0.5
    relative = ScriptedModel([1.0] * 3)
    _fit(relative, 3, [LearningRateScheduler(lambda epoch, lr: lr * 0.1 if epoch else lr)])
    assert np.allclose(relative.lrs_seen, [0.1, 0.01, 0.001])
    with pytest.raises(ValueError, match="lr=-1.0 for epoch 0"):
        _fit(ScriptedModel([1.0]), 1, [LearningRateScheduler(lambda e, lr: -1.0)])


def test_model_checkpoint_writes_last_every_epoch_and_best_on_improvement(tmp_path):
    path = tmp_path / "run.npz"
    cb = ModelCheckpoint(path)
    _fit(ScriptedModel([1.0, 0.5, 0.7, 0.6]), 4, [cb])
    assert cb.best_path == str(tmp_path / "run.best.npz")
    assert checkpoint.read_extra(path)["epoch"] == 3
    best = ScriptedModel([0.0])
    extra = checkpoint.load(cb.best_path, best)
    assert extra["epoch"] == 1 and best.params["w"][0] == 2 and best.step == 2
    assert extra["history"]["val_loss"] == [1.0, 0.5]


def test_save_best_only_writes_path_only_on_improvement(tmp_path):
    path = tmp_path / "best_only.npz"
    _fit(ScriptedModel([1.0, 0.5, 0.7, 0.6]), 4, [ModelCheckpoint(path, save_best_only=True)])
    assert checkpoint.read_extra(path)["epoch"] == 1
    assert sorted(p.name for p in tmp_path.iterdir()) == ["best_only.npz"]
    with pytest.raises(ValueError, match="`val_loss`"):
        _fit(ScriptedModel([1.0]), 1, [ModelCheckpoint(path, save_best_only=True)], validation=False)


def test_checkpoint_without_its_monitor_warns_and_still_writes_last(tmp_path):
    path = tmp_path / "c.npz"
    with pytest.warns(UserWarning, match="`val_loss` is not logged"):
        _fit(ScriptedModel([1.0, 1.0]), 2, [ModelCheckpoint(path)], validation=False)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["c.npz"]


def test_checkpoints_save_callback_state_of_the_same_epoch_and_resume_restores_it(tmp_path):
    path = tmp_path / "run.npz"
    losses = [1.0, 1.1, 1.2, 1.3, 0.5, 0.4]
    # the checkpoint is listed first but still runs after EarlyStopping has updated its counter
    _fit(ScriptedModel(losses), 3, [ModelCheckpoint(path), EarlyStopping(patience=3)])
    assert checkpoint.read_extra(path)["callbacks"]["EarlyStopping"] == {
        "monitor": "val_loss", "best": 1.0, "best_epoch": 0, "wait": 2}
    resumed = ScriptedModel(losses)
    hist = _fit(resumed, 6, [EarlyStopping(patience=3)], checkpoint=path, resume=True)
    assert hist.epoch == [0, 1, 2, 3]  # wait 2 carried over: one more bad epoch stops it
    assert hist.history["val_loss"] == [1.0, 1.1, 1.2, 1.3]


def test_plot_history_writes_a_png_or_warns_without_matplotlib(tmp_path, monkeypatch):
    hist = _fit(ScriptedModel([1.0, 0.5, 0.7]), 3)
    out = plot_history(hist, tmp_path / "plots" / "h.png")
    assert out is not None and (tmp_path / "plots" / "h.png").read_bytes()[:4] == b"\x89PNG"
    monkeypatch.setitem(sys.modules, "matplotlib.backends.backend_agg", None)
    with pytest.warns(UserWarning, match="matplotlib"):
        assert plot_history(hist.history, tmp_path / "none.png") is None
    assert not (tmp_path / "none.png").exists()


def test_early_stopping_restores_state_with_the_params():
    """Keras' best weights include the non-trainable ones (batch norm's moving statistics)."""
    class WithState(ScriptedModel):
        def train_step(self, **batch):
            out = super().train_step(**batch)
            self.state["moving"][0] = 10 * self.step
            return out
    m = WithState([1.0, 0.8, 0.9, 0.85, 0.95])
    m.state = {"moving": np.zeros(1, np.float32)}
    es = EarlyStopping(monitor="val_loss", patience=2, restore_best_weights=True)
    _fit(m, 5, [es])
    assert es.best_epoch == 1 and m.params["w"][0] == 2 and m.state["moving"][0] == 20
