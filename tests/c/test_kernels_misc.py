"""Elementwise, broadcasting, matmul, reduction, softmax, loss, shape and index kernels,
forward and backward, against the NumPy reference."""
from __future__ import annotations

import numpy as np
import pytest

from tests.reference import numpy_ops as ref
from tests.reference.finite_diff import numeric_vjp

from .conftest import N, Case, away_from_zero, check_case, ints, normal, run_zoo


def spread_with_nan(rng, shape):
    x = (4 * rng.standard_normal(shape)).astype(np.float32)
    x.reshape(-1, shape[-1])[:, 1] = np.nan
    return x


def positive(rng, shape):
    return rng.uniform(0.25, 3.0, shape).astype(np.float32)


def binary_cases():
    shapes = [((N, 3, 4), (N, 3, 4)), ((N, 3, 4), (4,)), ((N, 1, 4), (3, 1)), ((), (N, 5)), ((N, 5), ()),
              ((2, 1, 3), (4, 1)), ((N, 1, 3), (1, 4, 1))]
    cases = []
    for op in ("add", "sub", "mul", "div", "minimum", "maximum"):
        for i, (a, b) in enumerate(shapes):
            gen_b = away_from_zero if op == "div" else normal
            cases.append(Case(f"{op}_{i}", op, [(a, "f32", normal), (b, "f32", gen_b)], {},
                              ref=getattr(ref, op), vjp=getattr(ref, op + "_vjp")))
    return cases


def unary_cases():
    cases = []
    for op in ("relu", "sigmoid", "tanh"):
        cases.append(Case(op, op, [((N, 3, 5), "f32", normal)], {}, ref=getattr(ref, op), vjp=getattr(ref, op + "_vjp")))
    # activations over [-12, 12] (relu6's upper kink too) with a NaN in each row: TF keeps it NaN
    for op in ("relu6", "elu", "silu"):
        cases.append(Case(op, op, [((N, 3, 5), "f32", spread_with_nan)], {}, ref=getattr(ref, op),
                          vjp=getattr(ref, op + "_vjp")))
    for alpha in (0.2, 0.01):
        cases.append(Case(f"leaky_relu_{alpha}", "leaky_relu", [((N, 3, 5), "f32", spread_with_nan)],
                          dict(alpha=alpha), ref=lambda x, a=alpha: ref.leaky_relu(x, a),
                          vjp=lambda x, d, a=alpha: ref.leaky_relu_vjp(x, d, a)))
    for op in ("square", "exp", "abs"):
        cases.append(Case(op, op, [((N, 7), "f32", normal)], {}, ref=getattr(ref, op), vjp=getattr(ref, op + "_vjp")))
    for op in ("sqrt", "rsqrt", "log"):
        cases.append(Case(op, op, [((N, 7), "f32", positive)], {}, ref=getattr(ref, op), vjp=getattr(ref, op + "_vjp")))
    cases.append(Case("neg", "neg", [((N, 7), "f32", normal)], {}, ref=lambda x: -x.astype(np.float64),
                      vjp=lambda x, d: -d.astype(np.float64)))
    cases.append(Case("bias_add", "bias_add", [((N, 2, 3, 5), "f32", normal), ((5,), "f32", normal)], {},
                      ref=ref.bias_add, vjp=ref.bias_add_vjp))
    cases.append(Case("l2_loss", "l2_loss", [((N, 6), "f32", normal)], {}, ref=ref.l2_loss, vjp=ref.l2_loss_vjp))
    # several 4096-value chunks with ragged ends, per-example and fixed sizes
    cases.append(Case("l2_loss_chunks", "l2_loss", [((N, 3001), "f32", normal)], {}, ref=ref.l2_loss,
                      vjp=ref.l2_loss_vjp))
    cases.append(Case("l2_loss_fixed", "l2_loss", [((70, 101), "f32", normal)], {}, ref=ref.l2_loss,
                      vjp=ref.l2_loss_vjp))
    return cases


def matmul_cases():
    cases = []
    for ta in (False, True):
        for tb in (False, True):
            a = (5, N) if ta else (N, 5)
            b = (3, 5) if tb else (5, 3)
            cases.append(Case(f"matmul_ta{int(ta)}_tb{int(tb)}", "matmul", [(a, "f32", normal), (b, "f32", normal)],
                              dict(transpose_a=ta, transpose_b=tb),
                              ref=lambda x, y, ta=ta, tb=tb: ref.matmul(x, y, ta, tb),
                              vjp=lambda x, y, d, ta=ta, tb=tb: ref.matmul_vjp(x, y, d, ta, tb)))
    return cases


