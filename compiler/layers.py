"""Layer sugar (conv, dense, flatten, embedding, conv_transpose) expanded into core forms.

A layer needs its input's shape to size its params, so the checker expands it on the spot:
the expansion is ordinary core AST (`param` declarations and a `let`), checked like any
hand-written statement and kept so `cnnc check --desugar` can print the spec in core forms."""
from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Callable

from ..spec import ast
from ..spec.diagnostics import did_you_mean, error
from ..spec.source import Span

ACTIVATIONS = ("relu", "sigmoid", "tanh", "softmax")


@dataclass(frozen=True)
class Layer:
    name: str
    params: tuple[tuple[str, object], ...]     # (name, default); REQ = required
    aliases: dict
    build: Callable                             # (ctx, in_type, args) -> (params, core expr)
    doc: str


REQ = object()
_INIT_ALIASES = {"kernel": "kernel_size", "init": "kernel_initializer", "bias_init": "bias_initializer"}


def _num(v, span) -> ast.Expr:
    return ast.Number(v, repr(v), span) if v >= 0 else ast.Neg(ast.Number(-v, repr(-v), span), span)


def _call(name, span, *args, **kwargs) -> ast.Call:
    kws = tuple(ast.Keyword(ast.Ident(k, span), v, span) for k, v in kwargs.items())
    return ast.Call(ast.Ident(name, span), tuple(args), kws, span)


def _ints(vals, span) -> ast.ListExpr:
    return ast.ListExpr(tuple(_num(v, span) for v in vals), span)


def _type(dims, span) -> ast.TypeExpr:
    return ast.TypeExpr(ast.Ident("f32", span), tuple(_num(d, span) for d in dims), span)


def _pair(v, what, ck, span):
    if isinstance(v, int) and v > 0:
        return (v, v)
    if isinstance(v, tuple) and len(v) == 2 and all(isinstance(x, int) and x > 0 for x in v):
        return v
    ck.report(error("attr", f"`{what}` must be a positive int or [h, w], got {v}", span))


def _activate(expr, act, span):
    return expr if act in (None, "linear") else _call(act, span, expr)


def _with_bias(ck, args, expr, units, span, params):
    if args["use_bias"]:
        params.append(("bias", [units], args["bias_initializer"]))
        expr = _call("bias_add", span, expr, ast.Name("bias", span))
    return expr


def build_conv(ck, x, args, span):
    kh, kw = _pair(args["kernel_size"], "kernel_size", ck, span)
    sh, sw = _pair(args["strides"], "strides", ck, span)
    _need_rank(ck, x, 4, "conv", "[batch, height, width, channels]", span)
    params = [("weight", [kh, kw, x.type.shape[3], args["filters"]], args["kernel_initializer"])]
    expr = _call("conv2d", span, ast.Name(args["__in"], span), ast.Name("weight", span),
                 strides=_ints([1, sh, sw, 1], span), padding=ast.String(args["padding"], span))
    return params, _activate(_with_bias(ck, args, expr, args["filters"], span, params), args["activation"], span)


def build_conv_transpose(ck, x, args, span):
    kh, kw = _pair(args["kernel_size"], "kernel_size", ck, span)
    sh, sw = _pair(args["strides"], "strides", ck, span)
    _need_rank(ck, x, 4, "conv_transpose", "[batch, height, width, channels]", span)
    h, w, c = x.type.shape[1:]
    pad = str(args["padding"]).upper()
    oh, ow = (h * sh, w * sw) if pad == "SAME" else ((h - 1) * sh + kh, (w - 1) * sw + kw)
    params = [("weight", [kh, kw, args["filters"], c], args["kernel_initializer"])]
    expr = _call("conv2d_transpose", span, ast.Name(args["__in"], span), ast.Name("weight", span),
                 output_shape=_ints([-1, oh, ow, args["filters"]], span),
                 strides=_ints([1, sh, sw, 1], span), padding=ast.String(pad, span))
    return params, _activate(_with_bias(ck, args, expr, args["filters"], span, params), args["activation"], span)


def build_dense(ck, x, args, span):
    if x.type.rank != 2:
        flat = math.prod(d for d in x.type.shape[1:] if isinstance(d, int))
        ck.report(error("dense-rank", f"`dense` expects [batch, features], but its input is {x.type}",
                        span, help=f"flatten it first: flatten(...) gives f32[{x.type.shape[0]}, {flat}]"))
    params = [("weight", [x.type.shape[1], args["units"]], args["kernel_initializer"])]
    expr = _call("matmul", span, ast.Name(args["__in"], span), ast.Name("weight", span))
    return params, _activate(_with_bias(ck, args, expr, args["units"], span, params), args["activation"], span)


