"""The `lower` stage: GradGraph -> Program: kernels with every size resolved, a buffer plan,
and four entry points. Batch-norm folding (fold.py), fusion (fuse.py) and the buffer plan
(memory.py) are its sub-steps.

  forward     outputs, dropout off, moving statistics (batch norms folded into their convs)
  backward    the VJP of the outputs (inference mode): given a gradient per f32 output, the
              gradient of every param (into the grads slab) and of every f32 input (zeros
              where none flows)
  train_step  loss and metrics with dropout on and batch statistics, the loss gradient, the
              state updates (into state_next), then the optimizer update
  eval_step   loss and metrics, dropout off, moving statistics (folded), no update

An inference program (`inference=True`, for an exported library) has the forward entry point
alone, and its dropout is gone: `x * dropout_mask(x)` is `x` itself (the mask is all ones
outside training), an alias like a reshape.

Each entry point computes only what its results need (dead nodes are dropped), in graph
order. A node becomes one call of its op's kernel function; reshape-like ops become aliases
of their operand's memory. A result is written straight into its destination (the caller's
output array, the grads slab) when it owns its memory, else copied there at the end."""
from __future__ import annotations

import copy
from dataclasses import dataclass, field
from pathlib import PurePath

import numpy as np

from .. import __version__
from .autodiff import GradGraph
from .bounds import batch_limit, index_bounds
from . import modes
from .fold import fold_batch_norms
from .fuse import fuse
from .functions import Functions, KernelFn, unique
from .ir import Graph, Node, Value, closure
from .kernel import ALIAS, Kernel, Lin, c_float, ctype, numel, sanitize, threads_when
from .memory import Interval, WorkspacePlan, plan, totals
from .ops import REGISTRY
from .optimizers import OPTIMIZERS
from .types import C_TYPES, ITEMSIZE

PARAM_ALIGN = 16            # floats: each param starts on a 64-byte boundary of its slab
ENTRY_SUFFIXES = ("forward", "backward", "train_step", "eval_step", "grad_step", "apply_update",
                  "workspace_size", "params_size", "set_threads")


class LowerError(Exception):
    """A graph the code generator cannot handle (a cnnc bug or a missing kernel)."""


@dataclass(frozen=True)
class Step:
    """One statement of an entry point: a kernel call, or a copy / zero-fill of a result."""

    kind: str                       # call | copy | zero
    fn: str = ""
    args: tuple[str, ...] = ()
    dst: str = ""
    src: str = ""
    count: Lin = Lin()
    ctype: str = "float"
    src_ctype: str = "float"


@dataclass(frozen=True)
class Local:
    name: str
    ctype: str
    offset: str                     # byte offset into ws, a C expression


@dataclass
class Entry:
    name: str
    symbol: str
    params: list[tuple[str, str]]   # (C declaration type, name)
    args: list[list[str]]           # manifest descriptors of the same parameters
    locals: list[Local]
    steps: list[Step]
    workspace: WorkspacePlan
    rng: bool = False
    update: dict | None = None      # train_step: the optimizer, for the fused update


@dataclass
class Program:
    model: str
    symbol: str                     # C prefix of the entry points
    source_name: str
    kernels: list[KernelFn]
    consts: list[tuple[str, str, list[str]]]      # (name, C type, literal values)
    entries: list[Entry]
    params_size: int                # floats
    optimizer_size: int             # floats
    manifest: dict
    memory: dict = field(default_factory=dict)


# --------------------------------------------------------------------------- graph helpers


def _depends_on(values, graph: Graph) -> list[Value]:
    ids = {id(n) for n in closure(values)}
    used = {v.id for n in graph.nodes if id(n) in ids for v in n.inputs} | {v.id for v in values}
    return [v for v in graph.inputs if v.id in used]


def shape_json(t) -> list:
    return [d if isinstance(d, int) else str(d) for d in t.shape]


# --------------------------------------------------------------------------- lowering


