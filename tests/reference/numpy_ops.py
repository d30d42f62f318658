"""Plain-NumPy reference for every cnnc core op, forward and backward.

This module is the test oracle the compiled C kernels are compared against. It is
written for clarity, not speed, and shares no code with cnnc. Semantics follow
TensorFlow's tf.nn ops: NHWC activations, conv filters [fh, fw, in, out], SAME/VALID
padding by TF's rule. Float inputs (float32 or float64) are computed and returned in
float64; ops that yield indices or truth values return ints or bools.

Conventions:
  * strides / ksize may be an int, a pair (sh, sw), or TF's [1, sh, sw, 1].
  * `<op>_vjp(<forward operands...>, dout, <attrs...>)` returns the gradient wrt each
    float operand: one array for one operand, a tuple for several.
"""

from __future__ import annotations

import math

import numpy as np

PADDINGS = ("SAME", "VALID")


# --------------------------------------------------------------------------- helpers


def _f64(x):
    """Any array-like as a float64 ndarray (a copy only when needed)."""
    return np.asarray(x, dtype=np.float64)


def _pair(v, what="strides"):
    """An int, (h, w) or [1, h, w, 1] as a pair of positive ints (h, w)."""
    if np.isscalar(v):
        h = w = int(v)
    else:
        v = [int(e) for e in v]
        if len(v) == 2:
            h, w = v
        elif len(v) == 4:
            if v[0] != 1 or v[3] != 1:
                raise ValueError(f"{what} {v}: batch and channel entries must be 1")
            h, w = v[1], v[2]
        else:
            raise ValueError(f"{what} {v}: expected an int, [h, w] or [1, h, w, 1]")
    if h < 1 or w < 1:
        raise ValueError(f"{what} must be positive, got ({h}, {w})")
    return h, w


def _check_padding(padding):
    if padding not in PADDINGS:
        raise ValueError(f'padding must be "SAME" or "VALID", got {padding!r}')


def _axes(axis, ndim):
    """axis (None, int, or list of ints, negatives allowed) as a sorted tuple of axes."""
    if axis is None:
        return tuple(range(ndim))
    if np.isscalar(axis):
        axis = [axis]
    axes = set()
    for a in axis:
        if not -ndim <= int(a) < ndim:
            raise ValueError(f"axis {a} out of range for rank {ndim}")
        axes.add(int(a) % ndim)
    return tuple(sorted(axes))


# --------------------------------------------------------------------------- padding rules


def out_size(in_size, k, stride, padding):
    """Output length along one spatial axis (TF: SAME -> ceil(in/s); VALID -> ceil((in-k+1)/s))."""
    _check_padding(padding)
    if padding == "SAME":
        n = math.ceil(in_size / stride)
    else:
        n = math.ceil((in_size - k + 1) / stride)
    if n < 1:
        raise ValueError(f"{padding} window {k} stride {stride} leaves no output on input {in_size}")
    return n


def same_pads(in_size, k, stride):
    """TF SAME padding (before, after): pad_total = max((out-1)*s + k - in, 0), before = total//2."""
    out = math.ceil(in_size / stride)
    total = max((out - 1) * stride + k - in_size, 0)
    return total // 2, total - total // 2


def pads(in_size, k, stride, padding):
    """(before, after) padding along one axis for SAME or VALID."""
    _check_padding(padding)
    return same_pads(in_size, k, stride) if padding == "SAME" else (0, 0)


def _windows(in_h, in_w, kh, kw, strides, padding):
    """Yield (i, j, rows, cols): output cell (i, j) and the slices of REAL input cells in its
    window (padded cells are left out, which is exactly what pooling needs)."""
    sh, sw = strides
    top, _ = pads(in_h, kh, sh, padding)
    left, _ = pads(in_w, kw, sw, padding)
    for i in range(out_size(in_h, kh, sh, padding)):
        r0 = i * sh - top
        for j in range(out_size(in_w, kw, sw, padding)):
            c0 = j * sw - left
            rows = slice(max(r0, 0), min(r0 + kh, in_h))
            cols = slice(max(c0, 0), min(c0 + kw, in_w))
            yield i, j, rows, cols


# --------------------------------------------------------------------------- convolution


def _conv_geometry(in_shape, fh, fw, strides, padding):
    """(sh, sw), (top, bottom, left, right), (out_h, out_w) for a conv over in_shape NHWC."""
    sh, sw = _pair(strides)
    _, h, w, _ = in_shape
    top, bottom = pads(h, fh, sh, padding)
    left, right = pads(w, fw, sw, padding)
    oh, ow = out_size(h, fh, sh, padding), out_size(w, fw, sw, padding)
    return (sh, sw), (top, bottom, left, right), (oh, ow)


def dilate_filter(f, dilations):
    """A filter [fh, fw, ...] with dilation d as the plain filter it equals: d - 1 zero taps
    between neighbours, ((fh - 1) * dh + 1) x ((fw - 1) * dw + 1) taps (TF's definition)."""
    f = _f64(f)
    dh, dw = _pair(dilations, "dilations")
    out = np.zeros(((f.shape[0] - 1) * dh + 1, (f.shape[1] - 1) * dw + 1) + f.shape[2:])
    out[::dh, ::dw] = f
    return out


def _check_dilations(strides, dilations):
    if _pair(dilations, "dilations") != (1, 1) and _pair(strides) != (1, 1):
        raise ValueError("as in TF, dilations > 1 need strides of 1")