def build_flatten(ck, x, args, span):
    per = math.prod(d for d in x.type.shape[1:] if isinstance(d, int))
    return [], _call("reshape", span, ast.Name(args["__in"], span), _ints([-1, per], span))


def build_embedding(ck, x, args, span):
    params = [("embeddings", [args["input_dim"], args["output_dim"]], args["embeddings_initializer"])]
    return params, _call("embedding_lookup", span, ast.Name("embeddings", span), ast.Name(args["__in"], span))


def _need_rank(ck, x, rank, layer, layout, span):
    if x.type.rank != rank:
        ck.report(error("layer-rank", f"`{layer}` expects a {rank}-D input {layout}, got {x.type}", span))


def _init(name, span, **kw):
    return _call(name, span, **{k: _num(v, span) for k, v in kw.items()})


_COMMON = (("activation", None), ("use_bias", True), ("kernel_initializer", "glorot_uniform"),
           ("bias_initializer", "zeros"), ("l2", 0.0), ("name", None))

LAYERS: dict[str, Layer] = {
    "conv": Layer("conv", (("filters", REQ), ("kernel_size", REQ), ("strides", 1), ("padding", "SAME")) + _COMMON,
                  _INIT_ALIASES, build_conv, "conv2d + bias + activation; creates weight [kh, kw, in, filters], bias"),
    "conv_transpose": Layer("conv_transpose", (("filters", REQ), ("kernel_size", REQ), ("strides", 1),
                                               ("padding", "SAME")) + _COMMON,
                            _INIT_ALIASES, build_conv_transpose,
                            "conv2d_transpose upsampling by `strides`; creates weight [kh, kw, filters, in], bias"),
    "dense": Layer("dense", (("units", REQ),) + _COMMON, _INIT_ALIASES, build_dense,
                   "matmul + bias + activation; creates weight [in, units], bias"),
    "flatten": Layer("flatten", (), {}, build_flatten, "reshape to [batch, features]"),
    "embedding": Layer("embedding", (("input_dim", REQ), ("output_dim", REQ),
                                     ("embeddings_initializer", "random_uniform_small"), ("l2", 0.0), ("name", None)),
                       {"init": "embeddings_initializer", "vocab": "input_dim", "dim": "output_dim"},
                       build_embedding, "embedding_lookup in a table [input_dim, output_dim]"),
}


def _bind(ck, layer: Layer, c: ast.Call):
    """Input AST and static args of a layer call, by position or keyword."""
    if not c.args and not any(k.name.name in ("input", "inputs") for k in c.kwargs):
        ck.report(error("missing-arg", f"`{layer.name}` needs an input", c.span,
                        help=f"e.g. {layer.name}(x, ...) or x |> {layer.name}(...)"))
    given, names = {}, ["input"] + [p for p, _ in layer.params]
    for n, a in zip(names, c.args):
        given[n] = a
    if len(c.args) > len(names):
        ck.report(error("too-many-args", f"`{layer.name}` takes at most {len(names)} positional arguments",
                        c.args[len(names)].span))
    for kw in c.kwargs:
        key = {"inputs": "input"}.get(kw.name.name, layer.aliases.get(kw.name.name, kw.name.name))
        if key not in names:
            hint = did_you_mean(kw.name.name, names[1:] + list(layer.aliases))
            ck.report(error("unknown-kwarg", f"`{layer.name}` has no argument `{kw.name.name}`", kw.name.span,
                            help=f"did you mean `{hint}`?" if hint else f"it takes: {', '.join(names[1:])}"))
        if key in given:
            ck.report(error("duplicate-arg", f"argument `{key}` of `{layer.name}` is given twice", kw.span))
        given[key] = kw.value
    args = {}
    for p, default in layer.params:
        e = given.get(p)
        if e is None:
            if default is REQ:
                ck.report(error("missing-arg", f"`{layer.name}` needs `{p}`", c.span))
            args[p] = _default_init(default, c.span) if p.endswith("initializer") else default
        elif p.endswith("initializer"):
            args[p] = e if isinstance(e, ast.Call) else _call(getattr(e, "id", str(ck.static(e))), e.span)
        else:
            args[p] = _static_arg(ck, layer, p, e)
    return given["input"], args


