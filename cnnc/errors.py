"""Errors of the cnnc tool itself, and how an internal bug is reported to a person."""
from __future__ import annotations

import sys
import traceback


class CnncError(Exception):
    """An error with a message meant for the user (bad file, bad option, failed build)."""


def __getattr__(name):
    # InputError lives with the runtime (which must not import the compiler side); re-exported here.
    if name == "InputError":
        from .runtime.model import InputError
        return InputError
    raise AttributeError(name)


def report_bug(exc: BaseException, debug: bool = False) -> None:
    print(f"cnnc: internal error: {type(exc).__name__}: {exc}", file=sys.stderr)
    print("This is a bug in cnnc, not in your spec. Please report it with the spec that caused it.",
          file=sys.stderr)
    if debug:
        traceback.print_exception(exc, file=sys.stderr)
    else:
        print("(run with `cnnc --debug ...` to see the traceback)", file=sys.stderr)
