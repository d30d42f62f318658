"""The layer table: conv, conv_transpose, depthwise_conv, separable_conv, dense, flatten,
global_avg_pool, upsample, batch_norm and embedding as pure builders.

A builder takes its input's type, its bound arguments (`input` is the name the checker bound
the input to, `output` the name the result will get; initializers are calls in AST form) and
the call's span, and returns the params it declares, as (name, dims, initializer call), and
the core expression it computes from them; and, if it needs them, the other core statements
(state, bindings, updates) that go before the result's binding. It raises OpError for an
input it cannot take; it never touches the checker, which owns
naming, scopes, `name=`, L2 penalties and the record `cnnc check --desugar` prints."""
from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Callable

from ...spec import ast
from ...spec.diagnostics import did_you_mean
from ...spec.source import Span
from ..ops import REQUIRED, Arg, OpError
from ..ops.common import fmt, padding
from ..ops.window import transpose_size
from ..types import TensorType

ACTIVATIONS = ("relu", "sigmoid", "tanh", "softmax")


@dataclass(frozen=True)
class Layer:
    name: str
    args: tuple[Arg, ...]       # `input` first, then the layer's own (Keras names)
    build: Callable             # (input type, args, span) -> (params, core expr)
    doc: str


@dataclass(frozen=True)
class InitCall:
    """A default initializer, as the call a spec would write."""
    name: str
    args: tuple[tuple[str, float], ...] = ()

    def __str__(self) -> str:
        return f"{self.name}({', '.join(f'{k}={v}' for k, v in self.args)})"

    def call(self, span: Span) -> ast.Call:
        return call(self.name, span, **{k: number(v, span) for k, v in self.args})


# ---------------------------------------------------------------- core AST

def number(v, span) -> ast.Expr:
    return ast.Number(v, repr(v), span) if v >= 0 else ast.Neg(ast.Number(-v, repr(-v), span), span)


def call(name, span, *args, **kwargs) -> ast.Call:
    kws = tuple(ast.Keyword(ast.Ident(k, span), v, span) for k, v in kwargs.items())
    return ast.Call(ast.Ident(name, span), tuple(args), kws, span)


def ints(vals, span) -> ast.ListExpr:
    return ast.ListExpr(tuple(number(v, span) for v in vals), span)


def f32(dims, span) -> ast.TypeExpr:
    return ast.TypeExpr(ast.Ident("f32", span), tuple(number(d, span) for d in dims), span)


# ---------------------------------------------------------------- argument converters

def _positive(name):
    def convert(v):
        if not isinstance(v, int) or isinstance(v, bool) or v <= 0:
            raise OpError(f"`{name}` must be a positive integer, got {fmt(v)}", arg=name, code="attr")
        return v
    return convert


def _pair(name):
    def convert(v):
        if isinstance(v, int) and not isinstance(v, bool) and v > 0:
            return (v, v)
        if isinstance(v, tuple) and len(v) == 2 and all(isinstance(x, int) and x > 0 for x in v):
            return v
        raise OpError(f"`{name}` must be a positive int or [h, w], got {fmt(v)}", arg=name, code="attr")
    return convert


def _activation(v):
    if v not in ACTIVATIONS + ("linear", None):
        hint = did_you_mean(str(v), ACTIVATIONS)
        raise OpError(f"unknown activation `{v}`", arg="activation", code="activation",
                      help=f"did you mean `{hint}`?" if hint else f"use one of {', '.join(ACTIVATIONS)}")
    return v


def _l2(v):
    if not isinstance(v, (int, float)) or isinstance(v, bool) or v < 0:
        raise OpError(f"`l2` must be a non-negative number, got {fmt(v)}", arg="l2", code="attr")
    return v


def _name(v):
    if not isinstance(v, str) or not v or "/" in v:
        raise OpError("`name` must be a non-empty string without `/`", arg="name", code="attr")
    return v


def _interpolation(v):
    if not isinstance(v, str) or v.lower() not in ("nearest", "bilinear"):
        raise OpError(f"`interpolation` must be \"nearest\" or \"bilinear\", got {fmt(v)}",
                      arg="interpolation", code="attr")
    return v.lower()


INPUT = Arg("input", aliases=("inputs",))
L2 = Arg("l2", "float", 0.0, convert=_l2)
NAME = Arg("name", "str", None, convert=_name)
ACTIVATION = Arg("activation", "str", None, convert=_activation)
USE_BIAS = Arg("use_bias", "bool", True)
BIAS_INIT = Arg("bias_initializer", "initializer", InitCall("zeros"), aliases=("bias_init",))
COMMON = (ACTIVATION, USE_BIAS, Arg("kernel_initializer", "initializer", InitCall("glorot_uniform"), aliases=("init",)),
          BIAS_INIT, L2, NAME)
