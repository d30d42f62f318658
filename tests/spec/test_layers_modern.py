"""The modern layers (depthwise_conv, separable_conv, global_avg_pool, upsample) and skip
connections: shapes, param counts equal to Keras' (by Keras' own arithmetic), the core forms
they desugar to, and their mistakes reported at the layer's line."""
from __future__ import annotations

import math

import pytest

import cnnc
from cnnc import pipeline
from cnnc.commands import desugared_text
from cnnc.spec.diagnostics import SpecError


def graph(body: str, inp="f32[N, 16, 16, 8]"):
    return pipeline.check(f"model m\ninput x: {inp}\n{body}\n")


def out_type(g, name="y"):
    return str(g.outputs[name].type)


def counts(g) -> dict[str, int]:
    return {p.name: math.prod(p.type.shape) for p in g.params}


# Keras' count_params for the same layers: DepthwiseConv2D kh*kw*in*dm (+ in*dm bias);
# SeparableConv2D kh*kw*in*dm + in*dm*filters (+ filters bias).
@pytest.mark.parametrize("k,dm,bias", [(3, 1, True), (5, 2, True), (3, 3, False)])
def test_depthwise_conv_params_match_keras(k, dm, bias):
    g = graph(f"y = depthwise_conv(x, {k}, depth_multiplier={dm}, use_bias={str(bias).lower()})\noutput y")
    c = 8
    assert sum(counts(g).values()) == k * k * c * dm + (c * dm if bias else 0)
    assert counts(g)["depthwise_conv_1/weight"] == k * k * c * dm
    assert out_type(g) == f"f32[N, 16, 16, {c * dm}]"


