"""The checker's side of layer calls: a layer's pure builder says which params and which core
expression it needs; here they get their names and scope (`name=`, the current scope, or an
automatic `conv_1`), the L2 penalty joins the loss, the core statements are checked like
hand-written ones, and the expansion is recorded for `cnnc check --desugar`.

`LayerSugar` is a part of the Checker."""
from __future__ import annotations

from ...spec import ast
from ...spec.diagnostics import error
from ..ops import OpError
from .binder import bind
from .layers import LAYERS, InitCall, call, f32, number
from .messages import with_op
from .values import POISON, Lit, Poison


class LayerSugar:
    """Layer expansion for the Checker."""

    def layer_call(self, c: ast.Call):
        """Expand a layer call into core statements, check them, and return the layer's output."""
        layer = LAYERS[c.func.name]
        values, _ = bind(self, layer.name, layer.args, c, self.in_binding(c))
        in_expr = values["input"]
        args = {a.name: self.initializer_call(values[a.name], c.span) if a.kind == "initializer"
                else values[a.name] for a in layer.args if a.name != "input"}
        outer_hint, outer_span = self.b.name_hint, self.b.span
        x = self.expr(in_expr)
        if isinstance(x, Poison):
            return POISON
        if isinstance(x, Lit):
            self.report(error("not-tensor", f"`{layer.name}` needs a tensor input, not a number", in_expr.span))
        bound: list = []
        if isinstance(in_expr, ast.Name) and self.env.get(in_expr.id) is x:
            in_name = in_expr.id
        else:
            in_name = self.b.unique(f"{layer.name}_in")
            self.env[in_name] = x
            bound.append(("bound", in_name, in_expr))
        out_name = outer_hint.rsplit("/", 1)[-1] if self.current_rhs is c else self.b.unique(f"{layer.name}_out")
        try:
            built = layer.build(x.type, dict(args, input=in_name, output=out_name), c.span)
        except OpError as err:
            self.report(error(err.code, with_op(layer.name, err.message), c.span, notes=err.notes,
                              help=err.help))
        params, value, before = built if len(built) == 3 else (*built, [])
        # Where the params live: an explicit name= scope, the current scope, or an automatic one.
        sub = args.get("name")
        if sub is None and not self.scope and (params or before):
            self.layer_counts[layer.name] = self.layer_counts.get(layer.name, 0) + 1
            sub = f"{layer.name}_{self.layer_counts[layer.name]}"
        core = [ast.ParamDecl(ast.Ident(n, c.span), f32(dims, c.span), init, c.span) for n, dims, init in params]
        core += before
        penalty = None
        if args.get("l2"):
            self.penalty_count += 1
            penalty = f"l2_penalty_{self.penalty_count}"
            # every weight is penalised, never the bias
            losses = [call("l2_loss", c.span, ast.Name(n, c.span)) for n, _, _ in params if n != "bias"]
            total = losses[0]
            for more in losses[1:]:
                total = ast.BinOp("+", total, more, c.span)
            l2 = ast.BinOp("*", number(float(args["l2"]), c.span), total, c.span)
            core.append(ast.Let(ast.Ident(penalty, c.span), l2, c.span))
        core.append(ast.Let(ast.Ident(out_name, c.span), value, c.span))
        block = [ast.ScopeBlock(ast.Ident(sub, c.span), tuple(core), c.span)] if sub else core
        self.expansions[id(c)] = (bound, block)
        self.subst[id(c)] = ast.Name(out_name, c.span)
        for stmt in block:
            self.statement(stmt)
        self.b.name_hint, self.b.span = outer_hint, outer_span
        if penalty is not None:
            pen_value = self.env.get(penalty)
            if pen_value is not None and not isinstance(pen_value, Poison):
                self.penalties.append(pen_value)
                self.penalty_names.append(penalty)
        return self.env.get(out_name, POISON)

    def initializer_call(self, v, span) -> ast.Call:
        """A layer's initializer argument as a call: `zeros()`, or `zeros` / "zeros" written bare."""
        if isinstance(v, InitCall):
            return v.call(span)
        if isinstance(v, ast.Call):
            return v
        return call(v.id if isinstance(v, ast.Name) else str(self.static(v)), v.span)
