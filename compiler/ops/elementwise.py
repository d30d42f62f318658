"""Elementwise ops: arithmetic with NumPy broadcasting, activations, comparisons, casts."""
from __future__ import annotations

from ..types import BroadcastError, TensorType, broadcast_shapes
from . import Arg, OpDef, OpError, register
from .common import need_dtype, shape_str
from ..kernel import ALIAS, c_float, elementwise

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


# ---------------------------------------------------------------- more activations and tf.math

def _alpha(v):
    # TF's LeakyRelu kernel computes x > 0 ? x : alpha * x only for alpha <= 1; above that
    # tf.nn.leaky_relu switches to maximum(alpha * x, x), a different function
    if v > 1:
        raise OpError(f"`alpha` must be at most 1, got {v}", arg="alpha", code="attr",
                      help=f"for a slope above 1 write maximum({v} * x, x)")
    return float(v)


def _with_alpha(template: str):
    def rule(node):
        return elementwise(template.replace("ALPHA", c_float(node.attrs["alpha"])))(node)
    return rule


register(OpDef("leaky_relu", (Arg("features", aliases=("x",)), Arg("alpha", "float", 0.2, convert=_alpha)),
               _float_unary,
               lambda b, n, dout: (b.op("leaky_relu_grad", n.inputs[0], dout, alpha=n.attrs["alpha"]),),
               # NaN fails x > 0 and stays NaN through alpha * x, as in TF
               kernel=_with_alpha("({1} > 0.0f ? {1} : ALPHA * {1})"), doc="x where x > 0, else alpha * x"))
register(OpDef("leaky_relu_grad", (Arg("features"), Arg("dout"), Arg("alpha", "float")), _act_grad_shape,
               public=False, kernel=_with_alpha("({1} > 0.0f ? {2} : ALPHA * {2})"),
               doc="dout where x > 0, else alpha * dout (TF's LeakyReluGrad)"))


def _unary(name, arg, doc, expr, grad_of, grad_expr, grad_doc):
    """A float unary op and its private gradient op `<name>_grad(grad_of, dout)`; grad_of is
    "x" (the input) or "y" (the output), whichever TF's gradient kernel reads."""
    def vjp(b, node, dout):
        return (b.op(name + "_grad", node.inputs[0] if grad_of == "x" else node.out, dout),)
    register(OpDef(name, (Arg(arg, aliases=("x",) if arg != "x" else ()),), _float_unary, vjp,
                   kernel=elementwise(expr), doc=doc))
    register(OpDef(name + "_grad", (Arg(grad_of), Arg("dout")), _act_grad_shape, public=False,
                   kernel=elementwise(grad_expr), doc=grad_doc))


# Every expression keeps a NaN input NaN (comparisons with NaN are false), as TF's kernels do.
_unary("relu6", "features", "min(max(x, 0), 6)", "({1} < 0.0f ? 0.0f : ({1} > 6.0f ? 6.0f : {1}))",
       "y", "({1} > 0.0f && {1} < 6.0f ? {2} : 0.0f)", "dout where 0 < y < 6 (TF's Relu6Grad)")
_unary("elu", "features", "x where x >= 0, else exp(x) - 1", "({1} < 0.0f ? expm1f({1}) : {1})",
       "y", "({1} < 0.0f ? {2} * ({1} + 1.0f) : {2})", "dout * (y + 1) where y < 0 (TF's EluGrad)")
_unary("silu", "features", "x * sigmoid(x)", "{1} / (1.0f + expf(-{1}))",
       "x", "{2} * (1.0f / (1.0f + expf(-{1}))) * (1.0f + {1} * (1.0f - 1.0f / (1.0f + expf(-{1}))))",
       "dout * s * (1 + x * (1 - s)), s = sigmoid(x) (TF's silu gradient)")
_unary("square", "x", "x * x", "{1} * {1}", "x", "{2} * 2.0f * {1}", "dout * 2x")
_unary("sqrt", "x", "square root", "sqrtf({1})", "y", "{2} * 0.5f / {1}", "dout * 0.5 / y (TF's SqrtGrad)")
_unary("rsqrt", "x", "1 / sqrt(x)", "1.0f / sqrtf({1})", "y", "{2} * -0.5f * {1} * {1} * {1}",
       "dout * -0.5 * y^3 (TF's RsqrtGrad)")
_unary("exp", "x", "e ** x", "expf({1})", "y", "{2} * {1}", "dout * y")
_unary("log", "x", "natural logarithm", "logf({1})", "x", "{2} / {1}", "dout / x")
_unary("abs", "x", "|x|", "fabsf({1})", "x", "({1} > 0.0f ? {2} : ({1} < 0.0f ? -{2} : 0.0f))",
       "dout * sign(x), 0 at 0")


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