WINDOW = (Arg("kernel_size", "ints", convert=_pair("kernel_size"), aliases=("kernel",)),
          Arg("strides", "ints", (1, 1), convert=_pair("strides")),
          Arg("padding", "str", "SAME", convert=padding))
DILATION = Arg("dilation_rate", "ints", (1, 1), convert=_pair("dilation_rate"), aliases=("dilations",))
DEPTH_MULTIPLIER = Arg("depth_multiplier", "int", 1, convert=_positive("depth_multiplier"))
DEPTHWISE_INIT = Arg("depthwise_initializer", "initializer", InitCall("glorot_uniform"))


# ---------------------------------------------------------------- builders

def _activate(expr, act, span):
    return expr if act in (None, "linear") else call(act, span, expr)


def _with_bias(args, expr, units, span, params):
    if args["use_bias"]:
        params.append(("bias", [units], args["bias_initializer"]))
        expr = call("bias_add", span, expr, ast.Name("bias", span))
    return expr


def _need_rank(x: TensorType, rank, layer, layout):
    if x.rank != rank:
        raise OpError(f"`{layer}` expects a {rank}-D input {layout}, got {x}", code="layer-rank")


def build_conv(x: TensorType, args, span):
    (kh, kw), (sh, sw) = args["kernel_size"], args["strides"]
    _need_rank(x, 4, "conv", "[batch, height, width, channels]")
    dh, dw = _dilation(args, "conv")
    params = [("weight", [kh, kw, x.shape[3], args["filters"]], args["kernel_initializer"])]
    dilated = {"dilations": ints([1, dh, dw, 1], span)} if (dh, dw) != (1, 1) else {}
    expr = call("conv2d", span, ast.Name(args["input"], span), ast.Name("weight", span),
                strides=ints([1, sh, sw, 1], span), padding=ast.String(args["padding"], span), **dilated)
    return params, _activate(_with_bias(args, expr, args["filters"], span, params), args["activation"], span)


def build_conv_transpose(x: TensorType, args, span):
    (kh, kw), (sh, sw), pad = args["kernel_size"], args["strides"], args["padding"]
    _need_rank(x, 4, "conv_transpose", "[batch, height, width, channels]")
    h, w, c = x.shape[1:]
    oh, ow = transpose_size(h, kh, sh, pad), transpose_size(w, kw, sw, pad)
    params = [("weight", [kh, kw, args["filters"], c], args["kernel_initializer"])]
    expr = call("conv2d_transpose", span, ast.Name(args["input"], span), ast.Name("weight", span),
                output_shape=ints([-1, oh, ow, args["filters"]], span),
                strides=ints([1, sh, sw, 1], span), padding=ast.String(pad, span))
    return params, _activate(_with_bias(args, expr, args["filters"], span, params), args["activation"], span)


def _dilation(args, layer):
    """As in TF and Keras, a dilated window moves one cell at a time."""
    (sh, sw), (dh, dw) = args["strides"], args["dilation_rate"]
    if (dh, dw) != (1, 1) and (sh, sw) != (1, 1):
        raise OpError(f"`{layer}` with dilation_rate [{dh}, {dw}] must have strides of 1, got [{sh}, {sw}]",
                      code="attr", notes=["as in TensorFlow and Keras, a dilated window moves one cell at a time"],
                      help="use strides=1 and downsample in a separate layer (a pool), or dilation_rate=1")
    return (dh, dw)


def _depthwise(x: TensorType, args, span, layer, weight):
    """depthwise_conv2d of the input with a filter [kh, kw, in, depth_multiplier] called `weight`."""
    (kh, kw), (sh, sw) = args["kernel_size"], args["strides"]
    _need_rank(x, 4, layer, "[batch, height, width, channels]")
    dh, dw = _dilation(args, layer)
    params = [(weight, [kh, kw, x.shape[3], args["depth_multiplier"]], args["depthwise_initializer"])]
    dilated = {"dilations": ints([1, dh, dw, 1], span)} if (dh, dw) != (1, 1) else {}
    expr = call("depthwise_conv2d", span, ast.Name(args["input"], span), ast.Name(weight, span),
                strides=ints([1, sh, sw, 1], span), padding=ast.String(args["padding"], span), **dilated)
    return params, expr


def build_depthwise_conv(x: TensorType, args, span):
    params, expr = _depthwise(x, args, span, "depthwise_conv", "weight")
    units = x.shape[3] * args["depth_multiplier"]
    return params, _activate(_with_bias(args, expr, units, span, params), args["activation"], span)


