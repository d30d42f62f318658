"""NumPy stand-ins for compiled models, implementing the runtime's model protocol exactly."""

import hashlib

import numpy as np


def _check(model, batch, names):
    """Like the compiled model: exact names, dtypes and shapes, or an error naming the input."""
    if sorted(batch) != sorted(names):
        raise ValueError(f"expected inputs {sorted(names)}; got {sorted(batch)}")
    for k in names:
        dtype, shape = model.inputs[k]
        v = batch[k]
        want = np.float32 if dtype == "f32" else np.int32
        if v.dtype != want or v.ndim != len(shape) or any(
                d is not None and d != s for d, s in zip(shape, v.shape)):
            raise ValueError(f"input `{k}` expects {dtype}{shape}; got {v.dtype}{v.shape}")


class SoftmaxRegression:
    """Softmax regression on x [N, h, w, c]: momentum (or plain) SGD and inverted dropout on x.

    The dropout mask comes from a counter-seeded generator whose counter is `rng_state`, so
    reseed/rng_state behave like the compiled model's. nan_at_step=k poisons the k-th update."""

    def __init__(self, *, seed=0, lr=0.5, label="i32", n_classes=10, hw=(8, 8), channels=1,
                 optimizer="momentum", momentum=0.9, dropout=0.1, nan_at_step=None,
                 interrupt_at_step=None, name="softmax"):
        rng = np.random.default_rng(seed)
        n_in = hw[0] * hw[1] * channels
        self.name = name
        self.fingerprint = hashlib.sha256(
            repr((name, n_in, n_classes, label, optimizer)).encode()).hexdigest()[:16]
        self.params = {
            "dense/weight": rng.normal(0, 0.01, (n_in, n_classes)).astype(np.float32),
            "dense/bias": np.zeros(n_classes, np.float32),
        }
        self.optimizer_state = ({f"momentum/v/{k}": np.zeros_like(v) for k, v in self.params.items()}
                                if optimizer == "momentum" else {})
        self.momentum = np.float32(momentum)
        self.step = 0
        self.lr = lr
        self.n_classes = n_classes
        self.inputs = {"x": ("f32", (None, *hw, channels)),
                       "y_true": ("i32", (None,)) if label == "i32" else ("f32", (None, n_classes))}
        self.feature_inputs, self.label_inputs = ["x"], ["y_true"]
        self.outputs, self.metric_names = ["probs"], ["accuracy"]
        self.dropout = dropout
        self.nan_at_step, self.interrupt_at_step = nan_at_step, interrupt_at_step
        self._rng = np.zeros(1, np.uint64)

    @property
    def rng_state(self):
        return self._rng.copy()

    @rng_state.setter
    def rng_state(self, value):
        self._rng[...] = value

    def reseed(self, seed):
        self._rng[...] = seed

    def _logits(self, x):
        return x.reshape(len(x), -1) @ self.params["dense/weight"] + self.params["dense/bias"]

    def _ids(self, y):
        return y if y.ndim == 1 else y.argmax(axis=1)

    def _loss(self, logits, ids):
        z = logits - logits.max(axis=1, keepdims=True)
        logp = z - np.log(np.exp(z).sum(axis=1, keepdims=True))
        return logp, float(-logp[np.arange(len(ids)), ids].mean())

    def train_step(self, **batch):
        _check(self, batch, list(self.inputs))
        if self.interrupt_at_step == self.step + 1:
            raise KeyboardInterrupt
        x = batch["x"].reshape(len(batch["x"]), -1)
        ids = self._ids(batch["y_true"])
        if self.dropout:
            rng = np.random.default_rng(int(self._rng[0]))
            self._rng[0] += np.uint64(1)
            keep = rng.random(x.shape) >= self.dropout
            x = x * keep.astype(np.float32) / np.float32(1 - self.dropout)
        logits = self._logits(x)
        logp, loss = self._loss(logits, ids)
        g = np.exp(logp)
        g[np.arange(len(ids)), ids] -= 1
        g /= np.float32(len(ids))
        grads = {"dense/weight": x.T @ g, "dense/bias": g.sum(axis=0)}
        lr = np.float32(self.lr)
        for k, grad in grads.items():
            if self.optimizer_state:
                v = self.optimizer_state[f"momentum/v/{k}"]
                v *= self.momentum
                v += grad
                grad = v
            self.params[k] -= lr * grad
        self.step += 1
        if self.nan_at_step == self.step:
            self.params["dense/weight"][...] = np.nan
            loss = float("nan")
        return {"loss": loss, "accuracy": float((logits.argmax(axis=1) == ids).mean())}

    def eval_step(self, **batch):
        _check(self, batch, list(self.inputs))
        logits = self._logits(batch["x"])
        ids = self._ids(batch["y_true"])
        _, loss = self._loss(logits, ids)
        return {"loss": loss, "accuracy": float((logits.argmax(axis=1) == ids).mean())}

    def forward(self, **features):
        _check(self, features, self.feature_inputs)
        z = self._logits(features["x"])
        e = np.exp(z - z.max(axis=1, keepdims=True))
        return {"probs": e / e.sum(axis=1, keepdims=True)}


class ScriptedModel:
    """A model whose validation loss and accuracy per epoch follow given lists (one step per epoch
    with 4 examples and batch_size=4); its one param records the step, to test weight restoring."""

    def __init__(self, val_losses, val_accs=None, name="scripted"):
        self.name, self.fingerprint = name, "scripted-fp"
        self.params = {"w": np.zeros(1, np.float32)}
        self.optimizer_state = {}
        self.step, self.lr = 0, 0.1
        self.inputs = {"x": ("f32", (None, 2)), "y": ("i32", (None,))}
        self.feature_inputs, self.label_inputs = ["x"], ["y"]
        self.outputs, self.metric_names = ["out"], ["accuracy"]
        self.val_losses = list(val_losses)
        self.val_accs = list(val_accs) if val_accs else [0.5] * len(self.val_losses)
        self.lrs_seen = []
        self.rng_state = np.zeros(1, np.uint64)

    def reseed(self, seed):
        self.rng_state = np.array([seed], np.uint64)

    def train_step(self, **batch):
        self.lrs_seen.append(self.lr)
        self.step += 1
        self.params["w"][0] = self.step
        return {"loss": 1.0 / self.step, "accuracy": 0.5}

    def eval_step(self, **batch):
        e = self.step - 1
        return {"loss": self.val_losses[e], "accuracy": self.val_accs[e]}

    def forward(self, **features):
        return {"out": features["x"].sum(axis=1)}


def scripted_data():
    x = np.zeros((4, 2), np.float32)
    y = np.zeros(4, np.int32)
    return x, y
