"""The benchmark models written by hand in TensorFlow 2 (tf.function, NHWC).

Plain tf.Variables and tf.nn ops, as the original TF1 graphs were written;
the optimisers are TF's fused raw ops (ResourceApplyGradientDescent,
ResourceApplyAdam), which is what tf.train.*Optimizer ran. Batch norm (resnet20,
mobilenet) is TF's fused kernel, as Keras' BatchNormalization runs it: batch
statistics and a moving-average update while training (momentum 0.99, epsilon
1e-3), the moving statistics otherwise; those are state, not trained.
tensorflow is imported lazily: available() reports a missing install.
"""

import os

from bench import models as spec
from bench.harness import default_threads, set_tf_threads

LAYOUTS = ("nhwc",)
TRAINS = True

_tf = None


def _import():
    global _tf
    if _tf is None:
        os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
        import tensorflow as tf
        set_tf_threads(tf, int(os.environ.get("OMP_NUM_THREADS", default_threads())))
        _tf = tf
    return _tf


def available():
    try:
        _import()
        return True, ""
    except Exception as exc:
        return False, f"missing: {type(exc).__name__}: {exc}"


def version():
    return _import().__version__


# --------------------------------------------------------------------------
# Models: a forward(x, training) function over a dict of variables
# --------------------------------------------------------------------------

def _variables(name):
    tf = _import()

    def weight(*shape):
        return tf.Variable(tf.random.truncated_normal(shape, stddev=0.1))

    def bias(n):
        return tf.Variable(tf.constant(0.1, shape=[n]))

    if name == "mnist":
        return {"w1": weight(3, 3, 1, 32), "b1": bias(32),
                "w2": weight(3, 3, 32, 64), "b2": bias(64),
                "wd": weight(3136, 10), "bd": bias(10)}
    if name in ("resnet20", "mobilenet"):
        v = {}
        _PLANS[name](_Declare(v, weight, bias))
        return v
    if name == "flowers":
        return {"w1": weight(5, 5, 3, 32), "b1": bias(32),
                "w2": weight(5, 5, 32, 64), "b2": bias(64),
                "w3": weight(3, 3, 64, 128), "w4": weight(3, 3, 128, 128),
                "wd1": weight(4608, 1024), "bd1": bias(1024),
                "wd2": weight(1024, 512), "bd2": bias(512),
                "wd3": weight(512, 5), "bd3": bias(5)}
    return {"embedding": tf.Variable(tf.random.uniform([10000, 50], -1.0, 1.0)),
            "w1": weight(20, 50, 1, 10), "b1": bias(10),
            "w2": weight(20, 10, 1, 10), "b2": bias(10),
            "wd": weight(10, 15), "bd": bias(15)}


# Batch norm's moving statistics: variables the optimiser never sees.
STATE = ("/moving_mean", "/moving_variance")


class _Declare:
    """Creates the variables of a plan: conv kernels (HWIO), biases, batch norms."""

    def __init__(self, v, weight, bias):
        self.v, self.weight, self.bias = v, weight, bias

    def conv(self, key, k, cin, cout, stride=1, bias=True, bn=True, act=None, depthwise=False, x=None):
        tf = _import()
        self.v[key + "/w"] = self.weight(k, k, cin, 1 if depthwise else cout)
        if bias:
            self.v[key + "/b"] = self.bias(cout)
        if bn:
            for name, init in (("gamma", tf.ones), ("beta", tf.zeros), ("moving_mean", tf.zeros),
                               ("moving_variance", tf.ones)):
                self.v[f"{key}/{name}"] = tf.Variable(init([cout]))
        return None

    def dense(self, n_in, n_out, x=None):
        self.v["wd"], self.v["bd"] = self.weight(n_in, n_out), self.bias(n_out)


class _Run:
    """Applies a plan to a batch: conv (+ bias) (+ batch norm) (+ activation)."""

    def __init__(self, v, training):
        self.v, self.training = v, training

    def conv(self, key, k, cin, cout, stride=1, bias=True, bn=True, act=None, depthwise=False, x=None):
        tf = _import()
        v = self.v
        if depthwise:
            x = tf.nn.depthwise_conv2d(x, v[key + "/w"], [1, stride, stride, 1], "SAME")
        else:
            x = tf.nn.conv2d(x, v[key + "/w"], stride, "SAME")
        if bias:
            x = x + v[key + "/b"]
        if bn:
            mean, var = v[key + "/moving_mean"], v[key + "/moving_variance"]
            x, new_mean, new_var = tf.compat.v1.nn.fused_batch_norm(
                x, v[key + "/gamma"], v[key + "/beta"], mean, var, epsilon=1e-3, is_training=self.training,
                exponential_avg_factor=0.01 if self.training else 1.0)
            if self.training:
                mean.assign(new_mean)
                var.assign(new_var)
        return act(x) if act else x

    def dense(self, n_in, n_out, x=None):
        return _import().matmul(x, self.v["wd"]) + self.v["bd"]


