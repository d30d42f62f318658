"""Shape rules of depthwise_conv2d and resize against plain formulas written here (TF's docs:
a window of k taps dilated by d spans (k - 1) * d + 1 cells), and their diagnostics' codes."""
from __future__ import annotations

import math

import pytest

from .test_shape_rules import f32, type_of


def dw_out(size, k, s, d, padding):
    span = (k - 1) * d + 1
    return math.ceil(size / s) if padding == "SAME" else math.ceil((size - span + 1) / s)


@pytest.mark.parametrize("h,w,c,m,kh,kw,s,d,pad", [
    (28, 28, 8, 1, 3, 3, (2, 2), (1, 1), "SAME"), (13, 17, 4, 3, 3, 2, (1, 3), (1, 1), "VALID"),
    (20, 20, 6, 2, 3, 3, (1, 1), (2, 3), "VALID"), (9, 9, 2, 1, 5, 5, (1, 1), (2, 2), "SAME")])
def test_depthwise_output_shape(h, w, c, m, kh, kw, s, d, pad):
    body = (f"input x: {f32('N', h, w, c)}\nparam f: {f32(kh, kw, c, m)} = zeros()\n"
            f"y = depthwise_conv2d(x, f, strides={list(s)}, padding=\"{pad}\", dilations={list(d)})")
    assert type_of(body) == f32("N", dw_out(h, kh, s[0], d[0], pad), dw_out(w, kw, s[1], d[1], pad), c * m)


@pytest.mark.parametrize("body,codes", [
    ("param f: f32[3, 3, 4, 1] = zeros()\ny = depthwise_conv2d(x, f, 1, \"SAME\")", "channels"),
    ("param f: f32[3, 3, 8, 1] = zeros()\ny = depthwise_conv2d(x, f, 2, \"SAME\", dilations=2)", "attr"),
    ("param f: f32[3, 3, 8, 1] = zeros()\ny = depthwise_conv2d(x, f, 1, \"SAME\", dilations=[1, 2, 2, 2])", "attr"),
    ("param f: f32[5, 5, 8, 1] = zeros()\ny = depthwise_conv2d(x, f, 1, \"VALID\", dilations=3)", "window-empty"),
    ("y = resize(x, [0, 4])", "attr"), ("y = resize(x, [4])", "attr"),
    ("y = resize(x, [4, 4], method=\"bicubic\")", "attr")])
def test_diagnostics(body, codes):
    assert type_of("input x: f32[N, 10, 10, 8]\n" + body) == "error: " + codes


def test_resize_shape():
    assert type_of("input x: f32[N, 10, 12, 3]\ny = resize(x, [25, 6], \"nearest\")") == f32("N", 25, 6, 3)
    assert type_of("input x: f32[N, 10, 12, 3]\ny = resize(images=x, size=[5, 24])") == f32("N", 5, 24, 3)
