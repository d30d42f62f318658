"""Hand-written peer implementations of the benchmark models.

Every peer module imports its framework lazily and exposes the same small API:

    available() -> (bool, reason)
    version() -> str
    LAYOUTS: tuple of layout names it supports
    TRAINS: whether it can run training steps
    train_step_fn(model, batch, layout) -> callable   (one optimiser step)
    infer_fn(model, batch, layout) -> callable         (one forward pass)
"""
