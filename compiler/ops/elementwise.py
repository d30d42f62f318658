"""Elementwise ops: arithmetic with NumPy broadcasting, activations, comparisons, casts."""
from __future__ import annotations

from ..types import BroadcastError, TensorType, broadcast_shapes
from . import Arg, OpDef, OpError, register
from .common import need_dtype, shape_str
from ..kernel import ALIAS, elementwise

X, Y = Arg("x"), Arg("y")


def _binary_shape(out_dtype=None, dtypes=("f32", "i32")):
    def rule(ins, attrs):
        x, y = ins
        need_dtype(x, dtypes, "x")
        if x.dtype != y.dtype:
            raise OpError(f"operands have different dtypes: `{{x}}` is {x}, `{{y}}` is {y}", arg="y",
                          code="dtype", help=f"cast one of them, e.g. cast({{y}}, {x.dtype})")
        try:
            shape = broadcast_shapes(x.shape, y.shape)
        except BroadcastError:
            rank = max(x.rank, y.rank)
            clash = next(i for i in range(1, rank + 1)
                         if i <= x.rank and i <= y.rank and x.shape[-i] != y.shape[-i]
                         and 1 not in (x.shape[-i], y.shape[-i]))
            raise OpError(f"{shape_str(x.shape)} and {shape_str(y.shape)} do not broadcast",
                          arg="y", code="broadcast",
                          notes=[f"`{{x}}` is {x}", f"`{{y}}` is {y}",
                                 f"aligned from the right, axis {rank - clash} pairs {x.shape[-clash]} "
                                 f"with {y.shape[-clash]}: sizes must be equal, or one of them 1"]) from None
        return TensorType(out_dtype or x.dtype, shape)
    return rule


def _add_vjp(b, node, dout):
    x, y = node.inputs
    return b.sum_to(dout, x), b.sum_to(dout, y)


def _sub_vjp(b, node, dout):
    x, y = node.inputs
    return b.sum_to(dout, x), b.sum_to(b.op("neg", dout), y)


def _mul_vjp(b, node, dout):
    x, y = node.inputs
    return b.sum_to(b.op("mul", dout, y), x), b.sum_to(b.op("mul", dout, x), y)


def _div_vjp(b, node, dout):            # d(x/y) = dout/y,  -dout * (x/y) / y
    x, y = node.inputs
    dx = b.op("div", dout, y)
    dy = b.op("neg", b.op("div", b.op("mul", dout, node.out), y))
    return b.sum_to(dx, x), b.sum_to(dy, y)


def _minmax_vjp(x_wins: str, y_wins: str):
    # TF: minimum sends the gradient to x where x <= y, else to y (maximum: x >= y).
    def vjp(b, node, dout):
        x, y = node.inputs
        dx = b.op("select_grad", x, y, dout, cmp=x_wins)
        dy = b.op("select_grad", x, y, dout, cmp=y_wins)
        return b.sum_to(dx, x), b.sum_to(dy, y)
    return vjp


register(OpDef("add", (X, Y), _binary_shape(), _add_vjp, kernel=elementwise("{1} + {2}"), doc="x + y, broadcasting"))
register(OpDef("sub", (X, Y), _binary_shape(), _sub_vjp, kernel=elementwise("{1} - {2}"), doc="x - y, broadcasting"))
register(OpDef("mul", (X, Y), _binary_shape(), _mul_vjp, kernel=elementwise("{1} * {2}"), doc="x * y, broadcasting"))
register(OpDef("div", (X, Y), _binary_shape(dtypes=("f32",)), _div_vjp,
               kernel=elementwise("{1} / {2}"), doc="x / y, broadcasting"))
register(OpDef("minimum", (X, Y), _binary_shape(), _minmax_vjp("le", "gt"),
               kernel=elementwise("({1} <= {2} ? {1} : {2})"), doc="elementwise min"))
register(OpDef("maximum", (X, Y), _binary_shape(), _minmax_vjp("ge", "lt"),
               kernel=elementwise("({1} >= {2} ? {1} : {2})"), doc="elementwise max"))
register(OpDef("equal", (X, Y), _binary_shape("bool", ("f32", "i32", "bool")), None,
               kernel=elementwise("({1} == {2})"), doc="x == y as bool"))


def _select_grad_shape(ins, attrs):
    x, y, dout = ins
    return TensorType("f32", broadcast_shapes(x.shape, y.shape))


