"""fit / evaluate / predict: batched loops over a compiled model's train_step, eval_step and forward.

Deterministic for a seed: epoch e shuffles with default_rng([seed, e]), a function of (seed, e)
alone, so a run resumed at epoch k sees exactly the batches an uninterrupted run would have.
A NaN or Inf loss stops training before any checkpoint can be overwritten with the bad state."""

from __future__ import annotations

import math
import os
import sys
import time
import warnings
from typing import Mapping

import numpy as np

from . import checkpoint as _checkpoint
from . import distributed as _dist
from .callbacks import History, ModelCheckpoint, TrainingRun
from .data import _num_examples, batch_indices, batches, to_batch_dict, to_input_dict
from .model import NonFiniteError


class TrainingDiverged(RuntimeError):
    """Training produced a NaN or Inf loss (or params); `epoch` counts from 0, `step` from 1."""

    def __init__(self, message: str, *, epoch: int, step: int, loss: float, checkpoints=()):
        super().__init__(message)
        self.epoch, self.step, self.loss = epoch, step, loss
        self.checkpoints = list(checkpoints)


# --------------------------------------------------------------------------- inputs


def _resolve(model, x, y, data, names, what: str) -> dict:
    """Arrays for the inputs `names` from (x, y), data=(x, y) or data={name: array}; labels and
    ids are range-checked here, on the whole set, so an error names the example's position."""
    arrays = _arrays(model, x, y, data, names, what)
    check = getattr(model, "check_ranges", None)
    if check is not None:
        check(arrays)
    return arrays


def _arrays(model, x, y, data, names, what: str) -> dict:
    if data is not None:
        if x is not None or y is not None:
            raise ValueError(f"pass the {what} data as x, y or as data=, not both")
        if isinstance(data, Mapping):
            return to_input_dict(model, data, names)
        if isinstance(data, (tuple, list)) and len(data) == 2:
            x, y = data
        else:
            raise TypeError(f"{what} data must be a dict of arrays by input name or an (x, y) pair; "
                            f"got {type(data).__name__}")
    if isinstance(x, Mapping):
        if y is not None:
            raise ValueError(f"x is a dict of inputs; put the labels in it instead of passing y")
        return to_input_dict(model, x, names)
    if x is None:
        raise ValueError(f"no {what} data: pass x and y, or data=")
    needs_labels = any(k in model.label_inputs for k in names)
    if y is None and needs_labels:
        raise ValueError(f"no labels for {what}: model `{model.name}` needs "
                         + ", ".join(f"`{k}`" for k in model.label_inputs) + "; pass y")
    return to_batch_dict(model, x, y if needs_labels else None)


def _check_seed(seed) -> int:
    if not isinstance(seed, (int, np.integer)) or seed < 0:
        raise ValueError(f"seed must be a non-negative integer; got {seed!r}")
    return int(seed)


def epoch_rng(seed: int, epoch: int) -> np.random.Generator:
    """The generator that shuffles epoch `epoch`: a function of (seed, epoch) only."""
    return np.random.default_rng([seed, epoch])


# --------------------------------------------------------------------------- progress


class _Progress:
    """One tqdm bar per epoch (verbose=1), one summary line (verbose=2), or nothing (verbose=0)."""

    def __init__(self, total: int, desc: str, verbose: int):
        self.verbose, self.desc, self.bar, self._shown = verbose, desc, None, 0.0
        if verbose == 1:
            try:
                from tqdm import tqdm
            except ImportError:
                self.verbose = 2  # fall back to one line per epoch
            else:
                self.bar = tqdm(total=total, desc=desc, unit="ex", leave=True, file=sys.stderr,
                                dynamic_ncols=True)
        self.start = time.perf_counter()

    def update(self, n: int, logs: dict) -> None:
        if self.bar is None:
            return
        self.bar.update(n)
        now = time.perf_counter()
        if now - self._shown > 0.25:  # formatting the postfix every batch would cost more than tiny batches
            self._shown = now
            self.bar.set_postfix(_fmt(logs), refresh=False)

    def close(self, logs: dict | None) -> None:
        if self.bar is not None:
            if logs:
                self.bar.set_postfix(_fmt(logs), refresh=False)
            self.bar.close()
        elif self.verbose == 2 and logs:
            rate = logs.get("_n", 0) / max(time.perf_counter() - self.start, 1e-9)
            print(f"{self.desc}: " + ", ".join(f"{k}={v}" for k, v in _fmt(logs).items())
                  + f", {rate:.0f} ex/s", file=sys.stderr)


def _fmt(logs: dict) -> dict:
    return {k: f"{v:.4g}" for k, v in logs.items() if not k.startswith("_") and k != "lr"}


