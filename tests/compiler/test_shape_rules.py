"""Shape rules per op against plain formulas written here (nothing imported from compiler/),
by checking small generated specs; hypothesis explores sizes, strides, windows and paddings,
and where cheap the NumPy reference (tests/reference/numpy_ops.py) must produce exactly the
checked shape with N substituted."""
from __future__ import annotations

import math

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from cnnc import pipeline
from cnnc.spec.diagnostics import SpecError
from tests.reference import numpy_ops as ref

SETTINGS = settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])


# ---------------------------------------------------------------- reference formulas (TF's docs)

def out_len(size, k, s, padding):
    return math.ceil(size / s) if padding == "SAME" else math.ceil((size - k + 1) / s)


def same_pads(size, k, s):
    total = max((math.ceil(size / s) - 1) * s + k - size, 0)
    return total // 2, total - total // 2


def type_of(body: str, name: str = "y") -> str:
    """The checked type of output `name`, printed (f32[N, 14, 14, 8]), or the error codes."""
    try:
        g = pipeline.check(f"model t\n{body}\noutput {name}\n")
    except SpecError as e:
        return "error: " + ",".join(sorted({d.code for d in e.diagnostics if d.severity.value == "error"}))
    return str(g.outputs[name].type)


def f32(*dims) -> str:
    return "f32[" + ", ".join(map(str, dims)) + "]"


# ---------------------------------------------------------------- conv / pool

def test_examples_of_tf_padding():
    assert out_len(28, 3, 1, "SAME") == 28 and out_len(28, 3, 1, "VALID") == 26
    assert same_pads(5, 3, 2) == (1, 1) and same_pads(4, 3, 2) == (0, 1) and same_pads(6, 1, 2) == (0, 0)
    assert type_of('input x: f32[N, 28, 28, 1]\nparam w: f32[5, 5, 1, 32] = zeros()\n'
                   'y = conv2d(x, w, strides=[1, 2, 2, 1], padding="VALID")') == f32("N", 12, 12, 32)


@SETTINGS
@given(h=st.integers(1, 12), w=st.integers(1, 12), kh=st.integers(1, 5), kw=st.integers(1, 5),
       sh=st.integers(1, 4), sw=st.integers(1, 4), cin=st.integers(1, 3), cout=st.integers(1, 3),
       padding=st.sampled_from(["SAME", "VALID"]))
def test_conv2d_output_size(h, w, kh, kw, sh, sw, cin, cout, padding):
    got = type_of(f"input x: f32[N, {h}, {w}, {cin}]\nparam f: f32[{kh}, {kw}, {cin}, {cout}] = zeros()\n"
                  f"y = conv2d(x, f, strides=[1, {sh}, {sw}, 1], padding=\"{padding}\")")
    oh, ow = out_len(h, kh, sh, padding), out_len(w, kw, sw, padding)
    if oh <= 0 or ow <= 0:
        assert got == "error: window-empty"
        return
    assert got == f32("N", oh, ow, cout)
    rng = np.random.default_rng(0)
    out = ref.conv2d(rng.standard_normal((2, h, w, cin)), rng.standard_normal((kh, kw, cin, cout)),
                     (sh, sw), padding)
    assert out.shape == (2, oh, ow, cout)


@SETTINGS
@given(h=st.integers(1, 10), w=st.integers(1, 10), kh=st.integers(1, 4), kw=st.integers(1, 4),
       sh=st.integers(1, 3), sw=st.integers(1, 3), padding=st.sampled_from(["SAME", "VALID"]),
       op=st.sampled_from(["max_pool", "avg_pool"]))
def test_pool_output_size(h, w, kh, kw, sh, sw, padding, op):
    got = type_of(f"input x: f32[N, {h}, {w}, 2]\n"
                  f"y = {op}(x, ksize=[1, {kh}, {kw}, 1], strides=[{sh}, {sw}], padding=\"{padding}\")")
    oh, ow = out_len(h, kh, sh, padding), out_len(w, kw, sw, padding)
    if oh <= 0 or ow <= 0:
        assert got == "error: window-empty"
        return
    assert got == f32("N", oh, ow, 2)
    assert getattr(ref, op)(np.ones((1, h, w, 2)), (kh, kw), (sh, sw), padding).shape == (1, oh, ow, 2)


def test_pool_defaults_are_keras_like():
    # strides default to ksize, padding to VALID
    assert type_of("input x: f32[N, 9, 9, 1]\ny = max_pool(x, 2)") == f32("N", 4, 4, 1)


@SETTINGS
@given(h=st.integers(1, 8), w=st.integers(1, 8), k=st.integers(1, 4), s=st.integers(1, 3),
       padding=st.sampled_from(["SAME", "VALID"]), oh=st.integers(1, 30), ow=st.integers(1, 30))
