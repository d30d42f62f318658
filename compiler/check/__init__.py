"""The type checker and elaborator: a desugared spec -> a typed graph, with every diagnostic.

  checker.py   driver, statements, scopes, names         (the Checker)
  exprs.py     tensor expressions, applying ops, op diagnostics
  values.py    fixed values, type expressions, const arrays, Lit / Poison
  sugar.py     layer calls: naming, scopes, L2 penalties, the --desugar record
  binder.py    THE argument binder (ops, layers, initializers, optimizers)
  kinds.py     the argument kinds table
  layers.py    the layer table: pure builders
  messages.py  wording: signatures, op prefixes, window traces"""
from __future__ import annotations

from .checker import Checked, check

__all__ = ["Checked", "check"]
