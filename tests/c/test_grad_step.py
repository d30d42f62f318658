"""grad_step + apply_update, the two halves of train_step that data-parallel training runs
around its allreduce: together they are train_step bit for bit, and a slice of a batch given
its offset draws exactly its part of the whole batch's dropout mask."""
from __future__ import annotations

import numpy as np
import pytest

from cnnc.compiler.ir import Optimizer
from cnnc.runtime.model import NonFiniteError

from .conftest import batch, build_once, small_cnn

ADAM = Optimizer("adam", (("lr", 0.01), ("beta1", 0.9), ("beta2", 0.999), ("epsilon", 1e-7)))


@pytest.fixture(scope="module")
def dropped(out_root):
    return build_once("dropped_adam", small_cnn("dropped_adam", ADAM, dropout=0.5), out_root)


def test_the_two_halves_are_train_step_bit_for_bit(dropped):
    a, b = dropped.Model(seed=1), dropped.Model(seed=1)
    data = batch(8)
    for _ in range(3):
        want = a.train_step(**data)
        assert b.grad_step(0, **data) == 8
        assert b.apply_update() == want
    assert (a.step, list(a.rng_state)) == (b.step, list(b.rng_state))
    for k in a.params:
        np.testing.assert_array_equal(a.params[k], b.params[k])
        np.testing.assert_array_equal(a.optimizer_state[f"m/{k}"], b.optimizer_state[f"m/{k}"])


def test_slices_with_their_offsets_sum_to_the_whole_batch(dropped):
    """Gradients are batch means: the whole batch's is the size-weighted mean of its slices'.
    That holds only if every slice draws its own part of the global mask (tolerance: float32
    sums in another order, relative to the largest gradient)."""
    m = dropped.Model(seed=1)
    data = batch(8)
    m.grad_step(0, **data)
    whole = m.grad_slab.copy()
    parts = []
    for first, stop in ((0, 3), (3, 8)):                  # unequal slices, weighted by size
        m.grad_step(first, **{k: v[first:stop] for k, v in data.items()})
        parts.append(m.grad_slab * ((stop - first) / 8))
    np.testing.assert_allclose(parts[0] + parts[1], whole, rtol=0, atol=1e-6 * np.abs(whole).max())
    m.grad_step(0, **{k: v[3:] for k, v in data.items()})  # the same slice at the wrong offset
    wrong = parts[0] + m.grad_slab * (5 / 8)
    assert np.abs(wrong - whole).max() > 1e-3 * np.abs(whole).max()


def test_apply_update_skips_a_non_finite_step(dropped):
    m = dropped.Model(seed=1)
    before = {k: v.copy() for k, v in m.params.items()}
    m.grad_step(0, **batch(4))
    m.grad_slab[0] = np.nan
    with pytest.raises(NonFiniteError, match="skipped"):
        m.apply_update()
    assert m.step == 0 and m.rng_state[1] == 0
    for k in before:
        np.testing.assert_array_equal(before[k], m.params[k])
