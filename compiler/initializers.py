"""The initializers a param may name, with their arguments and defaults (TF's names)."""
from __future__ import annotations

INITIALIZERS: dict[str, dict[str, float | None]] = {
    "zeros": {},
    "ones": {},
    "constant": {"value": None},                       # None: required
    "random_normal": {"mean": 0.0, "stddev": 1.0},
    "truncated_normal": {"mean": 0.0, "stddev": 1.0},  # redraws values beyond two stddev
    "random_uniform": {"minval": 0.0, "maxval": 1.0},
    "glorot_uniform": {},
    "glorot_normal": {},
    "he_normal": {},
}

# Positional order for each initializer's arguments.
ORDER = {name: tuple(args) for name, args in INITIALIZERS.items()}


def check_values(kind: str, args: dict[str, float]) -> str | None:
    """A message if the arguments make no sense, else None."""
    if "stddev" in args and args["stddev"] <= 0:
        return f"`stddev` must be positive, got {args['stddev']:g}"
    if kind == "random_uniform" and args["minval"] >= args["maxval"]:
        return f"`minval` ({args['minval']:g}) must be below `maxval` ({args['maxval']:g})"
    return None