class _Mean:
    """Per-key means over batches, weighted by batch size."""

    def __init__(self):
        self.sums: dict[str, float] = {}
        self.n = 0

    def add(self, values: dict, size: int) -> None:
        self.n += size
        for k, v in values.items():
            self.sums[k] = self.sums.get(k, 0.0) + float(v) * size

    def result(self) -> dict:
        return {k: s / self.n for k, s in self.sums.items()}


# --------------------------------------------------------------------------- divergence


def _diverged(run: TrainingRun, epoch: int, step: int, loss: float, what: str) -> TrainingDiverged:
    ckpts = [cb for cb in run.callbacks if isinstance(cb, ModelCheckpoint)]
    paths = [p for cb in ckpts for p in cb.paths_on_disk()]
    msg = (f"training diverged in epoch {epoch + 1}/{run.epochs} at global step {step}: {what}. "
           f"Try a lower learning rate (lr was {run.model.lr:g}).")
    if paths:
        saved = next((cb.last_saved for cb in ckpts if cb.last_saved), None)
        when = f" (from epoch {saved[0] + 1}, step {saved[1]})" if saved else ""
        msg += (f"\nThe last good checkpoint at {paths[0]}{when} was kept; the diverged state "
                f"was not saved." + (f" Also kept: {', '.join(paths[1:])}." if paths[1:] else ""))
    elif ckpts:
        msg += f"\nNo checkpoint had been written yet ({ckpts[0].path}); the diverged state was not saved."
    return TrainingDiverged(msg, epoch=epoch, step=step, loss=loss, checkpoints=paths)


def _check_params_finite(run: TrainingRun, epoch: int, loss: float) -> None:
    bad = [k for k, v in run.model.params.items() if not np.isfinite(v).all()]
    if bad:
        raise _diverged(run, epoch, int(run.model.step), loss,
                        f"params {', '.join(f'`{k}`' for k in bad)} hold NaN or Inf after the last update")


# --------------------------------------------------------------------------- loops


def _train_epoch(model, arrays, run: TrainingRun, epoch: int, shuffle: bool, progress: _Progress):
    mean, group = _Mean(), run.group
    rng = epoch_rng(run.seed, epoch) if shuffle else None
    for i, idx in enumerate(batch_indices(_num_examples(arrays), run.batch_size, shuffle=shuffle, rng=rng)):
        size = idx.stop - idx.start if isinstance(idx, slice) else len(idx)
        if group is not None:                  # this rank's part of the global batch, as the group splits it
            start, stop = group.shard(size)
            idx = slice(idx.start + start, idx.start + stop) if isinstance(idx, slice) else idx[start:stop]
        batch = {k: v[idx] for k, v in arrays.items()}
        step = int(model.step) + 1
        try:
            out = model.train_step(**batch) if group is None else _dist.train_step(group, model, batch, size)
        except NonFiniteError as e:            # the step changed nothing; say so, with the checkpoints
            raise _diverged(run, epoch, step, e.loss, str(e)) from None
        loss = float(out["loss"])
        if not math.isfinite(loss):
            raise _diverged(run, epoch, step, loss, f"batch loss was {loss}")
        mean.add(out, size)
        progress.update(size, mean.result())
        for cb in run.callbacks:
            cb.on_batch_end(i, {**out, "size": size})
    return mean.result()


def _evaluate_arrays(model, arrays: dict, batch_size: int, group=None) -> dict:
    """Batch means weighted by batch size; with a group, each rank takes its shard of the
    examples and the weighted sums are added over the ranks."""
    mean = _Mean()
    if group is not None:
        start, stop = group.shard(_num_examples(arrays))
        arrays = {k: v[start:stop] for k, v in arrays.items()}
    if _num_examples(arrays):
        for batch in batches(arrays, batch_size):
            mean.add(model.eval_step(**batch), len(next(iter(batch.values()))))
    if group is not None:
        keys = ["loss", *model.metric_names]
        sums = group.sum([mean.sums.get(k, 0.0) for k in keys] + [mean.n])
        mean.sums, mean.n = dict(zip(keys, sums[:-1])), int(sums[-1])
    return mean.result()


def _validation(model, train, validation_data, validation_split):
    """(train arrays, validation arrays or None); validation_split takes the LAST fraction, unshuffled."""
    if validation_split:
        if validation_data is not None:
            raise ValueError("pass validation_data or validation_split, not both")
        if not 0.0 < validation_split < 1.0:
            raise ValueError(f"validation_split must be between 0 and 1; got {validation_split}")
        n = _num_examples(train)
        cut = int(math.ceil(n * (1.0 - validation_split)))
        if cut in (0, n):
            raise ValueError(f"validation_split={validation_split} of {n} examples leaves "
                             f"{n - cut} for validation and {cut} for training")
        return {k: v[:cut] for k, v in train.items()}, {k: v[cut:] for k, v in train.items()}
    if validation_data is None:
        return train, None
    return train, _resolve(model, None, None, validation_data, list(model.inputs), "validation")