def conv2d(x, f, strides, padding, dilations=1):
    """tf.nn.conv2d: out[n,i,j,o] = sum_{a,b,c} xpad[n, i*sh+a*dh, j*sw+b*dw, c] * f[a,b,c,o]."""
    _check_dilations(strides, dilations)
    x, f = _f64(x), dilate_filter(f, dilations)
    fh, fw, cin, cout = f.shape
    if x.shape[3] != cin:
        raise ValueError(f"conv2d: input has {x.shape[3]} channels, filter expects {cin}")
    (sh, sw), (t, b, l, r), (oh, ow) = _conv_geometry(x.shape, fh, fw, strides, padding)
    xp = np.pad(x, ((0, 0), (t, b), (l, r), (0, 0)))  # zeros
    out = np.zeros((x.shape[0], oh, ow, cout))
    for i in range(oh):
        for j in range(ow):
            window = xp[:, i * sh : i * sh + fh, j * sw : j * sw + fw, :]  # [N, fh, fw, cin]
            out[:, i, j, :] = np.tensordot(window, f, axes=([1, 2, 3], [0, 1, 2]))
    return out


def conv2d_backprop_input(input_shape, f, dout, strides, padding, dilations=1):
    """tf.nn.conv2d_backprop_input: gradient of conv2d wrt its input (scatter dout through f)."""
    _check_dilations(strides, dilations)
    f, dout = dilate_filter(f, dilations), _f64(dout)
    fh, fw, cin, cout = f.shape
    input_shape = tuple(int(d) for d in input_shape)
    (sh, sw), (t, b, l, r), (oh, ow) = _conv_geometry(input_shape, fh, fw, strides, padding)
    n, h, w, _ = input_shape
    if dout.shape != (n, oh, ow, cout):
        raise ValueError(f"conv2d_backprop_input: dout is {dout.shape}, expected {(n, oh, ow, cout)}")
    dxp = np.zeros((n, h + t + b, w + l + r, cin))
    for i in range(oh):
        for j in range(ow):
            # [N, cout] x [fh, fw, cin, cout] -> [N, fh, fw, cin]
            dxp[:, i * sh : i * sh + fh, j * sw : j * sw + fw, :] += np.tensordot(
                dout[:, i, j, :], f, axes=([1], [3])
            )
    return dxp[:, t : t + h, l : l + w, :]


def conv2d_backprop_filter(x, filter_shape, dout, strides, padding, dilations=1):
    """tf.nn.conv2d_backprop_filter: gradient of conv2d wrt its filter (a dilated filter's
    gradient is the plain span-sized one's at the taps it has)."""
    _check_dilations(strides, dilations)
    dh, dw = _pair(dilations, "dilations")
    if (dh, dw) != (1, 1):
        fh, fw, cin, cout = (int(d) for d in filter_shape)
        span = ((fh - 1) * dh + 1, (fw - 1) * dw + 1, cin, cout)
        return conv2d_backprop_filter(x, span, dout, strides, padding)[::dh, ::dw]
    x, dout = _f64(x), _f64(dout)
    fh, fw, cin, cout = (int(d) for d in filter_shape)
    (sh, sw), (t, b, l, r), (oh, ow) = _conv_geometry(x.shape, fh, fw, strides, padding)
    if dout.shape != (x.shape[0], oh, ow, cout):
        raise ValueError(f"conv2d_backprop_filter: dout is {dout.shape}, expected {(x.shape[0], oh, ow, cout)}")
    xp = np.pad(x, ((0, 0), (t, b), (l, r), (0, 0)))
    df = np.zeros((fh, fw, cin, cout))
    for i in range(oh):
        for j in range(ow):
            window = xp[:, i * sh : i * sh + fh, j * sw : j * sw + fw, :]  # [N, fh, fw, cin]
            df += np.tensordot(window, dout[:, i, j, :], axes=([0], [0]))  # -> [fh, fw, cin, cout]
    return df


def conv2d_vjp(x, f, dout, strides, padding, dilations=1):
    """Gradients (dx, df) of tf.nn.conv2d."""
    x, f = _f64(x), _f64(f)
    return (
        conv2d_backprop_input(x.shape, f, dout, strides, padding, dilations),
        conv2d_backprop_filter(x, f.shape, dout, strides, padding, dilations),
    )


def conv2d_transpose(x, f, output_shape, strides, padding, dilations=1):
    """tf.nn.conv2d_transpose: filters [fh, fw, out_ch, in_ch]; = conv2d_backprop_input(output_shape, f, x)."""
    x, f = _f64(x), _f64(f)
    output_shape = tuple(int(d) for d in output_shape)
    fh, fw, out_ch, in_ch = dilate_filter(f, dilations).shape
    _, _, (oh, ow) = _conv_geometry(output_shape, fh, fw, strides, padding)
    if output_shape[3] != out_ch or x.shape != (output_shape[0], oh, ow, in_ch):
        raise ValueError(
            f"conv2d_transpose: conv2d maps output_shape {output_shape} to "
            f"{(output_shape[0], oh, ow, in_ch)}, not to the input shape {x.shape}"
        )
    return conv2d_backprop_input(output_shape, f, x, strides, padding, dilations)


def conv2d_transpose_vjp(x, f, dout, output_shape, strides, padding, dilations=1):
    """Gradients (dx, df) of tf.nn.conv2d_transpose (it is linear in x and in f)."""
    x, f = _f64(x), _f64(f)
    # y = B(f, x) with B the adjoint of conv2d in its input, so dx = conv2d(dout, f) and
    # <dout, B(f, x)> = <conv2d(dout, f), x> gives df = conv2d_backprop_filter(dout, f.shape, x).
    return (
        conv2d(dout, f, strides, padding, dilations),
        conv2d_backprop_filter(dout, f.shape, x, strides, padding, dilations),
    )


# --------------------------------------------------------------------------- pooling


def max_pool(x, ksize, strides, padding):
    """tf.nn.max_pool (2-D, NHWC): max over the real cells of each window (padding never wins)."""
    x = _f64(x)
    (kh, kw), (sh, sw) = _pair(ksize, "ksize"), _pair(strides)
    n, h, w, c = x.shape
    out = np.empty((n, out_size(h, kh, sh, padding), out_size(w, kw, sw, padding), c))
    for i, j, rows, cols in _windows(h, w, kh, kw, (sh, sw), padding):
        out[:, i, j, :] = x[:, rows, cols, :].max(axis=(1, 2))
    return out