CMP = {"le": "<=", "lt": "<", "ge": ">=", "gt": ">"}


def select_grad_kernel(node):
    return elementwise(f"({{1}} {CMP[node.attrs['cmp']]} {{2}} ? {{3}} : 0.0f)")(node)


register(OpDef("select_grad", (X, Y, Arg("dout"), Arg("cmp", "str")), _select_grad_shape,
               public=False, kernel=select_grad_kernel, doc="dout where cmp(x, y) holds, else 0 (min/max gradients)"))


# ---------------------------------------------------------------- unary

def _float_unary(ins, attrs):
    need_dtype(ins[0], ("f32",), "x")
    return ins[0]


def _numeric_unary(ins, attrs):
    need_dtype(ins[0], ("f32", "i32"), "x")
    return ins[0]


def _act_vjp(grad_op: str):
    def vjp(b, node, dout):
        return (b.op(grad_op, node.out, dout),)
    return vjp


register(OpDef("neg", (X,), _numeric_unary, lambda b, n, d: (b.op("neg", d),),
               kernel=elementwise("-{1}"), doc="-x"))
register(OpDef("relu", (Arg("features", aliases=("x",)),), _float_unary, _act_vjp("relu_grad"),
               # NaN stays NaN, as in TF: `x > 0 ? x : 0` would turn a NaN input into a confident 0
               kernel=elementwise("({1} < 0.0f ? 0.0f : {1})"), doc="max(x, 0)"))
register(OpDef("sigmoid", (X,), _float_unary, _act_vjp("sigmoid_grad"),
               kernel=elementwise("1.0f / (1.0f + expf(-{1}))"), doc="1 / (1 + exp(-x))"))
register(OpDef("tanh", (X,), _float_unary, _act_vjp("tanh_grad"),
               kernel=elementwise("tanhf({1})"), doc="tanh(x)"))


def _act_grad_shape(ins, attrs):
    y, dout = ins
    if y.shape != dout.shape:
        raise OpError(f"gradient shape {dout} does not match {y}", arg="dout")
    return dout


for _name, _doc, _expr in (("relu_grad", "dout where y > 0", "({1} > 0.0f ? {2} : 0.0f)"),
                           ("sigmoid_grad", "dout * y * (1 - y)", "{2} * {1} * (1.0f - {1})"),
                           ("tanh_grad", "dout * (1 - y*y)", "{2} * (1.0f - {1} * {1})")):
    register(OpDef(_name, (Arg("y"), Arg("dout")), _act_grad_shape, public=False,
                   kernel=elementwise(_expr), doc=_doc))


# ---------------------------------------------------------------- casts and broadcasting

def _cast_dtype(v):
    if v not in ("f32", "i32", "bool"):
        raise OpError(f"`dtype` must be f32 or i32, got {v}", arg="dtype", code="attr")
    return v


def _cast_shape(ins, attrs):
    return ins[0].with_dtype(attrs["dtype"])


def _cast_vjp(b, node, dout):
    same_float = node.inputs[0].type.dtype == "f32" and node.out.type.dtype == "f32"
    return (dout if same_float else None,)


def cast_kernel(node):
    src, dst = node.inputs[0].type.dtype, node.out.type.dtype
    if src == dst:
        return ALIAS
    if dst == "bool":
        return elementwise("({1} != 0)")(node)
    return elementwise(("(float)" if dst == "f32" else "(int32_t)") + "{1}")(node)   # f32->i32 truncates


register(OpDef("cast", (X, Arg("dtype", "dtype", convert=_cast_dtype)), _cast_shape, _cast_vjp,
               kernel=cast_kernel, doc="convert to another dtype"))


def _broadcast_to_shape(ins, attrs):
    target = attrs["shape"]
    try:
        out = broadcast_shapes(ins[0].shape, target)
    except BroadcastError as e:
        raise OpError(str(e), arg="shape") from None
    if out != tuple(target):
        raise OpError(f"{ins[0]} does not broadcast to {shape_str(target)}", arg="shape")
    return TensorType(ins[0].dtype, out)


register(OpDef("broadcast_to", (Arg("input"), Arg("shape", "shape")), _broadcast_to_shape,
               lambda b, n, d: (b.sum_to(d, n.inputs[0]),), public=False,
               kernel=elementwise("{1}"), doc="repeat along broadcast axes"))
