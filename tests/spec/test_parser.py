"""The parser: every core form of language-core.md parses to the right AST, spans point at
the right text, and syntax errors say what was expected in words, not Lark token names."""
from __future__ import annotations

import pytest

from cnnc.spec import ast
from cnnc.spec.desugar import desugar
from cnnc.spec.diagnostics import SpecError
from cnnc.spec.parser import parse
from cnnc.spec.source import Source


def p(text: str) -> tuple[ast.Module, Source]:
    src = Source(text, "t.cnn")
    return parse(src), src


def text_of(src: Source, node) -> str:
    return src.text[node.span.start:node.span.end]


def test_every_statement_form():
    m, src = p('''# comment line
model mnist   # trailing comment
input x: f32[N, 784]
input ids: i32[N]
param w: f32[3, 3, 1, 32] = random_normal(stddev=1.0)
const k: f32[2] = [1.0, 2.0]
h = relu(x)
scope conv1 {
  param b: f32[32] = constant(1.0)
}
scope "layer1-conv1" {
  z = x
}
output h
output y = softmax(h)
loss = reduce_mean(h)
metric accuracy = reduce_mean(h)
optimizer = adam(lr=0.001, beta1=0.9, beta2=0.999, epsilon=1e-7)
''')
    kinds = [type(s).__name__ for s in m.body]
    assert kinds == ["ModelDecl", "InputDecl", "InputDecl", "ParamDecl", "ConstDecl", "Let", "ScopeBlock",
                     "ScopeBlock", "OutputDecl", "OutputDecl", "LossDecl", "MetricDecl", "OptimizerDecl"]
    model, x, ids, w, k, h, s1, s2, out1, out2, loss, metric, opt = m.body
    assert model.name.name == "mnist"
    assert x.type.dtype.name == "f32" and [type(d).__name__ for d in x.type.dims] == ["Name", "Number"]
    assert ids.type.dtype.name == "i32"
    assert isinstance(w.init, ast.Call) and w.init.func.name == "random_normal"
    assert w.init.kwargs[0].name.name == "stddev" and w.init.kwargs[0].value.value == 1.0
    assert [i.value for i in k.value.items] == [1.0, 2.0]
    assert s1.name.name == "conv1" and isinstance(s1.body[0], ast.ParamDecl)
    assert s2.name.name == "layer1-conv1"                  # a string scope keeps its text
    assert out1.value is None and isinstance(out2.value, ast.Call)
    assert metric.name.name == "accuracy"
    assert [kw.name.name for kw in opt.value.kwargs] == ["lr", "beta1", "beta2", "epsilon"]
    assert opt.value.kwargs[3].value.value == 1e-7


def test_state_and_update():
    m, src = p("model m\nscope bn {\n  state mean: f32[4] = zeros()\n  update mean = mean * 0.9\n}\n"
               "y = update_rate + state_size\n")
    decl, upd = m.body[1].body
    assert isinstance(decl, ast.StateDecl) and decl.name.name == "mean"
    assert text_of(src, decl.type) == "f32[4]" and isinstance(decl.init, ast.Call)
    assert isinstance(upd, ast.UpdateDecl) and upd.name.name == "mean"
    assert text_of(src, upd.value) == "mean * 0.9"
    assert isinstance(m.body[2], ast.Let)          # the words are keywords only at a statement's start


def test_a_keyword_as_a_binding_name_says_so():
    with pytest.raises(SpecError) as e:
        p("model m\nstate = 1\n")
    assert e.value.diagnostics[0].help == "`state` starts a declaration; a binding needs another name"


def test_spans_point_at_the_text():
    m, src = p('model m\ninput x: f32[N, 7*7*64]\ny = conv2d(x, w, strides=[1, 2, 2, 1], padding="SAME")\n')
    x, y = m.body[1], m.body[2]
    assert text_of(src, x) == "input x: f32[N, 7*7*64]"
    assert text_of(src, x.name) == "x"
    assert text_of(src, x.type) == "f32[N, 7*7*64]"
    assert text_of(src, x.type.dims[1]) == "7*7*64"
    call = y.value
    assert text_of(src, call) == 'conv2d(x, w, strides=[1, 2, 2, 1], padding="SAME")'
    assert text_of(src, call.func) == "conv2d"
    assert text_of(src, call.args[1]) == "w"
    assert text_of(src, call.kwargs[0]) == "strides=[1, 2, 2, 1]"
    assert text_of(src, call.kwargs[1].value) == '"SAME"'
    assert src.line_col(call.span.start) == (3, 5)