def _default_init(default, span):
    if default == "random_uniform_small":
        return _init("random_uniform", span, minval=-0.05, maxval=0.05)
    return _call(default, span)


def _static_arg(ck, layer, p, e):
    v = ck.static(e)
    if p == "activation":
        if v not in ACTIVATIONS + ("linear", None):
            hint = did_you_mean(str(v), ACTIVATIONS)
            ck.report(error("activation", f"unknown activation `{v}`", e.span,
                            help=f"did you mean `{hint}`?" if hint else f"use one of {', '.join(ACTIVATIONS)}"))
    elif p in ("filters", "units", "input_dim", "output_dim"):
        if not isinstance(v, int) or isinstance(v, bool) or v <= 0:
            ck.report(error("attr", f"`{p}` of `{layer.name}` must be a positive integer, got {v}", e.span))
    elif p == "padding":
        if not isinstance(v, str) or v.upper() not in ("SAME", "VALID"):
            ck.report(error("attr", f"`padding` must be \"SAME\" or \"VALID\", got {v}", e.span))
        v = v.upper()
    elif p == "l2":
        if not isinstance(v, (int, float)) or v < 0:
            ck.report(error("attr", f"`l2` must be a non-negative number, got {v}", e.span))
    elif p == "use_bias" and not isinstance(v, bool):
        ck.report(error("attr", f"`use_bias` must be true or false, got {v}", e.span))
    elif p == "name" and (not isinstance(v, str) or not v or "/" in v):
        ck.report(error("attr", "`name` must be a non-empty string without `/`", e.span))
    return v


def expand(ck, c: ast.Call):
    """Expand a layer call into core statements, check them, and return the layer's output Value."""
    from .shapes import POISON, Poison
    layer = LAYERS[c.func.name]
    in_expr, args = _bind(ck, layer, c)
    outer_hint, outer_span = ck.b.name_hint, ck.b.span
    x = ck.expr(in_expr)
    if isinstance(x, Poison):
        return POISON
    from .shapes import Lit
    if isinstance(x, Lit):
        ck.report(error("not-tensor", f"`{layer.name}` needs a tensor input, not a number", in_expr.span))
    stmts: list = []
    if isinstance(in_expr, ast.Name) and ck.env.get(in_expr.id) is x:
        args["__in"] = in_expr.id
    else:
        args["__in"] = ck.unique(f"{layer.name}_in")
        ck.env[args["__in"]] = x
        stmts.append(("bound", args["__in"], in_expr))
    params, value = layer.build(ck, x, args, c.span)
    # Where the params live: an explicit name= scope, the current scope, or an automatic one.
    sub = args.get("name")
    if sub is None and not ck.scope and params:
        ck.layer_counts[layer.name] = ck.layer_counts.get(layer.name, 0) + 1
        sub = f"{layer.name}_{ck.layer_counts[layer.name]}"
    out_name = outer_hint.rsplit("/", 1)[-1] if ck.current_rhs is c else ck.unique(f"{layer.name}_out")
    core = [ast.ParamDecl(ast.Ident(n, c.span), _type(dims, c.span), init, c.span) for n, dims, init in params]
    if args.get("l2"):
        ck.penalty_count += 1
        pen = f"l2_penalty_{ck.penalty_count}"
        core.append(ast.Let(ast.Ident(pen, c.span), ast.BinOp("*", _num(float(args["l2"]), c.span),
                                                                _call("l2_loss", c.span, ast.Name(params[0][0], c.span)),
                                                                c.span), c.span))
    core.append(ast.Let(ast.Ident(out_name, c.span), value, c.span))
    block = [ast.ScopeBlock(ast.Ident(sub, c.span), tuple(core), c.span)] if sub else core
    ck.expansions[id(c)] = (stmts, block)
    ck.subst[id(c)] = ast.Name(out_name, c.span)
    for stmt in block:
        ck.statement(stmt)
    ck.b.name_hint, ck.b.span = outer_hint, outer_span
    if args.get("l2"):
        pen_value = ck.env.get(f"l2_penalty_{ck.penalty_count}")
        if pen_value is not None and not isinstance(pen_value, Poison):
            ck.penalties.append(pen_value)
            ck.penalty_names.append(f"l2_penalty_{ck.penalty_count}")
    return ck.env.get(out_name, POISON)
