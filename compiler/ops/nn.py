"""Layers' building blocks: bias_add, matmul, dropout, embedding_lookup, one_hot, l2_loss."""
from __future__ import annotations

from ..types import TensorType, scalar
from . import Arg, OpDef, OpError, register
from .common import need_dtype, need_float, need_rank, static_dim
from ..kernel import Kernel, Lin, c_float, elementwise, numel, record, threads_when


def bias_add_shape(ins, attrs):
    x, bias = ins
    need_float(x, "value"), need_float(bias, "bias"), need_rank(bias, 1, "bias")
    if x.rank < 1 or x.shape[-1] != bias.shape[0]:
        raise OpError(f"`bias` has {bias.shape[0]} entries but the last axis of `value` has "
                      f"{x.shape[-1] if x.rank else 'none'}", arg="bias", code="bias",
                      notes=[f"`{{value}}` is {x}", f"`{{bias}}` is {bias}"],
                      help=f"declare `{{bias}}` as f32[{x.shape[-1]}]" if x.rank else None)
    return x


def bias_add_vjp(b, node, dout):
    x = node.inputs[0]
    axes = tuple(range(x.type.rank - 1))
    return dout, b.op("reduce_sum", dout, axis=axes, keepdims=False)


register(OpDef("bias_add", (Arg("value", aliases=("input", "x")), Arg("bias")), bias_add_shape,
               bias_add_vjp, kernel=elementwise("{1} + {2}"), doc="add a bias along the last axis"))


def matmul_shape(ins, attrs):
    a, b = ins
    need_rank(a, 2, "a"), need_rank(b, 2, "b"), need_float(a, "a"), need_float(b, "b")
    ta, tb = attrs["transpose_a"], attrs["transpose_b"]
    m, ka = (a.shape[1], a.shape[0]) if ta else a.shape
    kb, n = (b.shape[1], b.shape[0]) if tb else b.shape
    if ka != kb:
        ra, rb = (" (transposed)" if ta else ""), (" (transposed)" if tb else "")
        raise OpError(f"`matmul` inner dimensions differ: `{{a}}`{ra} has {ka} columns but "
                      f"`{{b}}`{rb} has {kb} rows", arg="b", code="matmul",
                      notes=[f"`{{a}}` is {a}" + (", read as [k, m] -> [m, k]" if ta else ""),
                             f"`{{b}}` is {b}" + (", read as [n, k] -> [k, n]" if tb else ""),
                             f"[m, k] x [k, n] needs the two k to match: {ka} != {kb}"],
                      help=f"declare `{{b}}` as f32[{n}, {ka}]" if tb else f"declare `{{b}}` as f32[{ka}, {n}]")
    out = TensorType("f32", (m, n))
    if len(out.sym_axes) > 1:
        raise OpError(f"`matmul` result [{m}, {n}] would have two batch-sized dimensions", arg="b",
                      help="only one axis may grow with the batch; reduce over the batch first")
    return out


def matmul_vjp(b, node, dout):          # C = A @ B  ->  dA = dout @ B^T,  dB = A^T @ dout
    x, w = node.inputs
    ta, tb = node.attrs["transpose_a"], node.attrs["transpose_b"]
    da = (b.op("matmul", w, dout, transpose_a=tb, transpose_b=True) if ta
          else b.op("matmul", dout, w, transpose_a=False, transpose_b=not tb))
    db = (b.op("matmul", dout, x, transpose_a=True, transpose_b=ta) if tb
          else b.op("matmul", x, dout, transpose_a=not ta, transpose_b=False))
    return da, db


def matmul_kernel(node):
    """The GEMM core with strides: element (i, q) of op(A) is at i*a_rs + q*a_cs."""
    a, bt = node.inputs[0].type, node.inputs[1].type
    ta, tb = node.attrs["transpose_a"], node.attrs["transpose_b"]
    m, k = (a.shape[1], a.shape[0]) if ta else a.shape
    n = bt.shape[0] if tb else bt.shape[1]
    m, k, n = Lin.of(m), Lin.of(k), Lin.of(n)
    a_rs, a_cs = (1, m) if ta else (k, 1)
    b_rs, b_cs = (1, k) if tb else (n, 1)
    return Kernel("matmul.c.j2", record(m=m, k=k, n=n, a_rs=a_rs, a_cs=a_cs, b_rs=b_rs, b_cs=b_cs,
                                        threads=threads_when(m * k * n), epilogue=(), vec_args=(),
                                        epilogue_index="column"))


register(OpDef("matmul", (Arg("a"), Arg("b"), Arg("transpose_a", "bool", False),
                          Arg("transpose_b", "bool", False)),
               matmul_shape, matmul_vjp, kernel=matmul_kernel, doc="2-D matrix product",
               extra={"macs": lambda ins, out, a: out[0] * out[1] * (ins[0][0] if a["transpose_a"] else ins[0][1])}))