@pytest.mark.parametrize("filters,k,dm,stride", [(16, 3, 1, 1), (32, 3, 2, 2), (4, (3, 5), 1, 2)])
def test_separable_conv_params_match_keras(filters, k, dm, stride):
    kh, kw = (k, k) if isinstance(k, int) else k
    ks = k if isinstance(k, int) else list(k)
    g = graph(f"y = separable_conv(x, {filters}, {ks}, strides={stride}, depth_multiplier={dm})\noutput y")
    c = 8
    assert counts(g) == {"separable_conv_1/depthwise_weight": kh * kw * c * dm,
                         "separable_conv_1/pointwise_weight": c * dm * filters,
                         "separable_conv_1/bias": filters}
    size = -(-16 // stride)
    assert out_type(g) == f"f32[N, {size}, {size}, {filters}]"


@pytest.mark.parametrize("pad,d,size", [("SAME", 2, 16), ("VALID", 2, 12), ("VALID", [1, 3], None)])
def test_conv_dilation_rate_keeps_the_params_and_widens_the_window(pad, d, size):
    g = graph(f"y = conv(x, 4, 3, padding=\"{pad}\", dilation_rate={d})\noutput y")
    assert sum(counts(g).values()) == 3 * 3 * 8 * 4 + 4          # Keras Conv2D: dilation adds no params
    if size is not None:
        assert out_type(g) == f"f32[N, {size}, {size}, 4]"       # VALID: 16 - (3 - 1) * 2
    else:
        assert out_type(g) == "f32[N, 14, 10, 4]"                # spans 3 and 7
    core = desugar(f"model m\ninput x: f32[N, 16, 16, 8]\ny = conv(x, 4, 3, dilation_rate={d})\noutput y\n")
    assert "dilations=[1, " in core
    plain = desugar("model m\ninput x: f32[N, 16, 16, 8]\ny = conv(x, 4, 3)\noutput y\n")
    assert "dilations" not in plain                              # undilated convs desugar as before


def test_global_avg_pool_and_upsample_shapes():
    g = graph("y = global_avg_pool(x)\nz = global_avg_pool(x, keepdims=true)\n"
              "u = upsample(x)\nv = upsample(x, [3, 1], interpolation=\"bilinear\")\n"
              "output y\noutput z\noutput u\noutput v")
    assert out_type(g) == "f32[N, 8]"
    assert out_type(g, "z") == "f32[N, 1, 1, 8]"
    assert out_type(g, "u") == "f32[N, 32, 32, 8]"
    assert out_type(g, "v") == "f32[N, 48, 16, 8]"
    assert g.params == []


def desugar(text: str) -> str:
    return desugared_text(pipeline.check_source(pipeline.load_source(text)))


def test_layers_desugar_to_core_forms():
    text = ("model m\ninput x: f32[N, 16, 16, 8]\n"
            "stack y = x {\n"
            "  \"dw\": depthwise_conv(3, strides=2, activation=relu)\n"
            "  \"sep\": separable_conv(4, 3, dilation_rate=2, use_bias=false, l2=0.01)\n"
            "  upsample(2, interpolation=\"bilinear\")\n"
            "  global_avg_pool()\n"
            "}\noutput y\nloss = reduce_mean(y)\noptimizer = sgd(lr=0.1)\n")
    core = desugar(text)
    assert 'depthwise_conv2d(x, weight, strides=[1, 2, 2, 1], padding="SAME")' in core
    assert ('conv2d(depthwise_conv2d(y_1, depthwise_weight, strides=[1, 1, 1, 1], padding="SAME", '
            'dilations=[1, 2, 2, 1]), pointwise_weight, strides=[1, 1, 1, 1], padding="VALID")') in core
    assert "0.01 * (l2_loss(depthwise_weight) + l2_loss(pointwise_weight))" in core
    assert 'resize(y_2, [16, 16], method="bilinear")' in core
    assert "y = reduce_mean(y_3, [1, 2])" in core
    for sugar in ("stack ", "depthwise_conv(", "separable_conv(", "upsample(", "global_avg_pool("):
        assert sugar not in core
    again, first = pipeline.check(core), pipeline.check(text)
    assert [(p.name, p.type) for p in again.params] == [(p.name, p.type) for p in first.params]


def test_skips_by_name_add_and_concat_in_a_stack():
    text = ("model m\ninput x: f32[N, 8, 8, 4]\n"
            "stack r = x {\n  \"a\": conv(4, 3, activation=relu)\n  add(x)\n"
            "  concat([x, r_1], axis=-1)\n  \"b\": conv(4, 1)\n}\n"
            "s = x |> concat([r], axis=3)\nt = concat([r, r_2, x], axis=-1) + r_3\n"
            "output s\noutput t\n")
    g = pipeline.check(text)
    assert out_type(g, "s") == "f32[N, 8, 8, 8]"
    assert out_type(g, "t") == "f32[N, 8, 8, 12]"
    core = desugar(text)
    assert "r_2 = add(r_1, x)" in core
    assert "r_3 = concat([r_2, x, r_1], axis=-1)" in core
    assert "s = concat([x, r], axis=3)" in core
    assert str(pipeline.check(core).outputs["t"].type) == "f32[N, 8, 8, 12]"


def test_a_piped_value_only_joins_a_list_argument():
    # reshape's second argument is a list too, but not of tensors: a pipe leaves it alone
    g = graph("y = x |> reshape([-1, 16 * 16 * 8])\noutput y")
    assert out_type(g) == "f32[N, 2048]"


def one_error(text: str):
    """The only diagnostic of `text`, with the line it points at."""
    with pytest.raises(SpecError) as e:
        cnnc.check(text)
    (d,) = [d for d in e.value.diagnostics if d.severity.name == "ERROR"]
    return d, text.count("\n", 0, d.span.start) + 1


@pytest.mark.parametrize("call,code,words", [
    ("depthwise_conv(x, 3, strides=2, dilation_rate=2)", "attr", "must have strides of 1"),
    ("separable_conv(x, 8, 3, strides=2, dilation_rate=[1, 2])", "attr", "must have strides of 1"),
    ("conv(x, 8, 3, strides=2, dilation_rate=2)", "attr", "must have strides of 1"),
    ("conv2d(x, w, 2, \"SAME\", dilations=[2, 1])", "attr", "must have strides of 1"),
    ("upsample(x, 0)", "attr", "`size` must be a positive int"),
    ("upsample(x, interpolation=\"cubic\")", "attr", "`interpolation` must be"),
    ("depthwise_conv(x, 3, depth_multiplier=0)", "attr", "`depth_multiplier` must be a positive"),
])
def test_layer_mistakes_are_reported_at_the_line(call, code, words):
    d, line = one_error(f"model m\ninput x: f32[N, 16, 16, 8]\nparam w: f32[3, 3, 8, 4] = zeros()\n"
                        f"y = {call}\noutput y\n")
    assert d.code == code and words in d.message, d
    assert line == 4
    if "strides of 1" in words:
        assert d.help


@pytest.mark.parametrize("layer", ["global_avg_pool(x)", "upsample(x)", "depthwise_conv(x, 3)",
                                   "separable_conv(x, 4, 3)"])
def test_image_layers_need_a_4d_input(layer):
    d, line = one_error(f"model m\ninput x: f32[N, 16]\ny = {layer}\noutput y\n")
    assert d.code == "layer-rank" and "4-D input" in d.message
    assert line == 3


@pytest.mark.parametrize("size", [(2, 2), (3, 1), (1, 4)])
def test_upsample_nearest_is_keras_repeat(size):
    """upsample(size) becomes resize(nearest) to [h * sh, w * sw]; at whole factors TF's nearest
    rule (row floor((o + 0.5) * in / out)) picks o // s: each cell repeated, as UpSampling2D."""
    import numpy as np
    from tests.reference import numpy_ops as ref
    x = np.random.default_rng(0).standard_normal((2, 5, 3, 4))
    got = ref.resize(x, (5 * size[0], 3 * size[1]), "nearest")
    np.testing.assert_array_equal(got, x.repeat(size[0], axis=1).repeat(size[1], axis=2))