def test_dims_are_integer_expressions():
    m, _ = p("model m\nparam w: f32[7*7*64, 10] = zeros()\n")
    d = m.body[1].type.dims[0]
    assert isinstance(d, ast.BinOp) and d.op == "*"
    assert isinstance(d.left, ast.BinOp) and d.right.value == 64      # left-associative


def test_arithmetic_precedence_and_negation():
    m, _ = p("model m\ny = a + b * -c - d / 2\n")
    e = m.body[1].value
    assert e.op == "-" and e.left.op == "+" and e.left.right.op == "*"
    assert isinstance(e.left.right.right, ast.Neg) and e.right.op == "/"


def test_nested_const_lists_and_newlines_inside_brackets():
    m, _ = p("model m\nconst k: f32[2, 2] = [\n  [1.0, 2.0],   # row 0\n  [3.0, 4.0],\n]\n"
             "y = conv2d(\n  x,\n  k,\n  strides=1,\n  padding=\"VALID\",\n)\n")
    k = m.body[1].value
    assert [[i.value for i in row.items] for row in k.items] == [[1.0, 2.0], [3.0, 4.0]]
    assert len(m.body[2].value.args) == 2 and len(m.body[2].value.kwargs) == 2


def test_numbers():
    m, _ = p("model m\nc = f(1, 2.5, .5, 1e-3, 3.)\n")
    vals = [a.value for a in m.body[1].value.args]
    assert vals == [1, 2.5, 0.5, 1e-3, 3.0] and isinstance(vals[0], int) and isinstance(vals[4], float)


def test_pipes_insert_the_left_side_as_first_argument():
    m, src = p("model m\ny = x |> conv(8, 3) |> max_pool(2, padding=\"SAME\")\n")
    outer = m.body[1].value
    assert outer.func.name == "max_pool" and outer.args[0].func.name == "conv"
    assert outer.args[0].args[0].id == "x" and [a.value for a in outer.args[0].args[1:]] == [8, 3]
    assert outer.kwargs[0].name.name == "padding"


def test_stack_block_and_its_desugaring():
    m, _ = p('model m\nstack y = x {\n  "c1": conv(8, 3)\n  max_pool(2)\n  fc: dense(10)\n}\n')
    st = m.body[1]
    assert isinstance(st, ast.StackBlock) and st.name.name == "y" and st.input.id == "x"
    assert [s.scope.name if s.scope else None for s in st.steps] == ["c1", None, "fc"]
    core = desugar(m).body
    assert [type(s).__name__ for s in core] == ["ModelDecl", "ScopeBlock", "Let", "ScopeBlock"]
    assert core[1].body[0].name.name == "y_1" and core[1].body[0].value.args[0].id == "x"
    assert core[2].name.name == "y_2" and core[2].value.args[0].id == "y_1"
    assert core[3].body[0].name.name == "y" and core[3].body[0].value.args[0].id == "y_2"


def test_blank_lines_comments_and_line_continuations():
    m, _ = p("\n\n# only a comment\nmodel m   \n\n   \ninput x: f32[N, \\\n 3]\n# end")
    assert [type(s).__name__ for s in m.body] == ["ModelDecl", "InputDecl"]


def test_crlf_line_endings():
    m, _ = p("model m\r\ninput x: f32[N, 3]\r\noutput x\r\n")
    assert len(m.body) == 3


def syntax_error(text: str):
    with pytest.raises(SpecError) as e:
        p(text)
    (d,) = e.value.diagnostics
    assert d.code == "syntax"
    return d


@pytest.mark.parametrize("text", [
    "model m\ny = relu(x\n", "model m\ny = f(x y)\n", "model m\ny = [1, 2\n", "model m\ninput x f32[N]\n",
    "model m\nscope a {\n y = x\n", "model m\ny = x @ w\n", "model m\ny = f(\"abc)\n", "model m\n= x\n",
    "model m\ny = x +\n", "model m\nparam w: f32[3 = zeros()\n",
])
def test_syntax_errors_use_words_not_token_names(text):
    d = syntax_error(text)
    words = d.message + " " + (d.help or "") + " ".join(lb.text for lb in d.labels)
    for lark_name in ("RPAR", "LPAR", "COMMA", "__ANON", "_NL", "$END", "NAME", "NUMBER", "RSQB", "LSQB",
                      "EQUAL", "Token(", "STAR", "PLUS"):
        assert lark_name not in words, words


