"""cnnc: a compiler for convolutional networks.

`cnnc.check(path_or_text)` gives the typed graph of a spec (or raises SpecError with every
diagnostic); `cnnc.compile(path_or_text, out_dir=...)` builds it and returns the module."""
__version__ = "0.1.0"


def check(path_or_text, filename=None):
    from .pipeline import check as _check
    return _check(path_or_text, filename)


def compile(path_or_text, out_dir=None, emit_only=False, filename=None):
    from .pipeline import compile as _compile
    return _compile(path_or_text, out_dir=out_dir, emit_only=emit_only, filename=filename)