def max_pool_grad(x, dout, ksize, strides, padding):
    """TF MaxPoolGrad: each window's dout goes to its FIRST max in row-major window order."""
    # TF's CPU kernel scans the window in row-major order and replaces the running max only
    # on a strictly larger value, so ties go to the first one. Overlapping windows add up.
    x, dout = _f64(x), _f64(dout)
    kh, kw = _pair(ksize, "ksize")
    n, h, w, c = x.shape
    dx = np.zeros_like(x)
    batch, chan = np.meshgrid(np.arange(n), np.arange(c), indexing="ij")  # [N, C] each
    for i, j, rows, cols in _windows(h, w, kh, kw, _pair(strides), padding):
        window = x[:, rows, cols, :]  # [N, wh, ww, C], real cells only
        wh, ww = window.shape[1:3]
        first = np.argmax(window.reshape(n, wh * ww, c), axis=1)  # [N, C]; argmax returns the first max
        r, q = rows.start + first // ww, cols.start + first % ww
        np.add.at(dx, (batch, r, q, chan), dout[:, i, j, :])
    return dx


def max_pool_vjp(x, dout, ksize, strides, padding):
    """Gradient dx of tf.nn.max_pool (= max_pool_grad)."""
    return max_pool_grad(x, dout, ksize, strides, padding)


def avg_pool(x, ksize, strides, padding):
    """tf.nn.avg_pool (2-D, NHWC): mean over the real cells of each window (SAME divides by that count)."""
    x = _f64(x)
    (kh, kw), (sh, sw) = _pair(ksize, "ksize"), _pair(strides)
    n, h, w, c = x.shape
    out = np.empty((n, out_size(h, kh, sh, padding), out_size(w, kw, sw, padding), c))
    for i, j, rows, cols in _windows(h, w, kh, kw, (sh, sw), padding):
        out[:, i, j, :] = x[:, rows, cols, :].mean(axis=(1, 2))
    return out


def avg_pool_grad(input_shape, dout, ksize, strides, padding):
    """TF AvgPoolGrad(orig_input_shape, grad): spread each dout/count over its window's real cells."""
    dout = _f64(dout)
    kh, kw = _pair(ksize, "ksize")
    n, h, w, c = (int(d) for d in input_shape)
    dx = np.zeros((n, h, w, c))
    for i, j, rows, cols in _windows(h, w, kh, kw, _pair(strides), padding):
        count = (rows.stop - rows.start) * (cols.stop - cols.start)
        dx[:, rows, cols, :] += dout[:, i, j, None, None, :] / count
    return dx


def avg_pool_vjp(x, dout, ksize, strides, padding):
    """Gradient dx of tf.nn.avg_pool (= avg_pool_grad(x.shape, ...))."""
    return avg_pool_grad(np.shape(x), dout, ksize, strides, padding)


# --------------------------------------------------------------------------- activations


def relu(x):
    """tf.nn.relu: max(x, 0)."""
    return np.maximum(_f64(x), 0.0)


def relu_vjp(x, dout):
    """Gradient of tf.nn.relu: dout where x > 0, else 0 (TF's ReluGrad gives 0 at exactly 0)."""
    return np.where(_f64(x) > 0, _f64(dout), 0.0)


def sigmoid(x):
    """tf.sigmoid: 1 / (1 + exp(-x)), computed as exp(-log(1 + exp(-x))) to avoid overflow."""
    return np.exp(-np.logaddexp(0.0, -_f64(x)))


def sigmoid_vjp(x, dout):
    """Gradient of tf.sigmoid: dout * s * (1 - s)."""
    s = sigmoid(x)
    return _f64(dout) * s * (1.0 - s)


def tanh(x):
    """tf.tanh."""
    return np.tanh(_f64(x))


def tanh_vjp(x, dout):
    """Gradient of tf.tanh: dout * (1 - tanh(x)^2)."""
    t = np.tanh(_f64(x))
    return _f64(dout) * (1.0 - t * t)


def leaky_relu(x, alpha=0.2):
    """tf.nn.leaky_relu (alpha <= 1): x where x > 0, else alpha * x."""
    x = _f64(x)
    return np.where(x > 0, x, alpha * x)


def leaky_relu_vjp(x, dout, alpha=0.2):
    """TF's LeakyReluGrad: dout where x > 0, else alpha * dout."""
    return np.where(_f64(x) > 0, _f64(dout), alpha * _f64(dout))


def relu6(x):
    """tf.nn.relu6: min(max(x, 0), 6)."""
    return np.minimum(np.maximum(_f64(x), 0.0), 6.0)


def relu6_vjp(x, dout):
    """TF's Relu6Grad: dout where 0 < x < 6, else 0."""
    x = _f64(x)
    return np.where((x > 0) & (x < 6), _f64(dout), 0.0)


def elu(x):
    """tf.nn.elu: x where x >= 0, else exp(x) - 1."""
    x = _f64(x)
    return np.where(x < 0, np.expm1(np.minimum(x, 0.0)), x)


def elu_vjp(x, dout):
    """TF's EluGrad from the output y: dout * (y + 1) where y < 0, else dout."""
    y = elu(x)
    return np.where(y < 0, _f64(dout) * (y + 1.0), _f64(dout))


def silu(x):
    """tf.nn.silu (beta 1): x * sigmoid(x)."""
    return _f64(x) * sigmoid(x)


def silu_vjp(x, dout):
    """d/dx x*s(x) = s * (1 + x * (1 - s))."""
    s = sigmoid(x)
    return _f64(dout) * s * (1.0 + _f64(x) * (1.0 - s))


def square(x):
    """tf.math.square."""
    return _f64(x) ** 2


def square_vjp(x, dout):
    return _f64(dout) * 2.0 * _f64(x)


def sqrt(x):
    """tf.math.sqrt."""
    return np.sqrt(_f64(x))


def sqrt_vjp(x, dout):
    return _f64(dout) * 0.5 / np.sqrt(_f64(x))


