"""Softmax cross-entropy losses, each with a fused backward: softmax(logits) - labels."""
from __future__ import annotations

from ..types import TensorType
from . import Arg, OpDef, OpError, register
from .common import need_dtype, need_float
from ..kernel import Kernel, Lin, numel, record


def xent_kernel(mode):
    """Row-wise over the class (last) axis: loss, or its gradient wrt the logits."""
    def rule(node):
        logits = node.inputs[1].type
        rows = numel(logits.with_shape(logits.shape[:-1]))
        return Kernel("xent.c.j2", record(mode=mode, rows=rows, classes=Lin.of(logits.shape[-1])))
    return rule


def xent_shape(ins, attrs):
    labels, logits = ins
    need_float(logits, "logits"), need_float(labels, "labels")
    if logits.rank < 1:
        raise OpError(f"`logits` must have a class axis, got {logits}", arg="logits")
    if labels.shape != logits.shape:
        raise OpError(f"`labels` {labels} and `logits` {logits} must have the same shape",
                      arg="labels", code="labels",
                      notes=["softmax_cross_entropy_with_logits takes one-hot or soft labels, "
                             "one probability per class"],
                      help=("for integer class ids use sparse_softmax_cross_entropy_with_logits"
                            if labels.rank == logits.rank - 1 else None))
    return logits.with_shape(logits.shape[:-1])


def xent_vjp(b, node, dout):
    labels, logits = node.inputs
    dlogits = b.op("softmax_xent_grad", labels, logits, dout)
    dlabels = b.op("mul", b.op("neg", b.op("log_softmax", logits)), b.op("expand_dims", dout, axis=-1))
    return dlabels, dlogits


register(OpDef("softmax_cross_entropy_with_logits", (Arg("labels"), Arg("logits")), xent_shape,
               xent_vjp, kernel=xent_kernel("dense"), doc="-sum(labels * log_softmax(logits)) over the last axis"))


def sparse_xent_shape(ins, attrs):
    labels, logits = ins
    need_float(logits, "logits")
    if labels.dtype != "i32":
        hint = ("labels look one-hot: use softmax_cross_entropy_with_logits"
                if labels.shape == logits.shape else "convert them with cast({labels}, i32)")
        raise OpError(f"`labels` must be i32 class ids, got {labels}", arg="labels", code="dtype",
                      help=hint)
    if logits.rank < 1 or labels.shape != logits.shape[:-1]:
        raise OpError(f"`labels` {labels} must have the shape of `logits` {logits} without its "
                      "class axis", arg="labels", code="labels",
                      help=f"labels should be i32[{', '.join(map(str, logits.shape[:-1]))}]")
    return logits.with_shape(logits.shape[:-1])


register(OpDef("sparse_softmax_cross_entropy_with_logits", (Arg("labels"), Arg("logits")),
               sparse_xent_shape,
               lambda b, n, d: (None, b.op("sparse_softmax_xent_grad", n.inputs[0], n.inputs[1], d)),
               kernel=xent_kernel("sparse"), doc="-log_softmax(logits)[label], labels as i32 class ids",
               # checked by the runtime before any kernel runs: a label past the class axis would
               # read outside the logits (TF raises too)
               extra={"index_range": {"labels": ("class labels", lambda ins: ins[1].shape[-1])}}))
register(OpDef("softmax_xent_grad", (Arg("labels"), Arg("logits"), Arg("dout")),
               lambda ins, attrs: ins[1], public=False, kernel=xent_kernel("dense_grad"),
               doc="(softmax(logits) * sum(labels) - labels) * dout"))
register(OpDef("sparse_softmax_xent_grad", (Arg("labels"), Arg("logits"), Arg("dout")),
               lambda ins, attrs: ins[1], public=False, kernel=xent_kernel("sparse_grad"),
               doc="(softmax(logits) - onehot) * dout"))