def build_separable_conv(x: TensorType, args, span):
    """Keras SeparableConv2D: a depthwise conv (strides, dilation) then a 1x1 conv to `filters`."""
    params, expr = _depthwise(x, args, span, "separable_conv", "depthwise_weight")
    mid = x.shape[3] * args["depth_multiplier"]
    params.append(("pointwise_weight", [1, 1, mid, args["filters"]], args["pointwise_initializer"]))
    expr = call("conv2d", span, expr, ast.Name("pointwise_weight", span),
                strides=ints([1, 1, 1, 1], span), padding=ast.String("VALID", span))
    return params, _activate(_with_bias(args, expr, args["filters"], span, params), args["activation"], span)


def build_global_avg_pool(x: TensorType, args, span):
    _need_rank(x, 4, "global_avg_pool", "[batch, height, width, channels]")
    keep = {"keepdims": ast.Name("true", span)} if args["keepdims"] else {}
    return [], call("reduce_mean", span, ast.Name(args["input"], span), ints([1, 2], span), **keep)


def build_upsample(x: TensorType, args, span):
    """Keras UpSampling2D: each cell repeated size times (nearest), or tf.image.resize bilinear."""
    _need_rank(x, 4, "upsample", "[batch, height, width, channels]")
    (fh, fw), (h, w) = args["size"], x.shape[1:3]
    return [], call("resize", span, ast.Name(args["input"], span), ints([h * fh, w * fw], span),
                    method=ast.String(args["interpolation"], span))


def build_dense(x: TensorType, args, span):
    if x.rank != 2:
        flat = math.prod(d for d in x.shape[1:] if isinstance(d, int))
        raise OpError(f"`dense` expects [batch, features], but its input is {x}", code="dense-rank",
                      help=f"flatten it first: flatten(...) gives f32[{x.shape[0]}, {flat}]")
    params = [("weight", [x.shape[1], args["units"]], args["kernel_initializer"])]
    expr = call("matmul", span, ast.Name(args["input"], span), ast.Name("weight", span))
    return params, _activate(_with_bias(args, expr, args["units"], span, params), args["activation"], span)


def build_flatten(x: TensorType, args, span):
    per = math.prod(d for d in x.shape[1:] if isinstance(d, int))
    return [], call("reshape", span, ast.Name(args["input"], span), ints([-1, per], span))


def build_batch_norm(x: TensorType, args, span):
    """Keras 3 BatchNormalization on the last axis: batch mean and biased variance over every
    other axis in training steps (and the moving averages updated from them), the moving
    statistics everywhere else."""
    c = x.shape[-1] if x.rank else None
    if x.rank < 2 or not isinstance(c, int):
        raise OpError(f"`batch_norm` normalises each channel of the last axis, but its input {x} has "
                      "no channel axis", code="layer-rank",
                      notes=["the last axis is the batch axis" if x.rank == 1 else
                             f"the last axis of {x} is not a fixed size"],
                      help=f"give it a channel axis, e.g. reshape({args['input']}, [-1, 1])")
    m, out, inp = args["momentum"], args["output"], args["input"]
    name = lambda n: ast.Name(n, span)                                   # noqa: E731
    axes = ints(range(x.rank - 1), span)
    params = []
    if args["scale"]:
        params.append(("gamma", [c], args["gamma_initializer"]))
    if args["center"]:
        params.append(("beta", [c], args["beta_initializer"]))
    mean, var = f"{out}_mean", f"{out}_variance"
    stats = [
        ast.StateDecl(ast.Ident("moving_mean", span), f32([c], span), args["moving_mean_initializer"], span),
        ast.StateDecl(ast.Ident("moving_variance", span), f32([c], span),
                      args["moving_variance_initializer"], span),
        ast.Let(ast.Ident(mean, span), call("reduce_mean", span, name(inp), axis=axes), span),
        ast.Let(ast.Ident(var, span), call("reduce_mean", span, call("square", span, ast.BinOp(
            "-", name(inp), name(mean), span)), axis=axes), span),
    ]
    for state, stat in (("moving_mean", mean), ("moving_variance", var)):
        keep = ast.BinOp("*", name(state), number(m, span), span)
        new = ast.BinOp("*", name(stat), ast.BinOp("-", number(1, span), number(m, span), span), span)
        stats.append(ast.UpdateDecl(ast.Ident(state, span), ast.BinOp("+", keep, new, span), span))
    value = call("batch_normalization", span, name(inp),
                 call("if_training", span, name(mean), name("moving_mean")),
                 call("if_training", span, name(var), name("moving_variance")),
                 name("beta") if args["center"] else number(0.0, span),
                 name("gamma") if args["scale"] else number(1.0, span), number(args["epsilon"], span))
    return params, value, stats