def _resnet20(layer, x=None):
    """Keras' CIFAR-10 resnet_v1, depth 20: conv-BN-relu, 3 stages x 3 blocks, projections."""
    tf = _import()
    relu = tf.nn.relu
    x = layer.conv("conv0", 3, 3, 16, act=relu, x=x)
    cin = 16
    for stage, width in enumerate((16, 32, 64)):
        for block in range(3):
            key, stride = f"stage{stage + 1}_block{block + 1}", 2 if stage and not block else 1
            r = layer.conv(key + "/conv1", 3, cin, width, stride, act=relu, x=x)
            r = layer.conv(key + "/conv2", 3, width, width, x=r)
            if stride == 2:
                x = layer.conv(key + "/projection", 1, cin, width, stride, bn=False, x=x)
            x = None if x is None else relu(x + r)
            cin = width
    if x is not None:
        x = tf.reduce_mean(x, axis=[1, 2])
    return layer.dense(64, 10, x=x)


def _mobilenet(layer, x=None):
    """MobileNet v1, width 0.25: conv, 13 depthwise-separable blocks, BN + relu6, no conv biases."""
    tf = _import()
    relu6 = tf.nn.relu6
    x = layer.conv("conv1", 3, 3, 8, 2, bias=False, act=relu6, x=x)
    cin = 8
    for i, (stride, cout) in enumerate(spec.MOBILENET_BLOCKS, 1):
        x = layer.conv(f"block{i}/dw", 3, cin, cin, stride, bias=False, act=relu6, depthwise=True, x=x)
        x = layer.conv(f"block{i}/pw", 1, cin, cout, bias=False, act=relu6, x=x)
        cin = cout
    if x is not None:
        x = tf.reduce_mean(x, axis=[1, 2])
        if layer.training:
            x = tf.nn.dropout(x, rate=0.001)
    return layer.dense(256, 5, x=x)


_PLANS = {"resnet20": _resnet20, "mobilenet": _mobilenet}


def _forward(name, v, x, training):
    tf = _import()
    nn = tf.nn
    if name in _PLANS:
        return _PLANS[name](_Run(v, training), x)
    if name == "mnist":
        x = tf.reshape(x, [-1, 28, 28, 1])
        x = nn.relu(nn.conv2d(x, v["w1"], 1, "SAME")) + v["b1"]   # bias after relu
        x = nn.max_pool2d(x, 2, 2, "SAME")
        x = nn.relu(nn.conv2d(x, v["w2"], 1, "SAME")) + v["b2"]
        x = nn.max_pool2d(x, 2, 2, "SAME")
        x = tf.reshape(x, [-1, 3136])
        return tf.matmul(x, v["wd"]) + v["bd"]
    if name == "flowers":
        x = nn.max_pool2d(nn.relu(nn.conv2d(x, v["w1"], 1, "SAME") + v["b1"]), 2, 2, "VALID")
        x = nn.max_pool2d(nn.relu(nn.conv2d(x, v["w2"], 1, "SAME") + v["b2"]), 2, 2, "VALID")
        x = nn.max_pool2d(nn.relu(nn.conv2d(x, v["w3"], 1, "SAME")), 2, 2, "VALID")
        x = nn.max_pool2d(nn.relu(nn.conv2d(x, v["w4"], 1, "SAME")), 2, 2, "VALID")
        x = tf.reshape(x, [-1, 4608])
        x = nn.relu(tf.matmul(x, v["wd1"]) + v["bd1"])
        if training:
            x = nn.dropout(x, rate=0.5)
        x = nn.relu(tf.matmul(x, v["wd2"]) + v["bd2"])
        if training:
            x = nn.dropout(x, rate=0.5)
        return tf.matmul(x, v["wd3"]) + v["bd3"]
    # textcnn
    x = tf.expand_dims(tf.nn.embedding_lookup(v["embedding"], x), -1)  # [N,100,50,1]
    x = nn.relu(nn.conv2d(x, v["w1"], 1, "VALID") + v["b1"])          # [N,81,1,10]
    x = nn.max_pool2d(x, [4, 1], [2, 1], "SAME")                      # [N,41,1,10]
    x = tf.transpose(x, [0, 1, 3, 2])                                 # [N,41,10,1]
    x = nn.relu(nn.conv2d(x, v["w2"], 1, "VALID") + v["b2"])          # [N,22,1,10]
    x = tf.squeeze(tf.reduce_max(x, axis=1), axis=1)                  # [N,10]
    return tf.matmul(x, v["wd"]) + v["bd"]