class _Lowerer:
    def __init__(self, g: Graph, roles, source, fusion: bool = True, inference: bool = False):
        self.g, self.source, self.fusion, self.inference = g, source, fusion, inference
        self.kernels: dict[int, Kernel | str] = {}
        self.root: dict[int, Value] = {}
        # kernel names must not take the module's own symbols (a binding named like the model)
        self.functions = Functions(g, roles, source, {f"{sanitize(g.model)}_{x}" for x in ENTRY_SUFFIXES})
        self.producer: dict[int, Node] = {}     # fused node -> the node its chain starts from
        self.salt: dict[int, int] = {}
        self.keep: list[Node] = []
        for v in g.inputs + g.params + g.state + g.const_values:
            self.root[v.id] = v
        for node in g.nodes:
            k = self.kernel(node)
            self.root[node.out.id] = self.root.get(node.inputs[0].id, node.inputs[0]) if k == ALIAS else node.out
        self.param_off, off = {}, 0
        for p in g.params:
            self.param_off[p.id] = off
            off += -(-numel(p.type).b // PARAM_ALIGN) * PARAM_ALIGN
        self.params_size = off
        self.state_off, off = {}, 0
        for v in g.state:
            self.state_off[v.id] = off
            off += -(-numel(v.type).b // PARAM_ALIGN) * PARAM_ALIGN
        self.state_size = off

    def kernel(self, node: Node):
        if id(node) not in self.kernels:
            rule = REGISTRY[node.op].kernel
            if self.inference and _is_dropout(node):
                rule = lambda node: ALIAS
            elif rule is None:
                raise LowerError(f"op `{node.op}` has no kernel")
            self.kernels[id(node)] = rule(node)
        return self.kernels[id(node)]

    def operands(self, node: Node) -> list[Value]:
        """The values a node's result needs: a dropped dropout needs its input alone."""
        return node.inputs[:1] if self.inference and _is_dropout(node) else node.inputs

    def rootof(self, v: Value) -> Value:
        return self.root.get(v.id, v)

    def fn_for(self, node: Node) -> str:
        return self.functions.fn_for(node, self.kernel(node), self.producer.get(id(node), node))

    # ---------------------------------------------------------------- entry points

    def entry(self, name, symbol, params, ext, results, zero, training, update=None, first=False) -> Entry:
        """params: (C type, C name, descriptor); ext: value id -> C expression;
        results: (value, destination expr, destination C type); zero: (dest, count, ctype).
        first: the entry takes `first`, the global index of its batch's first example, and
        draws dropout masks as the whole global batch would (a rank's slice of it)."""
        nodes_needed = {id(n) for n in closure([v for v, _, _ in results], self.operands)}
        nodes = [n for n in self.g.nodes if id(n) in nodes_needed and self.kernel(n) != ALIAS]
        if self.fusion:
            nodes, fused, producers = fuse(nodes, self.kernel, self.rootof, {self.rootof(v).id for v, _, _ in results})
            self.kernels.update(fused)
            self.producer.update(producers)
            self.keep.extend(nodes)     # fused nodes are keyed by id(): keep them alive
        placed: dict[int, str] = {}
        for v, dest, dtype in results:
            r = self.rootof(v)
            if r.kind == "node" and r.id not in placed and id(r.node) in nodes_needed and \
                    ctype(v.type) == dtype:
                placed[r.id] = dest
        intervals: dict[object, Interval] = {}
        calls = []
        for i, node in enumerate(nodes):
            r = self.rootof(node.out)
            if r.id not in placed:
                intervals[r.id] = Interval(r, numel(r.type) * ITEMSIZE[r.type.dtype], i, i)
            for v in node.inputs:
                rv = self.rootof(v)
                if rv.id in intervals:
                    intervals[rv.id].end = i
            k = self.kernel(node)
            if not k.scratch.is_zero:
                intervals[("scratch", i)] = Interval(None, k.scratch, i, i)
            calls.append(node)
        copies = [(v, dest, dtype) for v, dest, dtype in results if placed.get(self.rootof(v).id) != dest]
        for v, _, _ in copies:
            rv = self.rootof(v)
            if rv.id in intervals:
                intervals[rv.id].end = len(nodes)
        ws = plan(list(intervals.values()))
        fns = [self.fn_for(node) for node in calls]
        locals_, loc = [], dict(ext)
        taken = {p[1] for p in params} | self.functions.names     # a local must not hide a kernel
        for key, iv in intervals.items():
            if isinstance(key, tuple):
                continue
            lname = unique("t_" + self.functions.local_name(iv.key), taken)
            locals_.append(Local(lname, C_TYPES[iv.key.type.dtype], _ws_expr(iv.offset)))
            loc[key] = lname
        loc.update(placed)

        def where(v: Value) -> str:
            r = self.rootof(v)
            if r.id in loc:
                return loc[r.id]
            if r.kind == "param":
                return f"params + {self.param_off[r.id]}"
            if r.kind == "state":
                return f"state + {self.state_off[r.id]}"
            if r.kind == "const":
                return f"k{r.id}"
            raise LowerError(f"no location for {v!r} in {name}")

        steps, rng = [], False
        for i, node in enumerate(calls):
            k = self.kernel(node)
            args = [where(node.out)] + [where(v) for v in node.inputs]
            if not k.scratch.is_zero:
                args.append("ws + " + _ws_expr(intervals[("scratch", i)].offset))
            if k.rng:
                rng = True
                salt = self.salt.setdefault(id(node), len(self.salt) + 1)
                key = f"cnnc_mix(key + {salt}u)"
                per_example = numel(node.out.type).a
                if first and per_example:    # element i of this slice is element first*a + i globally
                    key += f" + (uint64_t)first * {per_example}u"
                args += [key if training else "0", "1" if training else "0"]
            steps.append(Step("call", fns[i], tuple(args + ["N"])))
        for v, dest, dtype in copies:
            steps.append(Step("copy", dst=dest, src=where(v), count=numel(v.type), ctype=dtype,
                              src_ctype=ctype(v.type)))
        for dest, count, dtype in zero:
            steps.append(Step("zero", dst=dest, count=count, ctype=dtype))
        return Entry(name, symbol, [(t, n) for t, n, _ in params], [d for _, _, d in params],
                     locals_, steps, ws, rng and training, update)


def _is_dropout(node: Node) -> bool:
    """`x * dropout_mask(x)`, as dropout expands (ops/nn.py): x itself when not training."""
    mask = node.inputs[1].node if node.op == "mul" and len(node.inputs) == 2 else None
    return mask is not None and mask.op == "dropout_mask" and mask.inputs[0] is node.inputs[0]


def _ws_expr(off: Lin) -> str:
    if off.a == 0:
        return str(off.b)
    return f"{off.a}*(size_t)N + {off.b}"


# --------------------------------------------------------------------------- the program


def lower(grads: GradGraph, source=None, fusion: bool = True, fold: bool = True,
          inference: bool = False) -> Program:
    """Lower a differentiated graph (not modified) to a Program. `source` (spec.source.Source)
    gives kernel comments their line numbers; `fusion=False` keeps every op its own kernel;
    `fold=False` keeps inference batch norms apart from the convs before them (fold.py);
    `inference=True` lowers the forward entry point alone, dropout gone (`grads` may then hold
    the graph without gradients: see inference_grads)."""
    folded: dict[int, Value] = {}             # forward and eval_step read these values instead
    if fold:
        copied = copy.deepcopy(grads)
        g = copied.graph
        folded = fold_batch_norms(g, list(g.outputs.values()) + ([g.loss, *g.metrics.values()]
                                                                  if g.loss is not None else []))
        if folded:
            grads = copied
    g, douts, bwd, trn = grads.graph, grads.douts, grads.backward, grads.train
    feature = _depends_on(list(g.outputs.values()), g)
    feature_ids = {v.id for v in feature}
    lw = _Lowerer(g, grads.roles, source, fusion, inference)
    sym = sanitize(g.model)
    taken: set[str] = {"params", "grads", "opt", "ws", "results", "lr", "t", "seed", "counter", "N", "key",
                       "state", "state_next", "first"}
    # state is read by every entry point and written only by train_step and apply_update
    # (through state_next)
    state_in = [("const float*", "state", ["state"])] if g.state else []

    def input_params(values, const=True):
        out = []
        for v in values:
            c = unique("in_" + sanitize(v.name), taken)
            out.append((f"const {ctype(v.type)}*", c, ["input", v.name]))
        return out

    in_params = {v.id: p for v, p in zip(g.inputs, input_params(g.inputs))}
    ext_inputs = {v.id: in_params[v.id][1] for v in g.inputs}
    entries = []

    # forward
    outs = [(folded.get(v.id, v), unique("out_" + sanitize(n), taken), n) for n, v in g.outputs.items()]
    params = [("const float*", "params", ["params"])] + state_in + [("uint8_t*", "ws", ["ws"])]
    params += [in_params[v.id] for v in feature]
    params += [(f"{ctype(v.type)}*", c, ["output", n]) for v, c, n in outs]
    params.append(("int", "N", ["N"]))
    entries.append(lw.entry("forward", f"{sym}_forward", params, ext_inputs,
                            [(v, c, ctype(v.type)) for v, c, _ in outs], [], training=False))

    if inference:
        return _program(g, lw, entries, (), feature_ids, training=False)

    # backward
    f32_inputs = [v for v in g.inputs if v.type.dtype == "f32"]
    dparams = {n: unique("d_" + sanitize(n), taken) for n in douts}
    dx = {v.id: unique("dx_" + sanitize(v.name), taken) for v in f32_inputs}
    params = [("const float*", "params", ["params"])] + state_in
    params += [("float*", "grads", ["grads"]), ("uint8_t*", "ws", ["ws"])]
    params += [in_params[v.id] for v in feature]
    params += [("const float*", dparams[n], ["dout", n]) for n in douts]
    params += [("float*", dx[v.id], ["dinput", v.name]) for v in f32_inputs]
    params.append(("int", "N", ["N"]))
    ext = {**ext_inputs, **{d.id: dparams[n] for n, d in douts.items()}}
    results, zero = [], []
    targets = [(p, f"grads + {lw.param_off[p.id]}") for p in g.params] + [(v, dx[v.id]) for v in f32_inputs]
    _route(targets, bwd, results, zero)
    entries.append(lw.entry("backward", f"{sym}_backward", params, ext, results, zero, training=False))

    opt = g.optimizer
    slots = OPTIMIZERS[opt.kind].slots if opt is not None else ()
    if g.loss is not None:
        scalars = [g.loss] + list(g.metrics.values())
        bad = [v for v in scalars if v.type.shape]
        if bad:
            raise LowerError(f"loss and metrics must be scalars; {bad[0].name} is {bad[0].type}")
        res = [(folded.get(v.id, v), f"results + {i}", "float") for i, v in enumerate(scalars)]
        params = [("const float*", "params", ["params"])] + state_in + [("uint8_t*", "ws", ["ws"])]
        params += [in_params[v.id] for v in g.inputs] + [("float*", "results", ["results"]), ("int", "N", ["N"])]
        entries.append(lw.entry("eval_step", f"{sym}_eval_step", params, ext_inputs, res, [], training=False))
        if opt is not None:
            # a training step's own loss and metrics (batch statistics where the spec says so)
            train_scalars = [g.train_loss or g.loss] + [g.train_metrics.get(k, v) for k, v in g.metrics.items()]
            res = [(v, f"results + {i}", "float") for i, v in enumerate(train_scalars)]
            params = [("float*", "params", ["params"])]
            if g.state:
                params += [("float*", "state", ["state"]), ("float*", "state_next", ["state_next"])]
            params += [("float*", "grads", ["grads"]), ("float*", "opt", ["opt"]), ("uint8_t*", "ws", ["ws"])]
            params += [in_params[v.id] for v in g.inputs] + [("float*", "results", ["results"])]
            params += [("float", "lr", ["lr"]), ("int", "t", ["t"]), ("uint64_t", "seed", ["seed"]),
                       ("uint64_t", "counter", ["counter"]), ("int", "N", ["N"])]
            zero = []
            _route([(p, f"grads + {lw.param_off[p.id]}") for p in g.params], trn, res, zero)
            # each update's new value goes to state_next; update.c.j2 copies it over the state
            # once the step is known to be finite
            updated = [v for v in g.state if v.id in g.updates]
            res += [(g.updates[v.id], f"state_next + {lw.state_off[v.id]}", "float") for v in updated]
            hyper = dict(OPTIMIZERS[opt.kind].defaults, **dict(opt.hyper))
            # threads split the slab once it is big enough to pay for them (flowers: 5.5M)
            update = dict(kind=opt.kind, size=lw.params_size, threads=threads_when(Lin(0, lw.params_size)),
                          state=[(lw.state_off[v.id], numel(v.type).b) for v in updated],
                          **OPTIMIZERS[opt.kind].c_update({k: c_float(v) for k, v in hyper.items()}))
            entries.append(lw.entry("train_step", f"{sym}_train_step", params, ext_inputs, res, zero,
                                    training=True, update=update))
            # data-parallel training splits train_step in two around the gradient allreduce:
            # grad_step (a slice of a global batch, starting at example `first`) and apply_update
            # (grad_step writes this rank's new state values to state_next; the ranks average
            # them, and apply_update copies them over the state with the update)
            state_io = [("const float*", "state", ["state"]), ("float*", "state_next", ["state_next"])] \
                if g.state else []
            params = [("const float*", "params", ["params"])] + state_io
            params += [("float*", "grads", ["grads"]), ("uint8_t*", "ws", ["ws"])]
            params += [in_params[v.id] for v in g.inputs] + [("float*", "results", ["results"])]
            params += [("uint64_t", "seed", ["seed"]), ("uint64_t", "counter", ["counter"]),
                       ("int64_t", "first", ["first"]), ("int", "N", ["N"])]
            entries.append(lw.entry("grad_step", f"{sym}_grad_step", params, ext_inputs, res, zero,
                                    training=True, first=True))
            params = [("float*", "params", ["params"])]
            if g.state:
                params += [("float*", "state", ["state"]), ("float*", "state_next", ["state_next"])]
            params += [("const float*", "grads", ["grads"]), ("float*", "opt", ["opt"]),
                       ("const float*", "results", ["results"]), ("float", "lr", ["lr"]), ("int", "t", ["t"])]
            entries.append(Entry("apply_update", f"{sym}_apply_update", [(t, n) for t, n, _ in params],
                                 [d for _, _, d in params], [], [], WorkspacePlan(0, 0), update=update))

    return _program(g, lw, entries, slots, feature_ids)


def inference_grads(graph: Graph) -> GradGraph:
    """`graph` as lower(inference=True) takes it: every if_training on its inference side (a
    copy, modes.split) and no gradients (an inference program needs none)."""
    if any(n.op == modes.OP for n in graph.nodes):
        graph = modes.split(copy.deepcopy(graph))
    return GradGraph(graph, {}, {}, None, {})


def _program(g: Graph, lw: _Lowerer, entries: list[Entry], slots, feature_ids, training: bool = True) -> Program:
    """The Program of lowered entry points: constants, memory (no gradient slab without
    training) and manifest."""
    consts = []
    for v in g.const_values:
        data = np.asarray(g.consts[v.id]).reshape(-1)
        lit = [c_float(x) for x in data] if v.type.dtype == "f32" else [str(int(x)) for x in data]
        consts.append((f"k{v.id}", ctype(v.type), lit or ["0"]))

    memory = {
        "params_bytes": 4 * lw.params_size,
        "grads_bytes": 4 * lw.params_size if training else 0,
        "optimizer_bytes": 4 * lw.params_size * len(slots),
        "state_bytes": 8 * lw.state_size,          # the state and train_step's state_next
        "workspace": {"fixed_bytes": max(e.workspace.fixed for e in entries),
                      "per_example_bytes": max(e.workspace.per_example for e in entries)},
        "entries": {e.name: {"fixed_bytes": e.workspace.fixed, "per_example_bytes": e.workspace.per_example}
                    for e in entries},
    }
    memory["total_bytes"] = {str(n): v for n, v in totals(memory, (1, 32, 256)).items()}
    manifest = _manifest(g, lw, feature_ids, entries, slots, memory)
    # the file's name, not its path: the same spec gives the same C (and build) from anywhere
    return Program(g.model, sanitize(g.model), PurePath(g.source_name).name, lw.functions.fns, consts, entries, lw.params_size,
                   lw.params_size * len(slots), manifest, memory)


def _route(targets, grads: dict, results: list, zero: list) -> None:
    """Each target's gradient goes to its destination; targets no gradient reaches get zeros."""
    for v, dest in targets:
        if v.id in grads:
            results.append((grads[v.id], dest, "float"))
        else:
            zero.append((dest, numel(v.type), "float"))


def _manifest(g: Graph, lw: _Lowerer, feature_ids, entries, slots, memory) -> dict:
    opt = g.optimizer
    return {
        "model": g.model,
        "symbol": sanitize(g.model),                  # prefix of the C functions
        "cnnc_version": __version__,
        "source": g.source_name,
        "inputs": [{"name": v.name, "dtype": v.type.dtype, "shape": shape_json(v.type)} for v in g.inputs],
        "feature_inputs": [v.name for v in g.inputs if v.id in feature_ids],
        "label_inputs": [v.name for v in g.inputs if v.id not in feature_ids],
        "params": [{"name": p.name, "shape": list(p.type.shape), "offset": lw.param_off[p.id],
                    "init": {"kind": g.inits[p.id].kind, "args": dict(g.inits[p.id].args)}}
                   for p in g.params],
        "params_size": lw.params_size,
        "state": [{"name": v.name, "shape": list(v.type.shape), "offset": lw.state_off[v.id],
                   "init": {"kind": g.inits[v.id].kind, "args": dict(g.inits[v.id].args)},
                   "updated": v.id in g.updates}
                  for v in g.state],
        "state_size": lw.state_size,
        "outputs": [{"name": n, "dtype": v.type.dtype, "shape": shape_json(v.type)} for n, v in g.outputs.items()],
        "loss": None if g.loss is None else {"dtype": g.loss.type.dtype, "shape": shape_json(g.loss.type)},
        "metrics": [{"name": n, "dtype": v.type.dtype, "shape": shape_json(v.type)} for n, v in g.metrics.items()],
        "optimizer": None if opt is None else {"kind": opt.kind, "hyper": dict(opt.hyper), "slots": list(slots)},
        "entries": {e.name: {"symbol": e.symbol, "args": e.args,
                             "workspace": {"fixed_bytes": e.workspace.fixed,
                                           "per_example_bytes": e.workspace.per_example}}
                    for e in entries},
        "memory": memory,
        "bounds": index_bounds(g),                    # labels and ids the runtime range-checks
        # no tensor or scratch buffer past 2^31 elements
        "batch_limit": batch_limit(g, {fn.name: Lin(fn.kernel.scratch.a // 4, fn.kernel.scratch.b // 4)
                                       for fn in lw.functions.fns}),
    }