def test_conv2d_transpose_accepts_exactly_the_sizes_conv2d_maps_back(h, w, k, s, padding, oh, ow):
    got = type_of(f"input x: f32[N, {h}, {w}, 2]\nparam f: f32[{k}, {k}, 3, 2] = zeros()\n"
                  f"y = conv2d_transpose(x, f, output_shape=[-1, {oh}, {ow}, 3], strides={s}, "
                  f"padding=\"{padding}\")")
    legal = out_len(oh, k, s, padding) == h and out_len(ow, k, s, padding) == w
    assert got == (f32("N", oh, ow, 3) if legal else "error: transpose-shape")
    if legal:
        rng = np.random.default_rng(0)
        out = ref.conv2d_transpose(rng.standard_normal((2, h, w, 2)), rng.standard_normal((k, k, 3, 2)),
                                   (2, oh, ow, 3), s, padding)
        assert out.shape == (2, oh, ow, 3)


def test_conv2d_transpose_error_lists_the_legal_sizes():
    with pytest.raises(SpecError) as e:
        pipeline.check("model t\ninput x: f32[N, 8, 8, 4]\nparam f: f32[3, 3, 2, 4] = zeros()\n"
                       "output y = conv2d_transpose(x, f, output_shape=[-1, 17, 16, 2], strides=2, padding=\"SAME\")\n")
    legal = [o for o in range(1, 40) if out_len(o, 3, 2, "SAME") == 8]
    assert e.value.diagnostics[0].help == "legal sizes: height " + " or ".join(map(str, legal))


# ---------------------------------------------------------------- reshape