def _loss(name, v, logits, labels):
    tf = _import()
    if name == "mnist":
        return tf.reduce_mean(tf.nn.softmax_cross_entropy_with_logits(labels=labels, logits=logits))
    ce = tf.reduce_mean(tf.nn.sparse_softmax_cross_entropy_with_logits(labels=labels, logits=logits))
    if name == "resnet20":          # Keras' l2(1e-4) on every conv kernel: 1e-4 * sum(w^2)
        ce += 0.0002 * tf.add_n([tf.nn.l2_loss(w) for k, w in v.items() if k.endswith("/w")])
    if name == "flowers":
        ce += 0.0001 * tf.add_n([tf.nn.l2_loss(v[k]) for k in ("wd1", "wd2", "wd3")])
    return ce


def make_batch(name, batch, seed=0):
    tf = _import()
    g = tf.random.Generator.from_seed(seed)
    info = spec.INPUTS[name]
    classes = info["classes"]
    if name == "textcnn":
        x = g.uniform([batch, 100], 0, info["vocab"], dtype=tf.int32)
    else:
        x = g.uniform([batch, *info["shape"]])
    y = g.uniform([batch], 0, classes, dtype=tf.int32)
    if info["labels"] == "onehot":
        y = tf.one_hot(y, classes)
    return x, y


# --------------------------------------------------------------------------
# Optimisers (TF1's fused update kernels)
# --------------------------------------------------------------------------

class _Sgd:
    def __init__(self, variables):
        self.lr = spec.LEARNING_RATE

    def apply(self, variables, grads):
        tf = _import()
        for var, grad in zip(variables, grads):
            tf.raw_ops.ResourceApplyGradientDescent(var=var.handle, alpha=self.lr,
                                                    delta=tf.convert_to_tensor(grad))


class _Adam:
    def __init__(self, variables):
        tf = _import()
        self.m = [tf.Variable(tf.zeros_like(v)) for v in variables]
        self.v = [tf.Variable(tf.zeros_like(v)) for v in variables]
        self.step = tf.Variable(0.0)
        self.lr, self.b1, self.b2, self.eps = spec.LEARNING_RATE, 0.9, 0.999, 1e-8

    def apply(self, variables, grads):
        tf = _import()
        self.step.assign_add(1.0)
        for var, m, v, grad in zip(variables, self.m, self.v, grads):
            tf.raw_ops.ResourceApplyAdam(
                var=var.handle, m=m.handle, v=v.handle,
                beta1_power=tf.pow(self.b1, self.step), beta2_power=tf.pow(self.b2, self.step),
                lr=self.lr, beta1=self.b1, beta2=self.b2, epsilon=self.eps,
                grad=tf.convert_to_tensor(grad))  # embedding grad: IndexedSlices -> dense


# --------------------------------------------------------------------------
# Benchmark callables
# --------------------------------------------------------------------------

def train_step_fn(name, batch, layout="nhwc"):
    tf = _import()
    v = _variables(name)
    variables = [var for key, var in v.items() if not key.endswith(STATE)]
    opt = (_Adam if spec.INPUTS[name]["optimizer"] == "adam" else _Sgd)(variables)
    x, y = make_batch(name, batch)

    @tf.function
    def step(x, y):
        with tf.GradientTape() as tape:
            loss = _loss(name, v, _forward(name, v, x, True), y)
        opt.apply(variables, tape.gradient(loss, variables))
        return loss

    return lambda: step(x, y).numpy()


def infer_fn(name, batch, layout="nhwc"):
    tf = _import()
    v = _variables(name)
    x, _ = make_batch(name, batch)

    @tf.function
    def infer(x):
        return _forward(name, v, x, False)

    return lambda: infer(x).numpy()