def build_embedding(x: TensorType, args, span):
    params = [("embeddings", [args["input_dim"], args["output_dim"]], args["embeddings_initializer"])]
    return params, call("embedding_lookup", span, ast.Name("embeddings", span), ast.Name(args["input"], span))


LAYERS: dict[str, Layer] = {}


def register(layer: Layer) -> Layer:
    assert layer.name not in LAYERS, f"layer {layer.name} registered twice"
    LAYERS[layer.name] = layer
    return layer


register(Layer("conv", (INPUT, Arg("filters", "int", convert=_positive("filters"))) + WINDOW + (DILATION,) + COMMON,
               build_conv,
               "conv2d + bias + activation; creates weight [kh, kw, in, filters], bias"))
register(Layer("conv_transpose", (INPUT, Arg("filters", "int", convert=_positive("filters"))) + WINDOW + COMMON,
               build_conv_transpose,
               "conv2d_transpose upsampling by `strides`; creates weight [kh, kw, filters, in], bias"))
register(Layer("depthwise_conv", (INPUT,) + WINDOW + (DEPTH_MULTIPLIER, DILATION, ACTIVATION, USE_BIAS,
               Arg("depthwise_initializer", "initializer", InitCall("glorot_uniform"),
                   aliases=("kernel_initializer", "init")), BIAS_INIT, L2, NAME),
               build_depthwise_conv,
               "depthwise_conv2d + bias + activation; creates weight [kh, kw, in, depth_multiplier], bias"))
register(Layer("separable_conv", (INPUT, Arg("filters", "int", convert=_positive("filters"))) + WINDOW
               + (DEPTH_MULTIPLIER, DILATION, ACTIVATION, USE_BIAS, DEPTHWISE_INIT,
                  Arg("pointwise_initializer", "initializer", InitCall("glorot_uniform")), BIAS_INIT, L2, NAME),
               build_separable_conv,
               "depthwise_conv2d then a 1x1 conv2d + bias + activation; creates depthwise_weight "
               "[kh, kw, in, depth_multiplier], pointwise_weight [1, 1, in * depth_multiplier, filters], bias"))
register(Layer("dense", (INPUT, Arg("units", "int", convert=_positive("units"))) + COMMON, build_dense,
               "matmul + bias + activation; creates weight [in, units], bias"))
register(Layer("flatten", (INPUT,), build_flatten, "reshape to [batch, features]"))
register(Layer("global_avg_pool", (INPUT, Arg("keepdims", "bool", False)), build_global_avg_pool,
               "reduce_mean over height and width"))
register(Layer("upsample", (INPUT, Arg("size", "ints", (2, 2), convert=_pair("size")),
                            Arg("interpolation", "str", "nearest", convert=_interpolation)), build_upsample,
               "resize by whole factors: nearest repeats each cell, bilinear as tf.image.resize"))
def _momentum(v):
    if not isinstance(v, (int, float)) or isinstance(v, bool) or not 0 <= v <= 1:
        raise OpError(f"`momentum` must be in [0, 1], got {fmt(v)}", arg="momentum", code="attr",
                      help="Keras' default is 0.99: each step keeps 99% of the moving average")
    return float(v)


def _epsilon(v):
    if not isinstance(v, (int, float)) or isinstance(v, bool) or v <= 0:
        raise OpError(f"`epsilon` must be a number > 0, got {fmt(v)}", arg="epsilon", code="attr")
    return float(v)


register(Layer("batch_norm", (INPUT, Arg("momentum", "float", 0.99, convert=_momentum),
                              Arg("epsilon", "float", 0.001, convert=_epsilon), Arg("center", "bool", True),
                              Arg("scale", "bool", True),
                              Arg("beta_initializer", "initializer", InitCall("zeros")),
                              Arg("gamma_initializer", "initializer", InitCall("ones")),
                              Arg("moving_mean_initializer", "initializer", InitCall("zeros")),
                              Arg("moving_variance_initializer", "initializer", InitCall("ones")), NAME),
               build_batch_norm, "Keras BatchNormalization on the last axis; creates gamma, beta "
               "[channels] and state moving_mean, moving_variance"))
register(Layer("embedding", (INPUT, Arg("input_dim", "int", convert=_positive("input_dim"), aliases=("vocab",)),
                             Arg("output_dim", "int", convert=_positive("output_dim"), aliases=("dim",)),
                             Arg("embeddings_initializer", "initializer",
                                 InitCall("random_uniform", (("minval", -0.05), ("maxval", 0.05))),
                                 aliases=("init",)), L2, NAME),
               build_embedding, "embedding_lookup in a table [input_dim, output_dim]"))