def _rate(v):
    if not isinstance(v, (int, float)) or not 0 <= v < 1:
        raise OpError(f"`rate` must be in [0, 1), got {v}", arg="rate", code="attr",
                      help="rate is the fraction dropped (TF 2), not keep_prob")
    return float(v)


def dropout_expand(b, inputs, attrs):
    """Inverted dropout as an explicit mask, so backward reuses the very mask forward drew."""
    mask = b.op("dropout_mask", inputs[0], rate=attrs["rate"])
    return b.op("mul", inputs[0], mask)


register(OpDef("dropout", (Arg("x"), Arg("rate", "float", convert=_rate)),
               lambda ins, attrs: (need_float(ins[0], "x"), ins[0])[1], expand=dropout_expand,
               doc="zero a fraction `rate` of values while training, scale the rest by 1/(1-rate)"))
def dropout_mask_kernel(node):
    rate = node.attrs["rate"]
    return Kernel("dropout_mask.c.j2", record(size=numel(node.out.type), threshold=int(rate * 2**24),
                                              scale=c_float(1.0 / (1.0 - rate))), rng=True)


register(OpDef("dropout_mask", (Arg("x"), Arg("rate", "float")), lambda ins, attrs: ins[0],
               lambda b, n, d: (None,), public=False, kernel=dropout_mask_kernel,
               doc="0 or 1/(1-rate) per element while training, all 1 otherwise"))


def embedding_shape(ins, attrs):
    table, ids = ins
    need_rank(table, 2, "params", "[vocabulary, width]"), need_float(table, "params")
    need_dtype(ids, ("i32",), "ids")
    static_dim(table, 0, "params")
    return TensorType("f32", ids.shape + (table.shape[1],))


def embedding_kernel(grad):
    def rule(node):
        table = node.out.type if grad else node.inputs[0].type
        ids = node.inputs[0].type if grad else node.inputs[1].type
        vocab, width = table.shape
        return Kernel("embedding.c.j2", record(grad=grad, vocab=vocab, width=width, rows=numel(ids),
                                               table=vocab * width))
    return rule


register(OpDef("embedding_lookup", (Arg("params"), Arg("ids")), embedding_shape,
               lambda b, n, d: (b.op("embedding_grad", n.inputs[1], d,
                                     vocab=n.inputs[0].type.shape[0]), None),
               kernel=embedding_kernel(False), doc="rows of a table picked by integer ids",
               extra={"index_range": {"ids": ("ids", lambda ins: ins[0].shape[0])}}))
register(OpDef("embedding_grad", (Arg("ids"), Arg("dout"), Arg("vocab", "int")),
               lambda ins, attrs: TensorType("f32", (attrs["vocab"], ins[1].shape[-1])),
               public=False, kernel=embedding_kernel(True), doc="scatter-add each row's gradient into the table"))


def one_hot_shape(ins, attrs):
    need_dtype(ins[0], ("i32",), "indices")
    if attrs["depth"] < 1:
        raise OpError(f"`depth` must be positive, got {attrs['depth']}", arg="depth", code="attr")
    return TensorType("f32", ins[0].shape + (attrs["depth"],))


register(OpDef("one_hot", (Arg("indices"), Arg("depth", "int"), Arg("on_value", "float", 1.0),
                           Arg("off_value", "float", 0.0)),
               one_hot_shape, None, kernel=lambda node: Kernel("one_hot.c.j2", record(
                   rows=numel(node.inputs[0].type), depth=node.attrs["depth"],
                   on=c_float(node.attrs["on_value"]), off=c_float(node.attrs["off_value"]))),
               doc="f32 vectors with on_value at each id"))


L2_CHUNK = 4096          # values summed per parallel task of l2_loss


def _l2_loss_kernel(size: Lin) -> Kernel:
    # scratch: one double per chunk of L2_CHUNK values. A buffer is all fixed or all per
    # example, so for a*N + b values reserve (ceil(a/chunk) + ceil(b/chunk) + 1) per example
    # (N >= 1).
    fixed = -(-size.b // L2_CHUNK) + 1
    chunks = Lin(-(-size.a // L2_CHUNK) + fixed, 0) if size.a else Lin(0, fixed)
    return Kernel("l2_loss.c.j2", record(size=size, chunk=L2_CHUNK, threads=threads_when(size)),
                  scratch=chunks * 8)


def l2_loss_shape(ins, attrs):
    need_float(ins[0], "t")
    return scalar("f32")


register(OpDef("l2_loss", (Arg("t"),), l2_loss_shape,
               lambda b, n, d: (b.op("mul", n.inputs[0], d),),
               kernel=lambda node: _l2_loss_kernel(numel(node.inputs[0].type)),
               doc="sum(t ** 2) / 2"))