def reduce_cases():
    cases = []
    for op in ("reduce_sum", "reduce_mean", "reduce_max"):
        for i, (axis, keep) in enumerate([(None, False), ((1,), False), ((0, 2), True), ((-1,), False), ((0,), True)]):
            cases.append(Case(f"{op}_{i}", op, [((N, 3, 4), "f32", normal)], dict(axis=axis, keepdims=keep),
                              ref=lambda x, op=op, axis=axis, keep=keep: getattr(ref, op)(x, axis, keep),
                              vjp=lambda x, d, op=op, axis=axis, keep=keep: getattr(ref, op + "_vjp")(x, d, axis, keep)))
    # over the leading axes into a row of 32 or 48 (bias gradients: the row-split kernel)
    for op in ("reduce_sum", "reduce_mean", "reduce_max"):
        for shape, axis in [((N, 3, 5, 32), (0, 1, 2)), ((N, 48), (0,))]:
            cases.append(Case(f"{op}_rows_{shape[-1]}", op, [(shape, "f32", normal)], dict(axis=axis, keepdims=False),
                              ref=lambda x, op=op, axis=axis: getattr(ref, op)(x, axis, False),
                              vjp=lambda x, d, op=op, axis=axis: getattr(ref, op + "_vjp")(x, d, axis, False)))
    # reduce_max with ties: the gradient is shared equally among the maxima
    tied = lambda rng, shape: rng.integers(0, 3, shape).astype(np.float32)
    cases.append(Case("reduce_max_ties", "reduce_max", [((N, 6), "f32", tied)], dict(axis=(1,), keepdims=False),
                      ref=lambda x: ref.reduce_max(x, 1), vjp=lambda x, d: ref.reduce_max_vjp(x, d, 1)))
    return cases


def axis_cases():
    cases = []
    for axis in (-1, 1, 0):
        cases.append(Case(f"softmax_axis{axis}", "softmax", [((N, 4, 3), "f32", normal)], dict(axis=axis),
                          ref=lambda x, a=axis: ref.softmax(x, a), vjp=lambda x, d, a=axis: ref.softmax_vjp(x, d, a)))
        # log_softmax has no reference vjp: float64 central differences of the reference forward
        cases.append(Case(f"log_softmax_axis{axis}", "log_softmax", [((N, 4, 3), "f32", normal)], dict(axis=axis),
                          ref=lambda x, a=axis: ref.log_softmax(x, a),
                          vjp=lambda x, d, a=axis: numeric_vjp(lambda t: ref.log_softmax(t, a), [x], d, eps=1e-4)[0]))
        cases.append(Case(f"argmax_axis{axis}", "argmax", [((N, 4, 3), "f32", normal)], dict(axis=axis),
                          ref=lambda x, a=axis: ref.argmax(x, a)))
    return cases


def loss_cases():
    def soft_labels(rng, shape):
        p = rng.uniform(0.1, 1.0, shape)
        return (p / p.sum(-1, keepdims=True)).astype(np.float32)
    return [
        Case("xent", "softmax_cross_entropy_with_logits", [((N, 5), "f32", soft_labels), ((N, 5), "f32", normal)], {},
             ref=ref.softmax_cross_entropy_with_logits, vjp=ref.softmax_cross_entropy_with_logits_vjp),
        Case("xent_unnormalized_labels", "softmax_cross_entropy_with_logits",
             [((N, 4), "f32", lambda r, s: r.uniform(0, 2, s).astype(np.float32)), ((N, 4), "f32", normal)], {},
             ref=ref.softmax_cross_entropy_with_logits, vjp=ref.softmax_cross_entropy_with_logits_vjp),
        Case("sparse_xent", "sparse_softmax_cross_entropy_with_logits", [((N,), "i32", ints(0, 6)), ((N, 6), "f32", normal)],
             {}, ref=ref.sparse_softmax_cross_entropy_with_logits,
             vjp=lambda y, x, d: (None, ref.sparse_softmax_cross_entropy_with_logits_vjp(y, x, d))),
    ]