@SETTINGS
@given(dims=st.lists(st.integers(1, 6), min_size=1, max_size=3), data=st.data())
def test_reshape_infers_minus_one_with_a_symbolic_batch(dims, data):
    per = math.prod(dims)
    divisors = [d for d in range(1, per + 1) if per % d == 0]
    inner = data.draw(st.sampled_from(divisors))
    got = type_of(f"input x: {f32('N', *dims)}\ny = reshape(x, [-1, {inner}])")
    assert got == f32("N" if per // inner == 1 else f"{per // inner}*N", inner)
    assert ref.reshape(np.zeros((3,) + tuple(dims)), (-1, inner)).shape == (3 * per // inner, inner)
    got = type_of(f"input x: {f32('N', *dims)}\ny = reshape(x, [N, -1])")
    assert got == f32("N", per)


def test_reshape_errors():
    assert type_of("input x: f32[N, 6]\ny = reshape(x, [-1, 4])") == "error: reshape-size"
    assert type_of("input x: f32[N, 6]\ny = reshape(x, [-1, -1])") == "error: reshape-ambiguous"
    assert type_of("input x: f32[N, 6]\ny = reshape(x, [N, -1, 4])") == "error: reshape-size"
    assert type_of("input x: f32[N, 6]\ny = reshape(x, [N, -1, 2])") == f32("N", 3, 2)
    assert type_of("input x: f32[N, 6]\ny = reshape(x, [2, 3])") == "error: reshape-batch"
    assert type_of("param x: f32[2, 6] = zeros()\ny = reshape(x, [-1, 4])") == f32(3, 4)


# ---------------------------------------------------------------- matmul, broadcasting

@pytest.mark.parametrize("ta", [False, True])
@pytest.mark.parametrize("tb", [False, True])
def test_matmul_with_transposes(ta, tb):
    m, k, n = 2, 3, 4
    a = (k, m) if ta else (m, k)
    b = (n, k) if tb else (k, n)
    body = (f"param a: {f32(*a)} = zeros()\nparam b: {f32(*b)} = zeros()\n"
            f"y = matmul(a, b, transpose_a={str(ta).lower()}, transpose_b={str(tb).lower()})")
    assert type_of(body) == f32(m, n)
    assert ref.matmul(np.zeros(a), np.zeros(b), ta, tb).shape == (m, n)
    bad = body.replace(f"b: {f32(*b)}", f"b: {f32(*(x + 1 if x == k else x for x in b))}")
    assert type_of(bad) == "error: matmul"


@SETTINGS
@given(a=st.lists(st.sampled_from([1, 2, 3]), max_size=4), b=st.lists(st.sampled_from([1, 2, 3]), max_size=4))
def test_broadcasting_agrees_with_numpy(a, b):
    try:
        want = f32(*np.broadcast_shapes(tuple(a), tuple(b)))
    except ValueError:
        want = "error: broadcast"
    assert type_of(f"param a: {f32(*a)} = zeros()\nparam b: {f32(*b)} = zeros()\ny = a + b") == want


def test_batch_dimension_broadcasts_only_against_itself_or_1():
    assert type_of("input a: f32[N, 3]\nparam b: f32[1, 3] = zeros()\ny = a * b") == f32("N", 3)
    assert type_of("input a: f32[N, 3]\nparam b: f32[2, 3] = zeros()\ny = a * b") == "error: broadcast"


def test_scalar_literals_take_the_other_operands_dtype():
    assert type_of("input a: i32[N]\ny = a * 2") == "i32[N]"
    assert type_of("input a: i32[N]\ny = a * 2.5") == "error: dtype"
    assert type_of("input a: f32[N]\ny = 1 - a") == "f32[N]"


# ---------------------------------------------------------------- reductions and axes

@SETTINGS
@given(dims=st.lists(st.integers(1, 4), min_size=1, max_size=4), data=st.data(), keep=st.booleans(),
       op=st.sampled_from(["reduce_sum", "reduce_mean", "reduce_max"]))
def test_reductions_with_keepdims_and_negative_axes(dims, data, keep, op):
    r = len(dims)
    axes = data.draw(st.lists(st.integers(-r, r - 1), max_size=r, unique_by=lambda a: a % r))
    want = getattr(ref, op)(np.ones(dims), axis=tuple(axes) if axes else None, keepdims=keep).shape
    axis = str(list(axes)) if axes else "None"
    got = type_of(f"param x: {f32(*dims)} = zeros()\ny = {op}(x, axis={axis}, keepdims={str(keep).lower()})")
    assert got == f32(*want)


def test_reduction_axis_errors():
    assert type_of("input x: f32[N, 3]\ny = reduce_sum(x, axis=2)") == "error: axis"
    assert type_of("input x: f32[N, 3]\ny = reduce_sum(x, axis=[1, -1])") == "error: axis"


def test_squeeze_expand_dims_transpose():
    assert type_of("input x: f32[N, 1, 3, 1]\ny = squeeze(x)") == f32("N", 3)
    assert type_of("input x: f32[N, 1, 3, 1]\ny = squeeze(x, axis=-1)") == f32("N", 1, 3)
    assert type_of("input x: f32[N, 3]\ny = squeeze(x, 1)") == "error: axis"
    for axis in range(-3, 3):
        want = ref.expand_dims(np.zeros((5, 3)), axis).shape
        got = type_of(f"input x: f32[N, 3]\ny = expand_dims(x, {axis})")
        assert got == f32(*("N" if d == 5 else d for d in want))
    assert type_of("input x: f32[N, 3]\ny = expand_dims(x, 3)") == "error: axis"
    assert type_of("input x: f32[N, 2, 3]\ny = transpose(x, [0, 2, 1])") == f32("N", 3, 2)
    assert type_of("input x: f32[N, 2, 3]\ny = transpose(x, [0, 2])") == "error: attr"


# ---------------------------------------------------------------- nn ops and losses

def test_embedding_one_hot_argmax_cast_equal():
    assert type_of("input ids: i32[N, 7]\nparam t: f32[100, 16] = zeros()\ny = embedding_lookup(t, ids)") \
        == f32("N", 7, 16)
    assert type_of("input ids: i32[N]\ny = one_hot(ids, 10)") == f32("N", 10)
    assert type_of("input x: f32[N, 10]\ny = argmax(x, 1)") == "i32[N]"
    assert type_of("input x: f32[N, 10]\ny = argmax(x, 0)") == "i32[10]"
    assert type_of("input x: f32[N, 10]\ny = cast(x, i32)") == "i32[N, 10]"
    assert type_of("input x: f32[N]\ninput z: f32[N]\ny = cast(equal(x, z), f32)") == "f32[N]"


def test_bias_add_dropout_l2_softmax():
    assert type_of("input x: f32[N, 4, 4, 8]\nparam b: f32[8] = zeros()\ny = bias_add(x, b)") == f32("N", 4, 4, 8)
    assert type_of("input x: f32[N, 4, 4, 8]\nparam b: f32[4] = zeros()\ny = bias_add(x, b)") == "error: bias"
    assert type_of("input x: f32[N, 5]\ny = dropout(x, 0.5)") == f32("N", 5)
    assert type_of("input x: f32[N, 5]\ny = dropout(x, 1.0)") == "error: attr"
    assert type_of("input x: f32[N, 5]\ny = l2_loss(x)") == "f32[]"
    assert type_of("input x: f32[N, 5]\ny = softmax(x, axis=0)") == f32("N", 5)


def test_losses():
    dense = "input l: f32[N, 5]\ninput z: f32[N, 5]\ny = softmax_cross_entropy_with_logits(labels=l, logits=z)"
    assert type_of(dense) == "f32[N]"
    assert type_of(dense.replace("l: f32[N, 5]", "l: f32[N, 4]")) == "error: labels"
    sparse = "input l: i32[N]\ninput z: f32[N, 5]\ny = sparse_softmax_cross_entropy_with_logits(labels=l, logits=z)"
    assert type_of(sparse) == "f32[N]"
    assert type_of(sparse.replace("l: i32[N]", "l: f32[N]")) == "error: dtype"
    assert type_of(sparse.replace("l: i32[N]", "l: i32[N, 5]")) == "error: labels"
    assert ref.sparse_softmax_cross_entropy_with_logits(np.zeros(3, int), np.zeros((3, 5))).shape == (3,)


@given(dims=st.lists(st.integers(1, 5), min_size=1, max_size=3), data=st.data(),
       mode=st.sampled_from(["CONSTANT", "reflect", "Symmetric"]))
@SETTINGS
def test_pad_adds_the_amounts_tf_allows(dims, data, mode):
    """tf.pad's limits: REFLECT pads less than the size, SYMMETRIC at most the size."""
    most = {"CONSTANT": 6, "REFLECT": None, "SYMMETRIC": None}[mode.upper()]
    pads = []
    for d in dims:
        top = most if most is not None else (d - 1 if mode.upper() == "REFLECT" else d)
        pads.append([data.draw(st.integers(0, top)), data.draw(st.integers(0, top))])
    text = f"input x: {f32('N', *dims)}\ny = pad(x, [[0, 0], {', '.join(map(str, pads))}], \"{mode}\")"
    want = [d + a + b for d, (a, b) in zip(dims, pads)]
    assert type_of(text) == f32("N", *want)
    np.testing.assert_equal(ref.pad(np.zeros((2, *dims)), [[0, 0]] + pads, mode).shape, (2, *want))
    too_far = [list(p) for p in pads]
    too_far[0][1] = dims[0] + (mode.upper() == "SYMMETRIC")
    if mode.upper() != "CONSTANT":
        bad = f"input x: {f32('N', *dims)}\ny = pad(x, [[0, 0], {', '.join(map(str, too_far))}], \"{mode}\")"
        assert type_of(bad) == "error: pad"


def test_pad_errors():
    x = "input x: f32[N, 4, 4, 3]\n"
    assert type_of(x + "y = pad(x, [[0, 0], [1, 1]])") == "error: pad"              # pairs != rank
    assert type_of(x + "y = pad(x, [[0, 0], [1, -1], [0, 0], [0, 0]])") == "error: pad"
    assert type_of(x + "y = pad(x, [[1, 0], [0, 0], [0, 0], [0, 0]])") == "error: pad"  # the batch
    assert type_of(x + "y = pad(x, [[0, 0], [0, 0], [0, 0], [0, 0]], \"wrap\")") == "error: attr"
    assert type_of(x + "y = pad(x, [1, 1])") == "error: attr"


def test_concat_sums_the_axis_and_reports_mismatches():
    x = "input a: f32[N, 4, 4, 3]\ninput b: f32[N, 4, 4, 5]\ninput c: f32[N, 2, 4, 3]\n"
    assert type_of(x + "y = concat([a, b, a], axis=-1)") == f32("N", 4, 4, 11)
    assert type_of(x + "y = concat(values=[a, c], axis=1)") == f32("N", 6, 4, 3)
    assert type_of(x + "y = concat([a, c], axis=-1)") == "error: concat"
    assert type_of(x + "y = concat([a, a], axis=0)") == "error: concat"       # the batch axis
    assert type_of(x + "y = concat(a, axis=-1)") == "error: not-tensor"       # not a list
    assert type_of(x + "y = concat([a, cast(a, i32)], 3)") == "error: dtype"
    with pytest.raises(SpecError) as e:
        pipeline.check(f"model t\n{x}y = concat([a, c], axis=-1)\noutput y\n")
    [d] = [d for d in e.value.diagnostics if d.severity.value == "error"]
    assert "[N, 4, 4, 3] and [N, 2, 4, 3] differ on axis 1 (4 vs 2)" in d.message and "axis 3" in d.message
    assert d.help and "[N, 4, 4, _]" in d.help


def test_activation_and_math_ops_keep_the_type():
    x = "input x: f32[N, 3, 2]\n"
    for op in ("relu6", "elu", "silu", "leaky_relu", "square", "sqrt", "rsqrt", "exp", "log", "abs"):
        assert type_of(x + f"y = {op}(x)") == f32("N", 3, 2), op
    assert type_of(x + "y = leaky_relu(features=x, alpha=0.3)") == f32("N", 3, 2)
    assert type_of(x + "y = leaky_relu(x, alpha=1.5)") == "error: attr"     # TF's kernel needs alpha <= 1
    assert type_of("input x: i32[N, 3]\ny = sqrt(x)") == "error: dtype"