def fit(model, x=None, y=None, *, data=None, epochs=1, batch_size=32, validation_data=None,
        validation_split=0.0, shuffle=True, seed=0, callbacks=(), verbose=1, checkpoint=None,
        initial_epoch=0, resume=False, meta=None, distributed=False) -> History:
    """Train for epochs initial_epoch..epochs-1 and return the History.

    checkpoint=path saves `path` every epoch and `<stem>.best<suffix>` on the best val_loss (loss
    without validation); resume=True first loads `path` if it exists and continues after its epoch.
    meta (JSON-able, e.g. class names) is stored in every checkpoint under extra["meta"].
    distributed=True (under mpiexec; or a distributed.Group) trains data-parallel: every rank
    calls fit with the same arguments, batch_size is the global batch, and only rank 0 shows
    progress and writes checkpoints (docs/distributed.md)."""
    group = _group(distributed)
    try:
        return _fit(model, x, y, data, epochs, batch_size, validation_data, validation_split, shuffle,
                    seed, callbacks, verbose, checkpoint, initial_epoch, resume, meta, group)
    except BaseException as e:
        if group is not None and not on_every_rank(e):   # the other ranks would wait for this one forever
            group.fail(e)
        raise


def on_every_rank(exc: BaseException) -> bool:
    """Whether every rank of a data-parallel fit raises `exc` alike, from values they share
    (a diverged loss is the global batch's; a mismatch or a bad resume checkpoint is told to
    all), so each can report it and stop without aborting the others."""
    return isinstance(exc, (TrainingDiverged, _dist.DistributedError)) or getattr(exc, "every_rank", False)


def _group(distributed):
    if distributed is False or distributed is None:
        return None
    if distributed is True:
        return _dist.world()
    if isinstance(distributed, _dist.Group):
        return distributed
    raise TypeError(f"distributed must be True, False or a distributed.Group; got {distributed!r}")


def _fit(model, x, y, data, epochs, batch_size, validation_data, validation_split, shuffle, seed,
         callbacks, verbose, checkpoint, initial_epoch, resume, meta, group) -> History:
    seed = _check_seed(seed)
    if resume and checkpoint is None:
        raise ValueError("resume=True needs checkpoint=path")
    train = _resolve(model, x, y, data, list(model.inputs), "training")
    train, val = _validation(model, train, validation_data, validation_split)
    root = group is None or group.is_root
    if group is not None:
        _agree(group, model, train, val, epochs=epochs, batch_size=batch_size, seed=seed,
               initial_epoch=initial_epoch, resume=resume, shuffle=shuffle)
    history = History()
    cbs = [history, *callbacks]
    if checkpoint is not None and root:
        cbs.append(ModelCheckpoint(checkpoint, monitor="val_loss" if val is not None else "loss"))
    cbs.sort(key=lambda cb: cb.priority)  # stable: History first, checkpoints last
    train_keys = ["loss", *model.metric_names]
    log_keys = train_keys + ([f"val_{k}" for k in train_keys] if val is not None else []) + ["lr"]
    run = TrainingRun(model, epochs=epochs, initial_epoch=initial_epoch, batch_size=batch_size,
                      seed=seed, log_keys=log_keys, callbacks=cbs, verbose=verbose if root else 0,
                      meta=meta, group=group)
    if group is None:
        if resume and os.path.exists(checkpoint):
            _resume(run, checkpoint)
    elif resume:
        _resume_root(run, checkpoint, group)
    if run.initial_epoch == 0:
        model.reseed(seed)
    if group is not None:
        _dist.broadcast_model(group, model)
    for cb in cbs:
        cb.set_run(run)
    for cb in cbs:
        cb.on_train_begin()
    for epoch in range(run.initial_epoch, epochs):
        logs = _run_epoch(run, epoch, train, val, shuffle)
        for cb in cbs:
            cb.on_epoch_end(epoch, logs)
        if run.stop_training:
            break
    for cb in cbs:
        cb.on_train_end()
    return history


def _agree(group, model, train, val, **options) -> None:
    """Every rank must train the same spec on the same data with the same options."""
    facts = {"the spec's fingerprint": model.fingerprint or model.name,
             "the params' size": int(model._params.size),
             "the training data's digest": _dist.data_digest(train),
             "the validation data's digest": _dist.data_digest(val) if val is not None else None}
    facts.update({k.replace("_", " "): v for k, v in options.items()})
    group.agree(facts)


