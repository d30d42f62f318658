"""Hooks into the training loop: history, checkpoints, early stopping, learning-rate schedules.

fit() hands each callback a TrainingRun (`self.run`: the model, the epoch count, the seed, the
log keys); a callback ends training with `self.run.stop(reason)`. Callbacks that keep state
across epochs expose it through get_state/set_state so a resumed run continues exactly."""

from __future__ import annotations

import math
import os
import sys
import warnings

import numpy as np

from . import checkpoint as _checkpoint

_HIGHER_IS_BETTER = ("acc", "auc", "precision", "recall", "f1", "iou", "score")


def resolve_mode(monitor: str, mode: str) -> str:
    """"min" or "max"; "auto" means "max" for accuracy-like names, "min" for losses and the rest."""
    if mode not in ("auto", "min", "max"):
        raise ValueError(f"mode must be 'auto', 'min' or 'max'; got {mode!r}")
    if mode != "auto":
        return mode
    base = monitor[4:] if monitor.startswith("val_") else monitor
    return "max" if any(k in base.lower() for k in _HIGHER_IS_BETTER) else "min"


def _improves(value: float, best, mode: str, min_delta: float = 0.0) -> bool:
    if value is None or not math.isfinite(value):
        return False
    if best is None:
        return True
    return value < best - min_delta if mode == "min" else value > best + min_delta


class TrainingRun:
    """What one fit() call shares with its callbacks."""

    def __init__(self, model, *, epochs, initial_epoch=0, batch_size=32, seed=0, log_keys=(),
                 callbacks=(), verbose=0, meta=None):
        self.model, self.epochs, self.initial_epoch = model, epochs, initial_epoch
        self.meta = dict(meta or {})        # carried in every checkpoint, e.g. class names
        self.batch_size, self.seed, self.verbose = batch_size, seed, verbose
        self.log_keys = tuple(log_keys)
        self.callbacks = list(callbacks)
        self.epoch = initial_epoch
        self.stop_training = False
        self.stop_reason: str | None = None

    def stop(self, reason: str = "") -> None:
        """Ask fit() to stop after the current epoch."""
        self.stop_training, self.stop_reason = True, reason
        self.log(reason)

    def log(self, message: str) -> None:
        if self.verbose and message:
            try:
                from tqdm import tqdm
                tqdm.write(message, file=sys.stderr)
            except ImportError:
                print(message, file=sys.stderr)

    def _state_keys(self):
        seen: dict[str, int] = {}
        for cb in self.callbacks:
            name = type(cb).__name__
            k = seen.get(name, 0)
            seen[name] = k + 1
            yield (name if k == 0 else f"{name}#{k}"), cb

    def callback_states(self) -> dict:
        return {key: cb.get_state() for key, cb in self._state_keys()}

    def restore_callback_states(self, states: dict) -> None:
        for key, cb in self._state_keys():
            if key in states:
                cb.set_state(states[key])

    def checkpoint_extra(self, epoch: int) -> dict:
        """The `extra` a checkpoint written at the end of `epoch` carries for exact resume."""
        history = next((cb for cb in self.callbacks if isinstance(cb, History)), None)
        return {"epoch": epoch, "epochs": self.epochs, "seed": self.seed,
                "history": history.history if history else {},
                "callbacks": self.callback_states(), "meta": self.meta}


class Callback:
    """Base class: override the hooks you need. `priority` orders callbacks (lower runs first)."""

    priority = 0
    run: TrainingRun | None = None

    def set_run(self, run: TrainingRun) -> None:
        self.run = run

    @property
    def model(self):
        return self.run.model

    def on_train_begin(self, logs=None): ...
    def on_train_end(self, logs=None): ...
    def on_epoch_begin(self, epoch, logs=None): ...
    def on_batch_end(self, batch, logs=None): ...
    def on_epoch_end(self, epoch, logs=None): ...

    def get_state(self) -> dict:
        """JSON-able state saved in checkpoints; restored by set_state when a run resumes."""
        return {}

    def set_state(self, state: dict) -> None:
        pass


class History(Callback):
    """Per-epoch logs: `history["loss"]` is a list with one mean per epoch; `epoch` lists epoch indices."""

    priority = -100  # records logs before checkpoints save them

    def __init__(self):
        self.history: dict[str, list[float]] = {}
        self.epoch: list[int] = []

    def on_epoch_end(self, epoch, logs=None):
        self.epoch.append(epoch)
        for k, v in (logs or {}).items():
            self.history.setdefault(k, []).append(float(v))

    def __getitem__(self, key):
        return self.history[key]

    def get_state(self):
        return {"history": self.history, "epoch": self.epoch}

    def set_state(self, state):
        self.history = {k: list(v) for k, v in state.get("history", {}).items()}
        self.epoch = list(state.get("epoch", []))