def rsqrt(x):
    """tf.math.rsqrt: 1 / sqrt(x)."""
    return 1.0 / np.sqrt(_f64(x))


def rsqrt_vjp(x, dout):
    return _f64(dout) * -0.5 * _f64(x) ** -1.5


def exp(x):
    """tf.math.exp."""
    return np.exp(_f64(x))


def exp_vjp(x, dout):
    return _f64(dout) * np.exp(_f64(x))


def log(x):
    """tf.math.log."""
    return np.log(_f64(x))


def log_vjp(x, dout):
    return _f64(dout) / _f64(x)


def abs(x):  # noqa: A001  (tf.math.abs)
    """tf.math.abs."""
    return np.abs(_f64(x))


def abs_vjp(x, dout):
    """TF: dout * sign(x), 0 at 0."""
    return _f64(dout) * np.sign(_f64(x))


def softmax(x, axis=-1):
    """tf.nn.softmax: exp(x - max) / sum(exp(x - max)) along axis."""
    x = _f64(x)
    e = np.exp(x - x.max(axis=axis, keepdims=True))
    return e / e.sum(axis=axis, keepdims=True)


def log_softmax(x, axis=-1):
    """tf.nn.log_softmax: x - logsumexp(x) along axis."""
    x = _f64(x)
    shifted = x - x.max(axis=axis, keepdims=True)
    return shifted - np.log(np.exp(shifted).sum(axis=axis, keepdims=True))


def softmax_vjp(x, dout, axis=-1):
    """Gradient of tf.nn.softmax: s * (dout - sum(dout * s))."""
    s, dout = softmax(x, axis), _f64(dout)
    return s * (dout - (dout * s).sum(axis=axis, keepdims=True))


# --------------------------------------------------------------------------- broadcasting arithmetic


def unbroadcast(grad, shape):
    """Sum a gradient of a broadcast result back to an operand's shape (NumPy broadcasting rules)."""
    grad = _f64(grad)
    shape = tuple(shape)
    extra = grad.ndim - len(shape)
    if extra < 0:
        raise ValueError(f"cannot unbroadcast {grad.shape} to the larger shape {shape}")
    grad = grad.sum(axis=tuple(range(extra)))  # leading axes the operand did not have
    stretched = tuple(a for a, d in enumerate(shape) if d == 1 and grad.shape[a] != 1)
    grad = grad.sum(axis=stretched, keepdims=True)  # axes of size 1 that were stretched
    if grad.shape != shape:
        raise ValueError(f"gradient shape {grad.shape} does not reduce to {shape}")
    return grad


def add(x, y):
    """tf.add with broadcasting."""
    return _f64(x) + _f64(y)


def add_vjp(x, y, dout):
    """Gradients (dx, dy) of tf.add."""
    return unbroadcast(dout, np.shape(x)), unbroadcast(dout, np.shape(y))


def sub(x, y):
    """tf.subtract with broadcasting."""
    return _f64(x) - _f64(y)


def sub_vjp(x, y, dout):
    """Gradients (dx, dy) of tf.subtract."""
    return unbroadcast(dout, np.shape(x)), unbroadcast(-_f64(dout), np.shape(y))


def mul(x, y):
    """tf.multiply with broadcasting."""
    return _f64(x) * _f64(y)


def mul_vjp(x, y, dout):
    """Gradients (dx, dy) of tf.multiply: (dout * y, dout * x)."""
    x, y, dout = _f64(x), _f64(y), _f64(dout)
    return unbroadcast(dout * y, x.shape), unbroadcast(dout * x, y.shape)


def div(x, y):
    """tf.divide (real division) with broadcasting."""
    return _f64(x) / _f64(y)


def div_vjp(x, y, dout):
    """Gradients (dx, dy) of tf.divide: (dout / y, -dout * x / y^2)."""
    x, y, dout = _f64(x), _f64(y), _f64(dout)
    return unbroadcast(dout / y, x.shape), unbroadcast(-dout * x / (y * y), y.shape)


def minimum(x, y):
    """tf.minimum with broadcasting."""
    return np.minimum(_f64(x), _f64(y))


def minimum_vjp(x, y, dout):
    """Gradients (dx, dy) of tf.minimum: TF's _MinimumGrad gives x the gradient where x <= y (ties to x)."""
    x, y, dout = _f64(x), _f64(y), _f64(dout)
    x_wins = x <= y
    return unbroadcast(np.where(x_wins, dout, 0.0), x.shape), unbroadcast(np.where(x_wins, 0.0, dout), y.shape)


def maximum(x, y):
    """tf.maximum with broadcasting."""
    return np.maximum(_f64(x), _f64(y))


def maximum_vjp(x, y, dout):
    """Gradients (dx, dy) of tf.maximum: TF's _MaximumGrad gives x the gradient where x >= y (ties to x)."""
    x, y, dout = _f64(x), _f64(y), _f64(dout)
    x_wins = x >= y
    return unbroadcast(np.where(x_wins, dout, 0.0), x.shape), unbroadcast(np.where(x_wins, 0.0, dout), y.shape)


# --------------------------------------------------------------------------- dense layers


def bias_add(value, bias):
    """tf.nn.bias_add: add bias [C] along the last axis."""
    value, bias = _f64(value), _f64(bias)
    if bias.ndim != 1 or bias.shape[0] != value.shape[-1]:
        raise ValueError(f"bias_add: bias {bias.shape} does not match last axis of {value.shape}")
    return value + bias


def bias_add_vjp(value, bias, dout):
    """Gradients (dvalue, dbias) of tf.nn.bias_add: (dout, dout summed over all but the last axis)."""
    dout = _f64(dout)
    return dout, dout.reshape(-1, dout.shape[-1]).sum(axis=0)


def matmul(a, b, transpose_a=False, transpose_b=False):
    """tf.linalg.matmul for 2-D operands: op(a) @ op(b)."""
    a, b = _f64(a), _f64(b)
    if a.ndim != 2 or b.ndim != 2:
        raise ValueError(f"matmul: operands must be 2-D, got {a.shape} and {b.shape}")
    return (a.T if transpose_a else a) @ (b.T if transpose_b else b)


