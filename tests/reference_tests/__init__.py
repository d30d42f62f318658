"""Tests of the NumPy reference ops (the oracle must itself be right)."""