def shape_cases():
    return [
        Case("transpose_021", "transpose", [((N, 3, 4), "f32", normal)], dict(perm=(0, 2, 1)),
             ref=lambda x: ref.transpose(x, (0, 2, 1)), vjp=lambda x, d: ref.transpose_vjp(x, d, (0, 2, 1))),
        Case("transpose_120", "transpose", [((N, 3, 4), "f32", normal)], dict(perm=(1, 2, 0)),
             ref=lambda x: ref.transpose(x, (1, 2, 0)), vjp=lambda x, d: ref.transpose_vjp(x, d, (1, 2, 0))),
        Case("reshape", "reshape", [((N, 3, 4), "f32", normal)], dict(shape=(-1, 12)),
             ref=lambda x: ref.reshape(x, (-1, 12)), vjp=ref.reshape_vjp),
        Case("expand_dims", "expand_dims", [((N, 3), "f32", normal)], dict(axis=1),
             ref=lambda x: ref.expand_dims(x, 1), vjp=lambda x, d: ref.expand_dims_vjp(x, d, 1)),
        Case("squeeze", "squeeze", [((N, 1, 3), "f32", normal)], dict(axis=(1,)),
             ref=lambda x: ref.squeeze(x, 1), vjp=lambda x, d: ref.squeeze_vjp(x, d, 1)),
        Case("embedding_lookup", "embedding_lookup", [((7, 3), "f32", normal), ((N, 4), "i32", ints(0, 7))], {},
             ref=ref.embedding_lookup, vjp=lambda t, i, d: (ref.embedding_lookup_vjp(t, i, d), None)),
        Case("one_hot", "one_hot", [((N, 3), "i32", ints(-1, 6))], dict(depth=5), ref=lambda i: ref.one_hot(i, 5)),
        Case("equal_i32", "equal", [((N, 4), "i32", ints(0, 3)), ((4,), "i32", ints(0, 3))], {}, ref=ref.equal),
        Case("cast_f32_i32", "cast", [((N, 5), "f32", lambda r, s: (3 * r.standard_normal(s)).astype(np.float32))],
             dict(dtype="i32"), ref=lambda x: ref.cast(x, "i32")),
        Case("cast_i32_f32", "cast", [((N, 5), "i32", ints(-9, 9))], dict(dtype="f32"), ref=lambda x: ref.cast(x, "f32")),
    ]


def pad_cases():
    cases = []
    for mode, shape, pads in [("CONSTANT", (N, 3, 4, 2), ((0, 0), (1, 2), (0, 3), (0, 0))),
                              ("CONSTANT", (N, 5), ((0, 0), (4, 1))),
                              ("REFLECT", (N, 4, 5, 3), ((0, 0), (3, 1), (2, 4), (0, 0))),
                              ("REFLECT", (N, 3, 4), ((0, 0), (0, 0), (3, 3))),
                              ("SYMMETRIC", (N, 3, 4, 2), ((0, 0), (3, 2), (1, 4), (1, 2))),
                              ("SYMMETRIC", (2, 3), ((2, 2), (3, 0)))]:
        value = 1.5 if mode == "CONSTANT" else 0.0
        cases.append(Case(f"pad_{mode.lower()}_{len(cases)}", "pad", [(shape, "f32", normal)],
                          dict(paddings=pads, mode=mode, constant_values=value),
                          ref=lambda x, p=pads, m=mode, v=value: ref.pad(x, p, m, v),
                          vjp=lambda x, d, p=pads, m=mode: ref.pad_vjp(x, d, p, m)))
    return cases


def concat_cases():
    cases = []
    for shapes, axis in [([(N, 3, 4, 2), (N, 3, 4, 5), (N, 3, 4, 1)], -1), ([(N, 2, 3), (N, 5, 3)], 1),
                         ([(3, N, 2), (1, N, 2)], 0), ([(N, 4)], 1)]:
        cases.append(Case(f"concat_{len(cases)}", "concat", [(s, "f32", normal) for s in shapes], dict(axis=axis),
                          ref=lambda *xs, a=axis: ref.concat(xs, a),
                          vjp=lambda *xs, a=axis: ref.concat_vjp(xs[:-1], xs[-1], a)))
    return cases


CASES = binary_cases() + unary_cases() + matmul_cases() + reduce_cases() + axis_cases() + loss_cases() + shape_cases() + pad_cases() + concat_cases()


@pytest.fixture(scope="module")
def zoo(out_root):
    return run_zoo("misc_zoo", CASES, out_root, n=3)


@pytest.mark.parametrize("case", CASES, ids=lambda c: c.id)
def test_kernels(zoo, case):
    check_case(zoo, case)