def matmul_vjp(a, b, dout, transpose_a=False, transpose_b=False):
    """Gradients (da, db) of tf.linalg.matmul."""
    a, b, dout = _f64(a), _f64(b), _f64(dout)
    op_a = a.T if transpose_a else a
    op_b = b.T if transpose_b else b
    d_op_a = dout @ op_b.T  # C = op_a @ op_b
    d_op_b = op_a.T @ dout
    return (d_op_a.T if transpose_a else d_op_a), (d_op_b.T if transpose_b else d_op_b)


def dropout_apply(x, mask, rate):
    """tf.nn.dropout with a given keep mask (1 = kept): inverted dropout x * mask / (1 - rate)."""
    if not 0.0 <= rate < 1.0:
        raise ValueError(f"dropout rate must be in [0, 1), got {rate}")
    return _f64(x) * _f64(mask) / (1.0 - rate)


def dropout_apply_vjp(x, mask, dout, rate):
    """Gradient dx of dropout_apply: dout * mask / (1 - rate)."""
    return _f64(dout) * _f64(mask) / (1.0 - rate)


def l2_loss(t):
    """tf.nn.l2_loss: sum(t ** 2) / 2 (a scalar)."""
    t = _f64(t)
    return np.float64((t * t).sum() / 2.0)


def l2_loss_vjp(t, dout):
    """Gradient of tf.nn.l2_loss: dout * t."""
    return _f64(dout) * _f64(t)


# --------------------------------------------------------------------------- shape ops


def reshape(x, shape):
    """tf.reshape: at most one -1, inferred so the element count matches exactly."""
    x = _f64(x)
    shape = [int(d) for d in shape]
    if shape.count(-1) > 1:
        raise ValueError(f"reshape: at most one -1 allowed, got {shape}")
    known = math.prod(d for d in shape if d != -1)
    if -1 in shape:
        if known == 0 or x.size % known:
            raise ValueError(f"reshape: {x.size} values do not divide into {shape}")
        shape[shape.index(-1)] = x.size // known
    if math.prod(shape) != x.size:
        raise ValueError(f"reshape: {x.size} values cannot take shape {shape}")
    return x.reshape(shape)


def reshape_vjp(x, dout, shape=None):
    """Gradient of tf.reshape: dout reshaped back to x's shape."""
    return _f64(dout).reshape(np.shape(x))


def transpose(a, perm=None):
    """tf.transpose: out axis k is input axis perm[k] (default: reversed axes)."""
    a = _f64(a)
    perm = tuple(range(a.ndim))[::-1] if perm is None else tuple(perm)
    return np.transpose(a, perm)


def transpose_vjp(a, dout, perm=None):
    """Gradient of tf.transpose: transpose dout by the inverse permutation."""
    ndim = np.ndim(a)
    perm = tuple(range(ndim))[::-1] if perm is None else tuple(perm)
    return np.transpose(_f64(dout), np.argsort(perm))


def expand_dims(x, axis):
    """tf.expand_dims: insert a size-1 axis at axis (in [-rank-1, rank])."""
    return np.expand_dims(_f64(x), int(axis))


def expand_dims_vjp(x, dout, axis):
    """Gradient of tf.expand_dims: reshape dout back."""
    return _f64(dout).reshape(np.shape(x))


def squeeze(x, axis=None):
    """tf.squeeze: drop the given size-1 axes (all size-1 axes when axis is None)."""
    x = _f64(x)
    if axis is None:
        return np.squeeze(x)
    axes = _axes(axis, x.ndim)
    for a in axes:
        if x.shape[a] != 1:
            raise ValueError(f"squeeze: axis {a} of {x.shape} has size {x.shape[a]}, not 1")
    return np.squeeze(x, axis=axes)


def squeeze_vjp(x, dout, axis=None):
    """Gradient of tf.squeeze: reshape dout back."""
    return _f64(dout).reshape(np.shape(x))


# --------------------------------------------------------------------------- reductions


def reduce_sum(x, axis=None, keepdims=False):
    """tf.reduce_sum."""
    x = _f64(x)
    return x.sum(axis=_axes(axis, x.ndim), keepdims=keepdims)


def reduce_mean(x, axis=None, keepdims=False):
    """tf.reduce_mean."""
    x = _f64(x)
    return x.mean(axis=_axes(axis, x.ndim), keepdims=keepdims)


def reduce_max(x, axis=None, keepdims=False):
    """tf.reduce_max."""
    x = _f64(x)
    return x.max(axis=_axes(axis, x.ndim), keepdims=keepdims)


def _dout_kept(x, dout, axis):
    """dout reshaped so the reduced axes are present with size 1 (broadcastable to x)."""
    axes = _axes(axis, np.ndim(x))
    kept = tuple(1 if a in axes else d for a, d in enumerate(np.shape(x)))
    return _f64(dout).reshape(kept), axes


def reduce_sum_vjp(x, dout, axis=None, keepdims=False):
    """Gradient of tf.reduce_sum: dout broadcast back over the reduced axes."""
    d, _ = _dout_kept(x, dout, axis)
    return np.broadcast_to(d, np.shape(x)).copy()


def reduce_mean_vjp(x, dout, axis=None, keepdims=False):
    """Gradient of tf.reduce_mean: dout / count broadcast back over the reduced axes."""
    d, axes = _dout_kept(x, dout, axis)
    count = math.prod(np.shape(x)[a] for a in axes)
    return np.broadcast_to(d / count, np.shape(x)).copy()