class ModelCheckpoint(Callback):
    """Save `path` after every epoch (save_last) and `<stem>.best<suffix>` when `monitor` improves.

    With save_best_only, `path` itself is written only when `monitor` improves (Keras' meaning)."""

    priority = 100  # runs after the callbacks whose state it saves

    def __init__(self, path, monitor="val_loss", mode="auto", save_best_only=False, save_last=True):
        self.path = os.fspath(path)
        stem, suffix = os.path.splitext(self.path)
        self.best_path = f"{stem}.best{suffix}"
        self.monitor, self.mode = monitor, resolve_mode(monitor, mode)
        self.save_best_only, self.save_last = save_best_only, save_last
        self.best: float | None = None
        self.best_epoch: int | None = None
        self.last_saved: tuple[int, int] | None = None  # (epoch, step) of the latest write this run
        self._can_monitor = True

    def on_train_begin(self, logs=None):
        self._can_monitor = self.monitor in self.run.log_keys
        if not self._can_monitor:
            available = ", ".join(k for k in self.run.log_keys)
            if self.save_best_only:
                raise ValueError(f"ModelCheckpoint({self.path!r}) saves only on improvement of "
                                 f"`{self.monitor}`, which this run does not log; it logs {available}")
            warnings.warn(f"ModelCheckpoint: `{self.monitor}` is not logged by this run (it logs "
                          f"{available}); {self.best_path} will not be written", stacklevel=2)

    def on_epoch_end(self, epoch, logs=None):
        improved = self._can_monitor and _improves(logs.get(self.monitor), self.best, self.mode)
        if improved:
            self.best, self.best_epoch = float(logs[self.monitor]), epoch
        extra = self.run.checkpoint_extra(epoch)
        if self.save_best_only:
            if improved:
                _checkpoint.save(self.path, self.model, extra)
        else:
            if self.save_last:
                _checkpoint.save(self.path, self.model, extra)
            if improved:
                _checkpoint.save(self.best_path, self.model, extra)
        if improved or (self.save_last and not self.save_best_only):
            self.last_saved = (epoch, int(self.model.step))

    def paths_on_disk(self) -> list[str]:
        return [p for p in (self.path, self.best_path) if os.path.exists(p)]

    def get_state(self):
        return {"monitor": self.monitor, "best": self.best, "best_epoch": self.best_epoch}

    def set_state(self, state):
        if state.get("monitor") == self.monitor:
            self.best, self.best_epoch = state.get("best"), state.get("best_epoch")


class EarlyStopping(Callback):
    """Stop when `monitor` has not improved by more than `min_delta` for `patience` epochs.

    restore_best_weights copies the best epoch's params and state (batch norm's moving
    statistics, as Keras' weights include them) back into the model when training ends."""

    def __init__(self, monitor="val_loss", patience=0, min_delta=0.0, mode="auto",
                 restore_best_weights=False):
        if patience < 0:
            raise ValueError(f"patience must be >= 0; got {patience}")
        self.monitor, self.mode = monitor, resolve_mode(monitor, mode)
        self.patience, self.min_delta = int(patience), abs(float(min_delta))
        self.restore_best_weights = restore_best_weights
        self.best: float | None = None
        self.best_epoch: int | None = None
        self.wait = 0
        self.stopped_epoch: int | None = None
        self.best_weights: dict[str, np.ndarray] | None = None
        self.best_state: dict[str, np.ndarray] = {}
        self._last_epoch: int | None = None

    def on_train_begin(self, logs=None):
        if self.monitor not in self.run.log_keys:
            raise ValueError(f"EarlyStopping monitors `{self.monitor}`, which this run does not log; "
                             f"it logs {', '.join(self.run.log_keys)}"
                             + (" (pass validation data to get val_ metrics)"
                                if self.monitor.startswith("val_") else ""))

    def on_epoch_end(self, epoch, logs=None):
        self._last_epoch = epoch
        value = logs.get(self.monitor)
        if _improves(value, self.best, self.mode, self.min_delta):
            self.best, self.best_epoch, self.wait = float(value), epoch, 0
            if self.restore_best_weights:
                self.best_weights = {k: v.copy() for k, v in self.model.params.items()}
                self.best_state = {k: v.copy() for k, v in getattr(self.model, "state", {}).items()}
            return
        self.wait += 1
        if self.wait >= self.patience:  # wait >= 1 here, so patience=0 stops at once
            self.stopped_epoch = epoch
            self.run.stop(f"early stopping after epoch {epoch + 1}: `{self.monitor}` has not improved "
                          f"for {self.wait} epoch(s); best {self.best} at epoch "
                          f"{None if self.best_epoch is None else self.best_epoch + 1}")

    def on_train_end(self, logs=None):
        if (self.restore_best_weights and self.best_weights is not None
                and self.best_epoch != self._last_epoch):
            for k, v in self.best_weights.items():
                self.model.params[k][...] = v
            for k, v in self.best_state.items():
                self.model.state[k][...] = v
            self.run.log(f"restored the params of epoch {self.best_epoch + 1} "
                         f"(best `{self.monitor}` = {self.best})")

    def get_state(self):
        return {"monitor": self.monitor, "best": self.best, "best_epoch": self.best_epoch,
                "wait": self.wait}

    def set_state(self, state):
        if state.get("monitor") == self.monitor:
            self.best, self.best_epoch = state.get("best"), state.get("best_epoch")
            self.wait = int(state.get("wait", 0))


class LearningRateScheduler(Callback):
    """Set `model.lr = schedule(epoch, lr)` at the start of every epoch (epoch counts from 0)."""

    def __init__(self, schedule):
        self.schedule = schedule

    def on_epoch_begin(self, epoch, logs=None):
        lr = float(self.schedule(epoch, float(self.model.lr)))
        if not math.isfinite(lr) or lr < 0:
            raise ValueError(f"learning-rate schedule gave lr={lr} for epoch {epoch}; it must be a "
                             f"finite number >= 0")
        self.model.lr = lr


def step_decay(initial_lr: float, drop: float = 0.5, epochs_drop: int = 10):
    """Schedule: initial_lr * drop ** (epoch // epochs_drop)."""
    return lambda epoch, lr: initial_lr * drop ** (epoch // epochs_drop)


def exponential_decay(initial_lr: float, decay_rate: float, decay_epochs: float = 1.0,
                      staircase: bool = False):
    """Schedule: initial_lr * decay_rate ** (epoch / decay_epochs), floored when staircase."""
    def schedule(epoch, lr):
        p = epoch / decay_epochs
        return initial_lr * decay_rate ** (math.floor(p) if staircase else p)
    return schedule
