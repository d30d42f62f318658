"""The C functions a Program's kernels become: one per distinct kernel record, named for what
it computes, its parameters named for the op's own arguments.

Names, as in llm.c: a forward kernel is `<binding>_forward` (`conv2_forward`), or
`<binding>_<op>_forward` for one of several ops inside a binding (`fc1_matmul_forward`).
A backward kernel is the gradient it computes: `d<binding>` when the forward op has one
differentiable input (`dpool1`; `dfc1_relu` for one op of several in a binding), else
`d<binding>_<input>` (`dconv2_input`, `dconv2_weight`), the input named by the param it is
(`weight`, `bias`) or else by the op's argument (`input`); the sum of a value's gradients
is `d<value>`. A binding is named by its last scope component
when no other name shares it (`layer3-conv2/conv2` -> conv2), else in full. Fused kernels are
named for the node that produces the chain (the conv, not the relu after it). A name already
taken (by another kernel, an entry point or a C keyword) gets the op added, then a number."""
from __future__ import annotations

import re
from collections import Counter
from dataclasses import dataclass
from pathlib import PurePath

from .autodiff import GradOf
from .ir import Graph, Node, Value, _attr_str
from .kernel import Kernel, c_comment, ctype, sanitize
from .ops import REGISTRY

# C keywords, and the libm names `d` + a binding could spell (drem)
C_RESERVED = frozenset("""auto break case char const continue default do double else enum extern
float for goto if inline int long register restrict return short signed sizeof static struct
switch typedef union unsigned void volatile while drem dremf dreml""".split())
FIXED_PARAMS = ("out", "scratch", "key", "training", "N")


@dataclass(frozen=True)
class KernelFn:
    """One generated C function (shared by every node whose kernel record is identical).

    args: C names of the output and of each input, in call order (templates use them)."""

    name: str
    comment: str
    params: str
    kernel: Kernel
    args: tuple[str, ...] = ()


class Functions:
    """Names and signatures of the kernel functions, made on first use (deterministic: the
    same graph lowered in the same order gives the same names)."""

    def __init__(self, g: Graph, roles: dict[int, GradOf], source, taken: set[str]):
        self.g, self.roles, self.source = g, roles, source
        self.fns: list[KernelFn] = []
        self.by_record: dict[tuple, str] = {}
        self.fn_of: dict[int, str] = {}
        self.names: set[str] = set(taken) | C_RESERVED
        self.short = short_names(g)

    def fn_for(self, node: Node, k: Kernel, producer: Node) -> str:
        """The function computing `node` with kernel `k`; `producer` is the node a fused
        chain starts from (the node itself when not fused)."""
        if id(node) in self.fn_of:
            return self.fn_of[id(node)]
        types = (ctype(node.out.type),) + tuple(ctype(v.type) for v in node.inputs)
        # all that shapes the C; a gradient does not call a forward kernel, to read as what it is
        key = (k.template, k.p, k.scratch, k.rng, k.exact, types, producer.phase == "forward")
        if key in self.by_record:
            self.fn_of[id(node)] = self.by_record[key]
            return self.by_record[key]
        name = self._name(producer)
        args = ("out",) + arg_names(node)
        params = [f"{types[0]}* restrict out"] + [f"const {t}* restrict {a}" for t, a in zip(types[1:], args[1:])]
        if not k.scratch.is_zero:
            params.append("uint8_t* restrict scratch")
        if k.rng:
            params += ["uint64_t key", "int training"]
        params.append("int N")
        self.fns.append(KernelFn(name, self._comment(node, k, args), ", ".join(params), k, args))
        self.by_record[key] = self.fn_of[id(node)] = name
        return name

    # ---------------------------------------------------------------- names

    def _name(self, node: Node) -> str:
        if node.phase == "forward":
            b, own = self._binding(node)
            cands = ([f"{b}_forward"] if own else []) + [f"{b}_{node.op}_forward"]
        else:
            cands = self._grad_names(node)
        for cand in cands:
            if cand not in self.names:
                self.names.add(cand)
                return cand
        return unique(cands[-1], self.names)

    def _grad_names(self, node: Node) -> list[str]:
        role = self.roles.get(node.out.id)
        if role is None:
            return [sanitize(node.out.name)]
        if role.node is None:                              # the sum of a value's gradients
            return [f"d{self._value(role.value)}", f"d{self._value(role.value)}_{node.op}"]
        fwd = role.node
        b, own = self._binding(fwd)
        what = _input_name(fwd, role.index) if role.index >= 0 else node.op
        if role.index >= 0 and sum(v.type.dtype == "f32" for v in fwd.inputs) == 1:
            what = ""
        if not what and not own:                           # one op of several in the binding
            what = fwd.op
        tail = f"_{what}" if what else ""
        cands = [f"d{b}{tail}"] + ([] if own or what == fwd.op else [f"d{b}_{fwd.op}{tail}"])
        return cands + [f"{cands[-1]}_{node.op}"]

    def local_name(self, v: Value) -> str:
        """A C name for a value an entry point keeps in its workspace: its binding's (relu1,
        fc1_relu), or the gradient it is (dconv2_input, dlogits)."""
        if v.node is None:
            return sanitize(v.name)
        if v.node.phase == "forward":
            return self._value(v)
        return self._grad_names(v.node)[0]

    def _binding(self, node: Node) -> tuple[str, bool]:
        """(C name of the node's binding, whether the node is the binding's own value)."""
        full = binding(node.out.name, node.op)
        return self.short.get(full, sanitize(full)), full == node.out.name

    def _value(self, v: Value) -> str:
        if v.name in self.short:
            return self.short[v.name]
        if v.node is not None:
            b, own = self._binding(v.node)
            return b if own else f"{b}_{v.node.op}"
        return sanitize(v.name)

    # ---------------------------------------------------------------- comment

    def _comment(self, node: Node, k: Kernel, args) -> str:
        where = PurePath(self.g.source_name).name       # not the path: same spec, same bytes
        if self.source is not None and node.span.end > node.span.start:
            where += f":{self.source.line_col(node.span.start)[0]}"
        call_args = ", ".join(v.name for v in node.inputs)
        quiet = {a.name: a.default for a in REGISTRY[node.op].args if a.quiet_default}
        attrs = " ".join(f"{a}={_attr_str(v)}" for a, v in node.attrs.items() if a not in quiet or v != quiet[a])
        tag = "" if node.phase == "forward" else f"  [{node.phase}]"
        shapes = "  ".join(f"{a} {v.type}" for a, v in zip(args[1:], node.inputs)) + f"  ->  out {node.out.type}"
        call = k.call or f"{node.op}({call_args})"
        lines = [f"{where}  {node.out.name} = {call} {attrs}".rstrip() + tag, shapes]
        lines.extend(k.note.splitlines())
        return c_comment(lines)


