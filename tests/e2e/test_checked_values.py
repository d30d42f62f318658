"""Values a kernel indexes with are range-checked before any kernel runs: a bad label or id
is an InputError naming the input, the first bad value, its index and the valid range, and
the model is left exactly as it was."""
import numpy as np
import pytest

from cnnc.runtime import fit
from cnnc.runtime.model import InputError


def _state(m):
    return {k: v.copy() for k, v in m.params.items()}, {k: v.copy() for k, v in m.optimizer_state.items()}, m.step


def _same(m, before):
    params, opt, step = before
    assert m.step == step
    for k, v in params.items():
        np.testing.assert_array_equal(m.params[k], v, err_msg=k)
    for k, v in opt.items():
        np.testing.assert_array_equal(m.optimizer_state[k], v, err_msg=k)


@pytest.mark.parametrize("bad", [10, -1, 2**31 - 1])
def test_a_class_label_out_of_range_is_refused_before_the_update(compiled, bad):
    mod = compiled("digits")
    m = mod.Model(seed=0)
    rng = np.random.default_rng(0)
    x, y = rng.random((16, 8, 8, 1), dtype=np.float32), rng.integers(0, 10, 16).astype(np.int32)
    m.train_step(x=x, y=y)
    before = _state(m)
    y[5] = bad
    with pytest.raises(InputError) as e:
        m.train_step(x=x, y=y)
    assert str(e.value) == (f"input `y` holds {bad} at index [5], but class labels must lie in [0, 10) "
                            "(`labels` of `sparse_softmax_cross_entropy_with_logits`)")
    _same(m, before)
    with pytest.raises(InputError, match="class labels must lie in"):
        m.eval_step(x=x, y=y)
    with pytest.raises(InputError, match=r"holds .* at index \[5\]"):   # its place in x, not in a batch
        fit(m, x, y, epochs=1, batch_size=16, verbose=0)
    _same(m, before)
    m.forward(x=x)                      # features alone: no labels, nothing to check


def test_an_embedding_id_out_of_range_names_its_position(compiled):
    mod = compiled("textcnn")
    m = mod.Model(seed=0)
    name, (dtype, shape) = next((k, v) for k, v in m.inputs.items() if v[0] == "i32" and len(v[1]) == 2)
    vocab = next(b["high"] for b in m.manifest["bounds"] if b["input"] == name)
    ids = np.random.default_rng(1).integers(0, vocab, (4, shape[1])).astype(np.int32)
    m.forward(**{name: ids})
    ids[2, 3] = vocab
    with pytest.raises(InputError) as e:
        m.forward(**{name: ids})
    assert str(e.value) == (f"input `{name}` holds {vocab} at index [2, 3], but ids must lie in [0, {vocab}) "
                            "(`ids` of `embedding_lookup`)")
    ids[2, 3] = -vocab
    with pytest.raises(InputError, match=rf"holds {-vocab} at index \[2, 3\]"):
        m.forward(**{name: ids})


def test_labels_reaching_the_loss_through_a_reshape_are_checked_too(compiled):
    mod = compiled("""
model reshaped
input x: f32[N, 4]
input y: i32[N, 1]
param w: f32[4, 3] = zeros()
logits = matmul(x, w)
loss = reduce_mean(sparse_softmax_cross_entropy_with_logits(labels=reshape(y, [-1]), logits=logits))
optimizer = sgd(lr=0.1)
""")
    m = mod.Model(seed=0)
    assert m.manifest["bounds"] == [{"input": "y", "low": 0, "high": 3, "what": "class labels",
                                     "op": "sparse_softmax_cross_entropy_with_logits", "arg": "labels"}]
    with pytest.raises(InputError, match=r"`y` holds 3 at index \[1, 0\]"):
        m.train_step(x=np.zeros((2, 4), np.float32), y=np.array([[0], [3]], np.int32))


def test_nan_propagates_through_relu_as_in_tensorflow(compiled):
    mod = compiled("digits")
    m = mod.Model(seed=0)
    x = np.random.default_rng(0).random((4, 8, 8, 1), dtype=np.float32)
    x[1, 2, 3, 0] = np.nan
    out = m.forward(x=x)["logits"]
    assert np.isnan(out[1]).all()                 # relu(NaN) is NaN, not a confident 0
    assert np.isfinite(out[[0, 2, 3]]).all()      # the other examples are untouched


def test_a_nan_input_skips_the_step_and_names_the_input(compiled):
    from cnnc.runtime import NonFiniteError
    mod = compiled("digits")
    m = mod.Model(seed=0)
    rng = np.random.default_rng(0)
    x, y = rng.random((16, 8, 8, 1), dtype=np.float32), rng.integers(0, 10, 16).astype(np.int32)
    m.train_step(x=x, y=y)
    before, rng_state = _state(m), m.rng_state
    x[4, 1, 2, 0] = np.inf
    with pytest.raises(NonFiniteError) as e:
        m.train_step(x=x, y=y)
    assert str(e.value).startswith("input `x` holds inf at index [4, 1, 2, 0]; the step was skipped")
    assert e.value.input == "x"
    _same(m, before)                       # params, optimizer state and step untouched
    assert np.array_equal(m.rng_state, rng_state)
    x[4, 1, 2, 0] = 0.5
    m.train_step(x=x, y=y)                  # and training goes on from where it was
    assert m.step == before[2] + 1


def test_divergence_skips_the_step_and_says_so(compiled):
    from cnnc.runtime import NonFiniteError, TrainingDiverged
    mod = compiled("digits")
    m = mod.Model(seed=0)
    rng = np.random.default_rng(0)
    x, y = rng.random((16, 8, 8, 1), dtype=np.float32), rng.integers(0, 10, 16).astype(np.int32)
    m.params["fc2/weight"][...] = 3e38            # finite, but the logits overflow
    before = _state(m)
    with pytest.raises(NonFiniteError, match="training diverged: .* with finite inputs") as e:
        m.train_step(x=x, y=y)
    assert e.value.input is None
    _same(m, before)
    with pytest.raises(TrainingDiverged, match="training diverged"):
        fit(m, x, y, epochs=1, batch_size=16, verbose=0)
    _same(m, before)


def test_a_batch_whose_tensors_would_pass_2_31_elements_is_refused(compiled):
    mod = compiled("digits")
    m = mod.Model(seed=0)
    limit = m.manifest["batch_limit"]
    # the largest per-example buffer of digits is at least conv1's output (8*8*32 values) and,
    # here, the zero-bordered gradient a conv input gradient reads: at N examples it holds
    # per_example*N values, so one example more than the limit would wrap an int index
    assert limit["per_example"] >= 8 * 8 * 32
    assert limit["max_batch"] == (2**31 - 1) // limit["per_example"]
    n = limit["max_batch"] + 1
    x = np.lib.stride_tricks.as_strided(np.zeros(1, np.float32), (n, 8, 8, 1), (0, 0, 0, 0))
    with pytest.raises(InputError, match=rf"a batch of {n} examples is too large .* at most "
                                         rf"{limit['max_batch']:,} examples per call"):
        m.forward(x=x)