def test_unclosed_bracket_points_back_at_it():
    d = syntax_error("model m\ny = relu(matmul(x, w)\noutput y\n")
    assert d.message == "expected `,`, `)` or an operator, found `output`"
    secondary = [lb for lb in d.labels if not lb.primary]
    assert secondary and secondary[0].text == "this `(` is never closed" and secondary[0].span.start == 16


def test_missing_comma_suggests_one():
    d = syntax_error("model m\ny = matmul(x w)\n")
    assert d.help == "is a `,` missing before `w`?"


def test_unterminated_string():
    d = syntax_error('model m\ny = f("abc)\n')
    assert d.message == "this string is never closed"


def test_a_long_flat_sum_parses_without_recursion_limits():
    # 800 terms used to raise RecursionError in the tree transformer (400 worked)
    n = 5000
    mod, _ = p("model m\ninput x: f32[N, 4]\ny = " + " + ".join(f"x{i}" for i in range(n)) + "\noutput y\n")
    e, depth = mod.body[2].value, 0
    while isinstance(e, ast.BinOp):         # left-deep: ((x0 + x1) + x2) + ...
        assert e.right.id == f"x{n - 1 - depth}"
        e, depth = e.left, depth + 1
    assert depth == n - 1 and e.id == "x0"


def test_a_spec_past_the_size_limit_is_refused_with_a_diagnostic():
    from cnnc.spec.parser import MAX_SPEC_BYTES
    text = "model m\n" + "# padding\n" * (MAX_SPEC_BYTES // 10 + 1)
    with pytest.raises(SpecError) as e:
        p(text)
    (d,) = e.value.diagnostics
    assert d.code == "too-large" and f"{len(text.encode()):,} bytes" in d.message
    assert d.labels[0].span.start == 0


def test_every_syntax_error_of_a_file_is_reported_in_one_run():
    text = ("model m\ninput x: f32[N, 10]\ny = matmul(x w)\nz = relu(y\nq = 3\n"
            "scope a b {\n  u = y\n}\nv = x @ w\nt = f(\"abc)\noutput y\n")
    with pytest.raises(SpecError) as e:
        p(text)
    src = Source(text, "t.cnn")
    got = [(src.line_col(d.labels[0].span.start), d.message) for d in e.value.diagnostics]
    assert got == [
        ((3, 14), "expected `,`, `)`, `=`, `(` or an operator, found `w`"),
        ((5, 1), "expected `,`, `)`, `=`, `(` or an operator, found `q`"),   # `relu(` never closed
        ((6, 9), "expected `{`, found `b`"),               # its block is skipped whole, `}` included
        ((9, 7), "unexpected character `@`"),
        ((10, 7), "this string is never closed"),
    ]


def test_an_error_at_the_end_of_the_file_stops_the_search():
    with pytest.raises(SpecError) as e:
        p("model m\ny = f(x y)\nscope a {\n  z = x\n")
    assert [d.message for d in e.value.diagnostics] == [
        "expected `,`, `)`, `=`, `(` or an operator, found `y`", "expected `}`, found the end of the file"]


def test_long_and_deep_expressions_are_checked_without_internal_errors():
    import cnnc
    n = 3000
    g = cnnc.check("model m\ninput x: f32[N, 4]\ny = " + " + ".join(["x"] * n) + "\noutput y\n")
    assert sum(node.op == "add" for node in g.nodes) == n - 1
    g = cnnc.check("model m\ninput x: f32[N, 4]\ny = x * (" + " + ".join(["2"] * n) + ")\noutput y\n")
    assert [float(c) for c in g.consts.values()] == [2.0 * n]      # folded at compile time
    deep = "model m\ninput x: f32[N, 4]\ny = " + "relu(" * 3000 + "x" + ")" * 3000 + "\noutput y\n"
    with pytest.raises(SpecError) as e:
        cnnc.check(deep)
    (d,) = [d for d in e.value.diagnostics if d.severity.value == "error"]
    assert d.code == "too-deep" and d.help == "split it into several bindings"