def _resume_root(run: TrainingRun, path, group) -> None:
    """Rank 0 resumes from its checkpoint (other hosts need not see the file) and sends every
    rank the epoch and callback state; the model itself is broadcast after."""
    failure, state = None, None
    if group.is_root and os.path.exists(path):
        try:
            _resume(run, path)
            state = (run.initial_epoch, run.callback_states())
        except _checkpoint.CheckpointError as e:
            failure = str(e)
    failure, state = group.broadcast((failure, state))
    if failure is not None:
        error = _checkpoint.CheckpointError(failure)
        error.every_rank = True
        raise error
    if state is not None and not group.is_root:
        run.initial_epoch = state[0]
        run.restore_callback_states(state[1])


def _resume(run: TrainingRun, path) -> None:
    """Load the checkpoint and continue after its epoch with its history and callback state."""
    extra = _checkpoint.read_extra(path)
    epoch = extra.get("epoch")
    if isinstance(epoch, bool) or not isinstance(epoch, int) or epoch < 0:
        raise _checkpoint.CheckpointError(
            f"cannot resume from {path}: it records no finished epoch (it was written by "
            f"Model.save or another tool, not by fit(checkpoint=...)); load it with "
            f"model.load({str(path)!r}) and call fit(..., initial_epoch=K) without resume=True")
    extra = _checkpoint.load(path, run.model)
    run.initial_epoch = epoch + 1
    run.restore_callback_states(extra.get("callbacks", {}))
    if extra.get("seed", run.seed) != run.seed:
        warnings.warn(f"resuming {path} (seed {extra['seed']}) with seed {run.seed}: the remaining "
                      f"epochs will shuffle differently from the original run", stacklevel=3)
    run.log(f"resumed from {path} after epoch {run.initial_epoch}")


def _run_epoch(run: TrainingRun, epoch: int, train: dict, val: dict | None, shuffle: bool) -> dict:
    """One epoch of training plus validation; raises TrainingDiverged before callbacks see bad state."""
    model, n = run.model, _num_examples(train)
    run.epoch = epoch
    for cb in run.callbacks:
        cb.on_epoch_begin(epoch)
    progress = _Progress(n, f"epoch {epoch + 1}/{run.epochs}", run.verbose)
    logs = None
    try:
        logs = _train_epoch(model, train, run, epoch, shuffle, progress)
        if val is not None:
            val_logs = _evaluate_arrays(model, val, run.batch_size, run.group)
            logs.update({f"val_{k}": v for k, v in val_logs.items()})
            if not math.isfinite(logs.get("val_loss", 0.0)):
                raise _diverged(run, epoch, int(model.step), logs["val_loss"],
                                f"validation loss was {logs['val_loss']}")
        _check_params_finite(run, epoch, logs["loss"])
        logs["lr"] = float(model.lr)
        return logs
    except KeyboardInterrupt as e:
        paths = [p for cb in run.callbacks if isinstance(cb, ModelCheckpoint) for p in cb.paths_on_disk()]
        if paths and hasattr(e, "add_note"):
            e.add_note(f"cnnc: interrupted in epoch {epoch + 1}; checkpoint {paths[0]} is intact")
        raise
    finally:
        progress.close(dict(logs or {}, _n=n))


def evaluate(model, x=None, y=None, *, data=None, batch_size=32, distributed=False) -> dict:
    """Loss and metrics over a whole dataset, batch means weighted by batch size; no updates.
    distributed=True: each rank evaluates its shard and every rank gets the totals."""
    arrays = _resolve(model, x, y, data, list(model.inputs), "evaluation")
    return _evaluate_arrays(model, arrays, batch_size, _group(distributed))


def predict(model, x=None, *, data=None, batch_size=32) -> dict:
    """forward() over `x` in batches; returns each output concatenated over all examples."""
    arrays = _resolve(model, x, None, data, list(model.feature_inputs), "prediction")
    n = _num_examples(arrays)
    outputs: dict[str, np.ndarray] = {}
    start = 0
    for batch in batches(arrays, batch_size):
        size = len(next(iter(batch.values())))
        for name, value in model.forward(**batch).items():
            value = np.asarray(value)
            if value.ndim == 0 or value.shape[0] != size:
                raise ValueError(f"output `{name}` has shape {value.shape}, not one row per example; "
                                 f"call model.forward for unbatched outputs")
            if name not in outputs:
                outputs[name] = np.empty((n, *value.shape[1:]), value.dtype)
            outputs[name][start:start + size] = value  # copies: C may reuse its output buffers
        start += size
    return outputs
