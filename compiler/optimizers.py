"""The optimizers a spec may name, with TF's hyperparameter names and defaults."""
from __future__ import annotations

OPTIMIZERS: dict[str, dict[str, float | None]] = {
    "sgd": {"lr": None},
    "momentum": {"lr": None, "momentum": None},
    "adam": {"lr": 0.001, "beta1": 0.9, "beta2": 0.999, "epsilon": 1e-7},
}
ALIASES = {"learning_rate": "lr", "beta_1": "beta1", "beta_2": "beta2"}


def check_values(kind: str, hyper: dict[str, float]) -> str | None:
    if hyper["lr"] <= 0:
        return f"`lr` must be positive, got {hyper['lr']:g}"
    for b in ("momentum", "beta1", "beta2"):
        if b in hyper and not 0 <= hyper[b] < 1:
            return f"`{b}` must be in [0, 1), got {hyper[b]:g}"
    if "epsilon" in hyper and hyper["epsilon"] <= 0:
        return f"`epsilon` must be positive, got {hyper['epsilon']:g}"
    return None
