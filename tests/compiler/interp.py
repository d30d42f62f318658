"""A float64 NumPy interpreter of cnnc's typed IR, for checking autodiff without a C compiler.

Each node is evaluated by the plain-NumPy oracle in tests/reference/numpy_ops.py (the same
functions the C kernels are compared against); the few backward-only ops whose oracle is a
one-line formula are written out here. Nothing is imported from compiler/ but the graph
itself, so a wrong gradient rule cannot hide behind a shared helper.

Dropout: rate 0 is the identity; otherwise each dropout_mask node draws one fixed keep mask
(from `seed`) the first time it runs and reuses it, so repeated evaluations for finite
differences see the same function."""
from __future__ import annotations

import numpy as np

from tests.reference import numpy_ops as ref


def concrete(shape, n: int) -> tuple[int, ...]:
    """A shape with the batch symbol (an object with .coeff) or -1 replaced by a size."""
    out = []
    for d in shape:
        if hasattr(d, "coeff"):
            out.append(d.coeff * n)
        else:
            out.append(int(d))
    return tuple(out)


def _np_dtype(dtype: str):
    return {"f32": np.float64, "i32": np.int64, "bool": np.bool_}[dtype]


class Interpreter:
    def __init__(self, graph, n: int, seed: int = 0):
        self.graph, self.n = graph, n
        self.masks: dict[int, np.ndarray] = {}
        self.rng = np.random.default_rng(seed)

    def run(self, feeds: dict[str, np.ndarray]) -> dict[int, np.ndarray]:
        """Evaluate every node; feeds maps input, param and state names to arrays. Returns id -> array."""
        env: dict[int, np.ndarray] = {}
        for v in self.graph.inputs + self.graph.params + self.graph.state:
            a = np.asarray(feeds[v.name])
            want = concrete(v.type.shape, self.n)
            assert a.shape == want, f"{v.name}: fed {a.shape}, type says {want}"
            env[v.id] = a.astype(_np_dtype(v.type.dtype))
        for v in self.graph.const_values:
            env[v.id] = np.asarray(self.graph.consts[v.id]).astype(_np_dtype(v.type.dtype))
        for node in self.graph.nodes:
            args = [env[v.id] for v in node.inputs]
            out = np.asarray(self.eval(node, args))
            want = concrete(node.out.type.shape, self.n)
            assert out.shape == want, f"{node.op} -> {node.out.name}: got {out.shape}, type says {want}"
            env[node.out.id] = out.astype(_np_dtype(node.out.type.dtype))
        return env

    def eval(self, node, a):
        op, at, n = node.op, node.attrs, self.n
        if op in _SIMPLE:
            return _SIMPLE[op](*a)
        if op == "conv2d":
            return ref.conv2d(a[0], a[1], at["strides"], at["padding"], at["dilations"])
        if op == "conv2d_transpose":
            shape = concrete(node.out.type.shape, n)
            return ref.conv2d_transpose(a[0], a[1], shape, at["strides"], at["padding"], at["dilations"])
        if op == "conv2d_backprop_filter":
            return ref.conv2d_backprop_filter(a[0], at["filter_shape"], a[1], at["strides"], at["padding"],
                                              at["dilations"])
        if op in ("max_pool", "avg_pool"):
            return getattr(ref, op)(a[0], at["ksize"], at["strides"] or at["ksize"], at["padding"])
        if op == "max_pool_grad":
            return ref.max_pool_grad(a[0], a[1], at["ksize"], at["strides"], at["padding"])
        if op == "avg_pool_grad":
            shape = concrete(node.out.type.shape, n)
            return ref.avg_pool_grad(shape, a[0], at["ksize"], at["strides"], at["padding"])
        if op in ("reduce_sum", "reduce_mean", "reduce_max"):
            return getattr(ref, op)(a[0], axis=at["axis"], keepdims=at["keepdims"])
        if op == "reduce_grad":
            shape = concrete(at["shape"], n)
            axes = ref._axes(at["axis"], len(shape))
            d = a[0] if at["keepdims"] else np.expand_dims(a[0], axes)
            d = np.broadcast_to(d, shape)
            return d / np.prod([shape[i] for i in axes]) if at["mean"] else d
        if op == "reduce_max_grad":
            return ref.reduce_max_vjp(a[0], a[2], axis=at["axis"], keepdims=at["keepdims"])
        if op == "leaky_relu":
            return ref.leaky_relu(a[0], at["alpha"])
        if op == "leaky_relu_grad":
            return ref.leaky_relu_vjp(a[0], a[1], at["alpha"])
        if op == "pad":
            return ref.pad(a[0], at["paddings"], at["mode"], at["constant_values"])
        if op == "pad_grad":
            shape = concrete(node.out.type.shape, n)
            return ref.pad_vjp(np.zeros(shape), a[0], at["paddings"], at["mode"])
        if op == "concat":
            return ref.concat(a, at["axis"])
        if op == "concat_slice":
            index = [slice(None)] * a[0].ndim
            index[at["axis"]] = slice(at["begin"], at["begin"] + at["size"])
            return a[0][tuple(index)]
        if op == "select_grad":
            cmp = {"le": np.less_equal, "lt": np.less, "ge": np.greater_equal, "gt": np.greater}[at["cmp"]]
            x, y, d = np.broadcast_arrays(*a)
            return np.where(cmp(x, y), d, 0.0)
        if op == "argmax":
            return ref.argmax(a[0], at["axis"])
        if op in ("softmax", "log_softmax"):
            return getattr(ref, op)(a[0], axis=at["axis"])
        if op == "softmax_grad":                # y * (dout - sum(dout * y))
            y, d = a
            return y * (d - (d * y).sum(axis=at["axis"], keepdims=True))
        if op == "log_softmax_grad":            # dout - exp(y) * sum(dout)
            y, d = a
            return d - np.exp(y) * d.sum(axis=at["axis"], keepdims=True)
        if op == "reshape":
            return ref.reshape(a[0], _target(at["shape"], n))
        if op == "transpose":
            return ref.transpose(a[0], at["perm"])
        if op == "expand_dims":
            return ref.expand_dims(a[0], at["axis"])
        if op == "squeeze":
            return ref.squeeze(a[0], at["axis"])
        if op == "matmul":
            return ref.matmul(a[0], a[1], at["transpose_a"], at["transpose_b"])
        if op == "cast":
            return a[0].astype(_np_dtype(at["dtype"]))
        if op == "broadcast_to":
            return np.broadcast_to(a[0], concrete(at["shape"], n))
        if op == "dropout_mask":
            return self.mask(node, a[0].shape, at["rate"])
        if op == "embedding_grad":
            d = a[1]
            return ref.embedding_lookup_vjp(np.zeros((at["vocab"], d.shape[-1])), a[0], d)
        if op == "one_hot":
            hot = ref.one_hot(a[0], at["depth"])
            return hot * at["on_value"] + (1 - hot) * at["off_value"]
        if op == "softmax_xent_grad":           # TF's fused rule: (softmax - labels) * dout
            labels, logits, d = a
            return d[..., None] * (ref.softmax(logits, axis=-1) - labels)
        if op == "sparse_softmax_xent_grad":
            return ref.sparse_softmax_cross_entropy_with_logits_vjp(a[0], a[1], a[2])
        if op == "depthwise_conv2d":
            return ref.depthwise_conv2d(a[0], a[1], at["strides"], at["padding"], at["dilations"])
        if op == "depthwise_conv2d_backprop_input":
            shape = concrete(node.out.type.shape, n)
            return ref.depthwise_conv2d_backprop_input(shape, a[0], a[1], at["strides"], at["padding"], at["dilations"])
        if op == "depthwise_conv2d_backprop_filter":
            return ref.depthwise_conv2d_backprop_filter(a[0], at["filter_shape"], a[1], at["strides"], at["padding"],
                                                        at["dilations"])
        if op == "resize":
            return ref.resize(a[0], at["size"], at["method"])
        if op == "resize_grad":
            shape = concrete(node.out.type.shape, n)
            return ref.resize_vjp(np.zeros(shape), a[0], a[0].shape[1:3], at["method"])
        raise NotImplementedError(f"interp: no rule for op {op}")

    def mask(self, node, shape, rate):
        if rate == 0:
            return np.ones(shape)
        if node.out.id not in self.masks:
            keep = self.rng.random(shape) >= rate
            self.masks[node.out.id] = keep / (1.0 - rate)
        return self.masks[node.out.id]