def arg_names(node: Node) -> tuple[str, ...]:
    """C names of a node's inputs: its op's tensor arguments, then (a fused node's epilogue
    operands) vec0, vec1, ..."""
    # a list argument's items: values[0] -> values0
    own = [sanitize(re.sub(r"\[(\d+)\]", r"\1", a)) for a in REGISTRY[node.op].input_names(len(node.inputs))]
    out = []
    for i in range(len(node.inputs)):
        name = own[i] if i < len(own) else f"vec{i - len(own)}"
        out.append(name + "_" if name in C_RESERVED or name in FIXED_PARAMS else name)
    return tuple(out)


def binding(name: str, op: str | None) -> str:
    """The spec binding of a node name "<binding>.<op>" or "<binding>.<op>_2"."""
    head, dot, tail = name.rpartition(".")
    if dot and (op is None and re.fullmatch(r"[a-z0-9_]+", tail) or
                op is not None and re.fullmatch(re.escape(op) + r"(_\d+)?", tail)):
        return head
    return name


def short_names(g: Graph) -> dict[str, str]:
    """C names of the graph's bindings, inputs and params: the last scope component when no
    other name ends the same, else the whole scoped name."""
    names = {v.name for v in g.inputs + g.params + g.state}
    names |= {binding(n.out.name, n.op) for n in g.nodes if n.phase == "forward"}
    leaf = {n: n.rsplit("/", 1)[-1] for n in names}
    count = Counter(sanitize(x) for x in leaf.values())
    return {n: sanitize(leaf[n]) if count[sanitize(leaf[n])] == 1 else sanitize(n) for n in sorted(names)}


def _input_name(fwd: Node, index: int) -> str:
    """A forward node's input as a gradient's name says it: the param's own name, else the
    op's argument."""
    v = fwd.inputs[index]
    if v.kind == "param":
        return sanitize(v.name.rsplit("/", 1)[-1])
    return arg_names(fwd)[index].rstrip("_")


def unique(name: str, taken: set) -> str:
    """`name`, or name_2, name_3, ...: the first not in `taken` (which it joins)."""
    out, i = name, 2
    while out in taken:
        out, i = f"{name}_{i}", i + 1
    taken.add(out)
    return out
