"""Training curves as a PNG: loss and each metric per epoch, train and validation side by side.

matplotlib is an optional extra; without it plot_history warns and returns None."""

from __future__ import annotations

import os
import warnings


def plot_history(history, path_png):
    """Write one panel per logged quantity (loss, metrics; `val_` curves overlaid) to `path_png`.

    `history` is a History or its `.history` dict. Returns the path, or None without matplotlib."""
    try:
        from matplotlib.backends.backend_agg import FigureCanvasAgg
        from matplotlib.figure import Figure
    except ImportError:
        warnings.warn("plot_history needs matplotlib (pip install 'cnnc[plot]'); no plot written",
                      stacklevel=2)
        return None
    logs = getattr(history, "history", history)
    epochs = list(getattr(history, "epoch", []))
    names = [k for k in logs if not k.startswith("val_") and k != "lr"]
    names += [k[4:] for k in logs if k.startswith("val_") and k[4:] not in logs]  # val-only entries
    if not names:
        raise ValueError("history has no epochs to plot")
    # Figure + Agg canvas directly: no pyplot, so no global backend switch and no GUI.
    fig = Figure(figsize=(4.5 * len(names), 3.5), layout="constrained")
    FigureCanvasAgg(fig)
    for i, name in enumerate(names, start=1):
        ax = fig.add_subplot(1, len(names), i)
        for key, label in ((name, "train"), (f"val_{name}", "validation")):
            if key in logs:
                ys = logs[key]
                xs = [e + 1 for e in epochs] if len(epochs) == len(ys) else range(1, len(ys) + 1)
                ax.plot(list(xs), ys, marker="o", markersize=3, label=label)
        ax.set_title(name)
        ax.set_xlabel("epoch")
        ax.grid(alpha=0.3)
        ax.legend()
    path_png = os.fspath(path_png)
    os.makedirs(os.path.dirname(os.path.abspath(path_png)), exist_ok=True)
    fig.savefig(path_png, dpi=100)
    return path_png