def _target(shape, n):
    """A reshape target: -1 stays -1 (NumPy infers it), the batch symbol becomes a size."""
    return tuple(-1 if d == -1 else (d.coeff * n if hasattr(d, "coeff") else int(d)) for d in shape)


_SIMPLE = {
    "add": ref.add, "sub": ref.sub, "mul": ref.mul, "div": ref.div,
    "minimum": ref.minimum, "maximum": ref.maximum, "equal": ref.equal,
    "neg": lambda x: -x, "relu": ref.relu, "sigmoid": ref.sigmoid, "tanh": ref.tanh,
    "relu_grad": lambda y, d: d * (y > 0),
    "sigmoid_grad": lambda y, d: d * y * (1 - y),
    "tanh_grad": lambda y, d: d * (1 - y * y),
    "relu6": ref.relu6, "elu": ref.elu, "silu": ref.silu, "square": ref.square, "sqrt": ref.sqrt,
    "rsqrt": ref.rsqrt, "exp": ref.exp, "log": ref.log, "abs": ref.abs,
    "relu6_grad": lambda y, d: d * ((y > 0) & (y < 6)),
    "elu_grad": lambda y, d: np.where(y < 0, d * (y + 1), d),
    "silu_grad": ref.silu_vjp, "square_grad": ref.square_vjp, "log_grad": ref.log_vjp,
    "abs_grad": ref.abs_vjp,
    "sqrt_grad": lambda y, d: d * 0.5 / y,
    "rsqrt_grad": lambda y, d: d * -0.5 * y ** 3,
    "exp_grad": lambda y, d: d * y,
    "bias_add": ref.bias_add, "l2_loss": ref.l2_loss,
    "embedding_lookup": ref.embedding_lookup,
    "softmax_cross_entropy_with_logits": ref.softmax_cross_entropy_with_logits,
    "sparse_softmax_cross_entropy_with_logits": ref.sparse_softmax_cross_entropy_with_logits,
}