def reduce_max_vjp(x, dout, axis=None, keepdims=False):
    """Gradient of tf.reduce_max: dout split EQUALLY among the tied maxima of each reduction."""
    # This is TF's _MinOrMaxGrad (math_grad.py): indicators = equal(x, max);
    # grad = indicators / reduce_sum(indicators) * dout. (Unlike max_pool, not first-wins.)
    x = _f64(x)
    d, axes = _dout_kept(x, dout, axis)
    is_max = (x == x.max(axis=axes, keepdims=True)).astype(np.float64)
    return is_max / is_max.sum(axis=axes, keepdims=True) * d


# --------------------------------------------------------------------------- lookup, comparison, casts


def embedding_lookup(table, ids):
    """tf.nn.embedding_lookup (one shard): table[ids], shape ids.shape + table.shape[1:]."""
    table, ids = _f64(table), np.asarray(ids)
    if not np.issubdtype(ids.dtype, np.integer):
        raise TypeError(f"embedding_lookup: ids must be integers, got {ids.dtype}")
    if ids.size and (ids.min() < 0 or ids.max() >= table.shape[0]):
        raise IndexError(f"embedding_lookup: ids must be in [0, {table.shape[0]}), got {ids.min()}..{ids.max()}")
    return table[ids]


def embedding_lookup_vjp(table, ids, dout):
    """Gradient wrt table of tf.nn.embedding_lookup: scatter-add dout rows; repeated ids accumulate."""
    table, ids, dout = _f64(table), np.asarray(ids), _f64(dout)
    dtable = np.zeros_like(table)
    np.add.at(dtable, ids.reshape(-1), dout.reshape((ids.size,) + table.shape[1:]))
    return dtable


def one_hot(ids, depth):
    """tf.one_hot (on=1, off=0, float): new last axis of size depth; out-of-range ids give all zeros."""
    ids = np.asarray(ids)
    return (ids[..., None] == np.arange(int(depth))).astype(np.float64)


def argmax(x, axis=0):
    """tf.math.argmax (int64; ties -> the smallest index; axis None means 0 as in TF)."""
    return np.argmax(_f64(x), axis=0 if axis is None else int(axis)).astype(np.int64)


def equal(x, y):
    """tf.equal with broadcasting -> bool."""
    return np.equal(np.asarray(x), np.asarray(y))


def cast(x, dtype):
    """tf.cast to "f32" (float64 values rounded to float32) or "i32" (truncation toward zero)."""
    x = np.asarray(x)
    if dtype in ("f32", np.float32, "float32"):
        return x.astype(np.float32).astype(np.float64)
    if dtype in ("i32", np.int32, "int32"):
        return np.trunc(x).astype(np.int32) if np.issubdtype(x.dtype, np.floating) else x.astype(np.int32)
    raise ValueError(f"cast: unsupported dtype {dtype!r}")


def cast_vjp(x, dout, dtype):
    """Gradient of tf.cast: dout passes through float -> float casts (TF returns None otherwise)."""
    if np.issubdtype(np.asarray(x).dtype, np.floating) and dtype in ("f32", np.float32, "float32"):
        return _f64(dout)
    return None


# --------------------------------------------------------------------------- losses


def softmax_cross_entropy_with_logits(labels, logits):
    """tf.nn.softmax_cross_entropy_with_logits (last axis is the class axis): -sum(labels * log_softmax)."""
    labels, logits = _f64(labels), _f64(logits)
    return -(labels * log_softmax(logits, axis=-1)).sum(axis=-1)


def softmax_cross_entropy_with_logits_vjp(labels, logits, dout):
    """Gradients (dlabels, dlogits): (-dout * log_softmax, dout * (softmax * sum(labels) - labels))."""
    # The exact derivative wrt logits is softmax * sum(labels) - labels. TF's fused kernel
    # returns softmax - labels, which is the same thing when each row of labels sums to 1
    # (TF requires labels to be a probability distribution).
    labels, logits = _f64(labels), _f64(logits)
    d = _f64(dout)[..., None]
    dlogits = d * (softmax(logits, axis=-1) * labels.sum(axis=-1, keepdims=True) - labels)
    dlabels = -d * log_softmax(logits, axis=-1)
    return dlabels, dlogits


def _check_class_ids(labels, num_classes):
    labels = np.asarray(labels)
    if not np.issubdtype(labels.dtype, np.integer):
        raise TypeError(f"class ids must be integers, got {labels.dtype}")
    if labels.size and (labels.min() < 0 or labels.max() >= num_classes):
        raise IndexError(f"class ids must be in [0, {num_classes}), got {labels.min()}..{labels.max()}")
    return labels


def sparse_softmax_cross_entropy_with_logits(labels, logits):
    """tf.nn.sparse_softmax_cross_entropy_with_logits: -log_softmax(logits)[..., labels]."""
    logits = _f64(logits)
    labels = _check_class_ids(labels, logits.shape[-1])
    return -np.take_along_axis(log_softmax(logits, axis=-1), labels[..., None], axis=-1)[..., 0]


def sparse_softmax_cross_entropy_with_logits_vjp(labels, logits, dout):
    """Gradient dlogits of the sparse loss: dout * (softmax - one_hot(labels))."""
    logits = _f64(logits)
    labels = _check_class_ids(labels, logits.shape[-1])
    return _f64(dout)[..., None] * (softmax(logits, axis=-1) - one_hot(labels, logits.shape[-1]))


# --------------------------------------------------------------------------- depthwise convolution


def _depthwise_geometry(in_shape, fh, fw, strides, padding, dilations):
    """(sh, sw), (dh, dw), (top, bottom, left, right), (oh, ow) of tf.nn.depthwise_conv2d: a
    window of k taps dilated by d spans (k - 1) * d + 1 cells, and TF pads for that span
    (dilations > 1 require strides of 1)."""
    (sh, sw), (dh, dw) = _pair(strides), _pair(dilations, "dilations")
    if (dh > 1 or dw > 1) and (sh > 1 or sw > 1):
        raise ValueError("depthwise_conv2d: dilations > 1 require strides of 1")
    _, h, w, _ = in_shape
    eh, ew = (fh - 1) * dh + 1, (fw - 1) * dw + 1
    top, bottom = pads(h, eh, sh, padding)
    left, right = pads(w, ew, sw, padding)
    return (sh, sw), (dh, dw), (top, bottom, left, right), (out_size(h, eh, sh, padding), out_size(w, ew, sw, padding))


