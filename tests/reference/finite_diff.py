"""Finite-difference vector-Jacobian products, for checking analytic gradients.

The scalar probed is  L(inputs) = sum(f(*inputs) * dout),  whose gradient wrt each input
is exactly the vjp of f at dout. Central differences in float64 have truncation error
O(eps^2 * |L'''|) and rounding error O(1e-16 * |L| / eps).
"""

from __future__ import annotations

import numpy as np


def _is_float(a) -> bool:
    return np.issubdtype(np.asarray(a).dtype, np.floating)


def numeric_vjp(f, inputs, dout, eps=1e-3):
    """Central-difference gradient of sum(f(*inputs) * dout) wrt each float input.

    Inputs are promoted to float64 copies; integer inputs (ids, labels) are passed through
    unchanged and get None in the result.
    """
    xs = [np.array(a, dtype=np.float64) if _is_float(a) else np.asarray(a) for a in inputs]
    dout = np.asarray(dout, dtype=np.float64)

    def objective():
        return float(np.sum(np.asarray(f(*xs), dtype=np.float64) * dout))

    grads = []
    for x in xs:
        if not _is_float(x):
            grads.append(None)
            continue
        g = np.zeros_like(x)
        for idx in np.ndindex(x.shape):
            saved = x[idx]
            x[idx] = saved + eps
            plus = objective()
            x[idx] = saved - eps
            minus = objective()
            x[idx] = saved
            g[idx] = (plus - minus) / (2.0 * eps)
        grads.append(g)
    return grads


def _as_list(grads, n):
    if isinstance(grads, (tuple, list)):
        return list(grads)
    if n != 1:
        raise AssertionError(f"vjp returned one gradient for {n} inputs")
    return [grads]


def check_vjp(f, vjp, inputs, rng, rtol=1e-6, atol=1e-8, eps=1e-6):
    """Assert vjp(*inputs, dout) matches numeric_vjp for a random dout drawn from rng.

    Passes when |analytic - numeric| <= atol + rtol * |numeric| for every element of every
    float input's gradient; otherwise raises AssertionError naming the input, the worst
    element's index and both numbers. Returns the analytic gradients (list, None for
    integer inputs).
    """
    out = np.asarray(f(*inputs), dtype=np.float64)
    dout = np.asarray(rng.standard_normal(out.shape), dtype=np.float64)
    analytic = _as_list(vjp(*inputs, dout), len(inputs))
    numeric = numeric_vjp(f, inputs, dout, eps=eps)
    if len(analytic) != len(numeric):
        raise AssertionError(f"vjp returned {len(analytic)} gradients for {len(numeric)} inputs")
    for k, (a, n) in enumerate(zip(analytic, numeric)):
        if n is None:
            continue
        if a is None:
            raise AssertionError(f"input {k}: vjp gave no gradient for a float input")
        a = np.asarray(a, dtype=np.float64)
        if a.shape != n.shape:
            raise AssertionError(f"input {k}: gradient shape {a.shape}, expected {n.shape}")
        if a.size == 0:
            continue
        excess = np.abs(a - n) - (atol + rtol * np.abs(n))
        worst = np.unravel_index(np.argmax(excess), a.shape)
        if excess[worst] > 0 or not np.all(np.isfinite(a)):
            raise AssertionError(
                f"input {k}: gradient mismatch at index {tuple(int(i) for i in worst)}: "
                f"analytic {a[worst]!r}, numeric {n[worst]!r} "
                f"(|diff| {abs(a[worst] - n[worst]):.3g} > atol {atol:g} + rtol {rtol:g} * |numeric|)"
            )
    return analytic