def _tap(a, b, s, d, o):
    """The cells of the padded input that tap (a, b) reads for every output pixel: rows
    a*dh + i*sh for i < oh (likewise columns)."""
    (sh, sw), (dh, dw), (oh, ow) = s, d, o
    return (slice(None), slice(a * dh, a * dh + (oh - 1) * sh + 1, sh), slice(b * dw, b * dw + (ow - 1) * sw + 1, sw))


def depthwise_conv2d(x, f, strides, padding, dilations=1):
    """tf.nn.depthwise_conv2d: out[n, i, j, c*M + m] =
    sum_{a,b} xpad[n, i*sh + a*dh, j*sw + b*dw, c] * f[a, b, c, m]."""
    x, f = _f64(x), _f64(f)
    fh, fw, cin, mult = f.shape
    if x.shape[3] != cin:
        raise ValueError(f"depthwise_conv2d: input has {x.shape[3]} channels, filter expects {cin}")
    s, d, (t, b, l, r), o = _depthwise_geometry(x.shape, fh, fw, strides, padding, dilations)
    xp = np.pad(x, ((0, 0), (t, b), (l, r), (0, 0)))
    out = np.zeros((x.shape[0],) + o + (cin, mult))
    for a in range(fh):
        for bb in range(fw):
            out += xp[_tap(a, bb, s, d, o)][..., None] * f[a, bb]
    return out.reshape(x.shape[0], o[0], o[1], cin * mult)


def depthwise_conv2d_backprop_input(input_shape, f, dout, strides, padding, dilations=1):
    """tf.nn.depthwise_conv2d_backprop_input: each tap's share of dout, summed over the
    multiplier, scattered back onto the padded input, then cropped."""
    f, dout = _f64(f), _f64(dout)
    fh, fw, cin, mult = f.shape
    n, h, w, _ = (int(v) for v in input_shape)
    s, d, (t, b, l, r), o = _depthwise_geometry((n, h, w, cin), fh, fw, strides, padding, dilations)
    d5 = dout.reshape(n, o[0], o[1], cin, mult)
    dxp = np.zeros((n, h + t + b, w + l + r, cin))
    for a in range(fh):
        for bb in range(fw):
            dxp[_tap(a, bb, s, d, o)] += (d5 * f[a, bb]).sum(axis=-1)
    return dxp[:, t:t + h, l:l + w, :]


def depthwise_conv2d_backprop_filter(x, filter_shape, dout, strides, padding, dilations=1):
    """tf.nn.depthwise_conv2d_backprop_filter: df[a, b, c, m] = sum over n, i, j of
    xpad[n, i*sh + a*dh, j*sw + b*dw, c] * dout[n, i, j, c*M + m]."""
    x, dout = _f64(x), _f64(dout)
    fh, fw, cin, mult = (int(v) for v in filter_shape)
    s, d, (t, b, l, r), o = _depthwise_geometry(x.shape, fh, fw, strides, padding, dilations)
    xp = np.pad(x, ((0, 0), (t, b), (l, r), (0, 0)))
    d5 = dout.reshape(x.shape[0], o[0], o[1], cin, mult)
    df = np.zeros((fh, fw, cin, mult))
    for a in range(fh):
        for bb in range(fw):
            df[a, bb] = np.einsum("nijc,nijcm->cm", xp[_tap(a, bb, s, d, o)], d5)
    return df


def depthwise_conv2d_vjp(x, f, dout, strides, padding, dilations=1):
    """Gradients (dx, df) of tf.nn.depthwise_conv2d."""
    x, f = _f64(x), _f64(f)
    return (depthwise_conv2d_backprop_input(x.shape, f, dout, strides, padding, dilations),
            depthwise_conv2d_backprop_filter(x, f.shape, dout, strides, padding, dilations))


# --------------------------------------------------------------------------- resize


RESIZE_METHODS = ("bilinear", "nearest")


def resize_weights(n_in, n_out, method):
    """The [n_out, n_in] matrix of tf.image.resize along one axis (TF 2: half-pixel centres, no
    antialiasing). scale = n_in / n_out and the sample positions are float32, as TF computes
    them. bilinear: output o samples p = (o + 0.5) * scale - 0.5 with weight 1 - (p - floor p)
    on row max(floor p, 0) and p - floor p on row min(ceil p, n_in - 1). nearest: weight 1 on
    row min(floor((o + 0.5) * scale), n_in - 1)."""
    if method not in RESIZE_METHODS:
        raise ValueError(f"resize: method must be one of {RESIZE_METHODS}, got {method!r}")
    scale = np.float32(n_in) / np.float32(n_out)
    o = np.arange(n_out, dtype=np.float32)
    weights = np.zeros((n_out, n_in))
    rows = np.arange(n_out)
    if method == "nearest":
        at = np.minimum(np.floor((o + np.float32(0.5)) * scale).astype(np.int64), n_in - 1)
        weights[rows, np.maximum(at, 0)] = 1.0
        return weights
    p = (o + np.float32(0.5)) * scale - np.float32(0.5)
    lo = np.maximum(np.floor(p).astype(np.int64), 0)
    hi = np.minimum(np.ceil(p).astype(np.int64), n_in - 1)
    lerp = (p - np.floor(p)).astype(np.float64)
    np.add.at(weights, (rows, lo), 1.0 - lerp)
    np.add.at(weights, (rows, hi), lerp)
    return weights


def resize(images, size, method="bilinear"):
    """tf.image.resize (NHWC): out[n, i, j, c] = sum_{y, x} Wy[i, y] * Wx[j, x] * images[n, y, x, c]."""
    x = _f64(images)
    (oh, ow) = (int(v) for v in size)
    if oh < 1 or ow < 1:
        raise ValueError(f"resize: size must be positive, got {size}")
    wy, wx = resize_weights(x.shape[1], oh, method), resize_weights(x.shape[2], ow, method)
    return np.einsum("iy,jx,nyxc->nijc", wy, wx, x)


def resize_vjp(images, dout, size, method="bilinear"):
    """Gradient of resize wrt images: the transposed map (TF's ResizeBilinearGrad /
    ResizeNearestNeighborGrad, a scatter-add of dout through the same weights)."""
    x, d = _f64(images), _f64(dout)
    wy, wx = resize_weights(x.shape[1], int(size[0]), method), resize_weights(x.shape[2], int(size[1]), method)
    return np.einsum("iy,jx,nijc->nyxc", wy, wx, d)


# --------------------------------------------------------------------------- pad


def pad(x, paddings, mode="CONSTANT", constant_values=0.0):
    """tf.pad: CONSTANT fills with constant_values; REFLECT mirrors about the edge cell
    (1 2 3 -> 3 2 [1 2 3] 2 1); SYMMETRIC mirrors about the edge (2 1 [1 2 3] 3 2)."""
    x = _f64(x)
    widths = [tuple(int(a) for a in p) for p in paddings]
    mode = mode.upper()
    if mode == "CONSTANT":
        return np.pad(x, widths, mode="constant", constant_values=constant_values)
    return np.pad(x, widths, mode={"REFLECT": "reflect", "SYMMETRIC": "symmetric"}[mode])


def pad_vjp(x, dout, paddings, mode="CONSTANT"):
    """TF's pad gradient: the slice of dout over the input (CONSTANT), or MirrorPadGrad: each
    input cell collects dout of every output cell that copied it. Written as the transpose of
    the forward map: pad an index array, then scatter-add dout through it."""
    x = _f64(x)
    index = np.arange(x.size).reshape(x.shape)
    mode = mode.upper()
    if mode == "CONSTANT":
        src = np.pad(index, [tuple(p) for p in paddings], mode="constant", constant_values=-1)
    else:
        src = np.pad(index, [tuple(p) for p in paddings], mode={"REFLECT": "reflect", "SYMMETRIC": "symmetric"}[mode])
    dx = np.zeros(x.size)
    keep = src >= 0
    np.add.at(dx, src[keep], _f64(dout)[keep])
    return dx.reshape(x.shape)


# --------------------------------------------------------------------------- concat


def concat(values, axis):
    """tf.concat: join along `axis` (negative counts from the end)."""
    return np.concatenate([_f64(v) for v in values], axis=axis)


def concat_vjp(values, dout, axis):
    """The gradient of each input is its slice of dout along `axis` (TF's ConcatGrad)."""
    bounds = np.cumsum([np.shape(v)[axis] for v in values])[:-1]
    return tuple(np.split(_f64(dout), bounds, axis=axis))


def _sum_to(g, shape):
    """Sum a broadcast gradient back to `shape` (NumPy broadcasting, aligned from the right)."""
    g = np.asarray(g)
    while g.ndim > len(shape):
        g = g.sum(axis=0)
    for i, d in enumerate(shape):
        if d == 1 and g.shape[i] != 1:
            g = g.sum(axis=i, keepdims=True)
    return g


def batch_normalization(x, mean, variance, offset, scale, variance_epsilon):
    """tf.nn.batch_normalization: (x - mean) * scale / sqrt(variance + eps) + offset, broadcasting."""
    x, mean, variance, offset, scale = (_f64(a) for a in (x, mean, variance, offset, scale))
    return (x - mean) * scale / np.sqrt(variance + variance_epsilon) + offset


def batch_normalization_vjp(x, mean, variance, offset, scale, dout, variance_epsilon):
    """Gradients of tf.nn.batch_normalization wrt x, mean, variance, offset and scale."""
    x, mean, variance, offset, scale, dy = (_f64(a) for a in (x, mean, variance, offset, scale, dout))
    r = 1.0 / np.sqrt(variance + variance_epsilon)
    centred = x - mean
    dx = dy * scale * r
    dmean = -dx
    dvar = dy * centred * scale * -0.5 * r ** 3
    dscale = dy * centred * r
    return (_sum_to(dx, x.shape), _sum_to(dmean, np.shape(mean)), _sum_to(dvar, np.shape(variance)),
            _sum_to(dy, np.shape(offset)), _sum_to(dscale, np.shape(scale)))


def keras_batch_norm_train(x, gamma, beta, epsilon=1e-3):
    """Keras 3 BatchNormalization(axis=-1) in a training call: (output, batch mean, batch
    variance), the statistics over every axis but the last, the variance biased (divided by the
    count, as tf.nn.moments)."""
    x = _f64(x)
    axes = tuple(range(x.ndim - 1))
    mean, var = x.mean(axis=axes), x.var(axis=axes)
    return batch_normalization(x, mean, var, beta, gamma, epsilon), mean, var


def keras_batch_norm_train_vjp(x, gamma, beta, dout, epsilon=1e-3):
    """Gradients of keras_batch_norm_train's output wrt x (through the batch statistics, as
    TF's tape gives them), gamma and beta: the closed form
    dx = gamma / sqrt(var + eps) * (dy - mean(dy) - xhat * mean(dy * xhat))."""
    x, dy = _f64(x), _f64(dout)
    axes = tuple(range(x.ndim - 1))
    mean, var = x.mean(axis=axes), x.var(axis=axes)
    r = 1.0 / np.sqrt(var + epsilon)
    xhat = (x - mean) * r
    dx = _f64(gamma) * r * (dy - dy.mean(axis=axes) - xhat * (dy * xhat).mean(axis=axes))
    return dx, (dy * xhat).sum(axis=axes), dy.sum(axis=axes)


def keras_moving_update(moving, statistic, momentum=0.99):
    """Keras' moving average: moving * momentum + statistic * (1 - momentum)."""
    return _f64(moving) * momentum + _f64(statistic) * (1.0 - momentum)
