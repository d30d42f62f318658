"""Text -> AST. Lark (LALR) parses; a transformer builds spanned AST nodes; syntax errors
become diagnostics that say what was expected in words rather than Lark's token names."""
from __future__ import annotations

from functools import lru_cache
from pathlib import Path

from lark import Lark, Token, v_args
from lark.visitors import Transformer_NonRecursive
from lark.exceptions import UnexpectedCharacters, UnexpectedEOF, UnexpectedInput, UnexpectedToken

from . import ast
from .diagnostics import Label, SpecError, error
from .source import Source, Span

_GRAMMAR = Path(__file__).with_name("grammar.lark")

# How each terminal is said in an error message.
_WORDS = {
    "NAME": "a name", "NUMBER": "a number", "STRING": "a string", "_NL": "a new line",
    "$END": "the end of the file",
}


class BracketNewlines:
    """Post-lexer that drops newlines inside ( ) and [ ], so calls and lists may span lines."""

    always_accept = ("_NL",)

    def __init__(self):
        self.open: list[Token] = []     # brackets still open, for "never closed" notes
        self.braces: list[Token] = []   # scope/stack `{` still open (newlines inside them count)

    def process(self, stream):
        self.open, self.braces = [], []
        for tok in stream:
            if tok.type in ("LPAR", "LSQB"):
                self.open.append(tok)
            elif tok.type in ("RPAR", "RSQB"):
                if self.open:
                    self.open.pop()
            elif tok.type == "LBRACE":
                self.braces.append(tok)
            elif tok.type == "RBRACE":
                if self.braces:
                    self.braces.pop()
            elif tok.type == "_NL" and self.open:
                continue
            yield tok


_BRACKETS = BracketNewlines()


@lru_cache(maxsize=1)
def _lark() -> Lark:
    return Lark(_GRAMMAR.read_text(), parser="lalr", lexer="contextual", postlex=_BRACKETS,
                propagate_positions=True, maybe_placeholders=True)


def _span(meta) -> Span:
    return Span(meta.start_pos, meta.end_pos) if not meta.empty else Span(0, 0)


def _tok_span(tok: Token) -> Span:
    return Span(tok.start_pos, tok.end_pos)


@v_args(meta=True)
class _ToAst(Transformer_NonRecursive):
    """One short method per grammar rule; each returns an AST node carrying its span."""

    def start(self, meta, children):
        return ast.Module(tuple(children), _span(meta))

    # tokens wrapped in rules so that they carry spans
    def ident(self, meta, c):
        return ast.Ident(str(c[0]), _tok_span(c[0]))

    def name(self, meta, c):
        return ast.Name(str(c[0]), _tok_span(c[0]))

    def number(self, meta, c):
        text = str(c[0])
        is_int = not any(ch in text for ch in ".eE")
        return ast.Number(int(text) if is_int else float(text), text, _tok_span(c[0]))

    def string(self, meta, c):
        return ast.String(str(c[0])[1:-1], _tok_span(c[0]))

    def scope_name(self, meta, c):
        item = c[0]
        return ast.Ident(item.value, item.span) if isinstance(item, ast.String) else item

    # statements
    def model_decl(self, meta, c):
        return ast.ModelDecl(c[0], _span(meta))

    def input_decl(self, meta, c):
        return ast.InputDecl(c[0], c[1], _span(meta))

    def param_decl(self, meta, c):
        return ast.ParamDecl(c[0], c[1], c[2], _span(meta))

    def state_decl(self, meta, c):
        return ast.StateDecl(c[0], c[1], c[2], _span(meta))

    def update_decl(self, meta, c):
        return ast.UpdateDecl(c[0], c[1], _span(meta))

    def const_decl(self, meta, c):
        return ast.ConstDecl(c[0], c[1], c[2], _span(meta))

    def scope_block(self, meta, c):
        return ast.ScopeBlock(c[0], tuple(c[1:]), _span(meta))

    def stack_block(self, meta, c):
        return ast.StackBlock(c[0], c[1], tuple(x for x in c[2:] if x is not None), _span(meta))

    def stack_step(self, meta, c):
        return ast.StackStep(c[0], c[1], _span(meta))

    def output_decl(self, meta, c):
        return ast.OutputDecl(c[0], c[1], _span(meta))

    def loss_decl(self, meta, c):
        return ast.LossDecl(c[0], _span(meta))

    def metric_decl(self, meta, c):
        return ast.MetricDecl(c[0], c[1], _span(meta))

    def optimizer_decl(self, meta, c):
        return ast.OptimizerDecl(c[0], _span(meta))

    def let(self, meta, c):
        return ast.Let(c[0], c[1], _span(meta))

    # expressions
    def type(self, meta, c):
        return ast.TypeExpr(c[0], tuple(x for x in c[1:] if x is not None), _span(meta))

    def call(self, meta, c):
        args = [x for x in c[1:] if x is not None]
        pos = tuple(a for a in args if not isinstance(a, ast.Keyword))
        kws = tuple(a for a in args if isinstance(a, ast.Keyword))
        return ast.Call(c[0], pos, kws, _span(meta))

    def keyword(self, meta, c):
        return ast.Keyword(c[0], c[1], _span(meta))

    def list(self, meta, c):
        return ast.ListExpr(tuple(x for x in c if x is not None), _span(meta))

    def pipe(self, meta, c):
        # `a |> f(b, k=v)` is `f(a, b, k=v)`
        value, call = c
        return ast.Call(call.func, (value,) + call.args, call.kwargs, _span(meta), piped=True)

    def _binop(op):
        def rule(self, meta, c):
            return ast.BinOp(op, c[0], c[1], _span(meta))
        return rule

    add, sub, mul, div = _binop("+"), _binop("-"), _binop("*"), _binop("/")

    def neg(self, meta, c):
        return ast.Neg(c[0], _span(meta))


def _describe(term: str) -> str:
    if term in _WORDS:
        return _WORDS[term]
    for t in _lark().terminals:
        if t.name == term:
            if t.pattern.type == "str":
                return f"`{t.pattern.value}`"
            return f"`{term.lower()}`"
    return f"`{term}`"


# Closers and separators first: they are what a person most often forgot.
_FIRST = ["`,`", "`)`", "`]`", "`}`", "`=`", "`:`"]
_OPERATORS = {"`+`", "`-`", "`*`", "`/`", "`|>`"}
_EXPR_START = {"NAME", "NUMBER", "STRING", "LSQB"}


def _words(names) -> str:
    said = {_describe(n) for n in names}
    if len(said & _OPERATORS) >= 3:           # "or an operator" rather than five symbols
        said = (said - _OPERATORS) | {"an operator"}
    said = sorted(said,
                  key=lambda w: (_FIRST.index(w) if w in _FIRST else len(_FIRST), not w.startswith("`"), w))
    if len(said) <= 1:
        return said[0] if said else "something else"
    if len(said) > 8:
        said = said[:7] + ["…"]
    return ", ".join(said[:-1]) + " or " + said[-1]


# Words that start a statement, so a binding may not be named by them.
_KEYWORDS = {"model", "input", "param", "const", "state", "update", "scope", "stack", "output", "metric"}

_CHAR_HELP = {
    "@": "matrix products are written matmul(a, b)",
    ";": "write one statement per line",
    "{": "`{` only opens a `scope` or `stack` block",
}


def _found(tok: Token | None) -> str:
    if tok is None or tok.type == "$END":
        return "the end of the file"
    if tok.type == "_NL":
        return "the end of the line"
    return f"`{tok.value}`"


def _syntax_diagnostic(exc: UnexpectedInput, source: Source):
    if isinstance(exc, UnexpectedCharacters):
        ch = source.text[exc.pos_in_stream] if exc.pos_in_stream < len(source.text) else ""
        span = Span(exc.pos_in_stream, exc.pos_in_stream + 1)
        if ch in "\"'":
            return error("syntax", "this string is never closed", span, label="the string starts here",
                         help=f"close it with {ch} on the same line: strings may not span lines")
        return error("syntax", f"unexpected character `{ch}`", span, label="not valid here",
                     help=_CHAR_HELP.get(ch))
    tok = getattr(exc, "token", None)
    expected = (getattr(exc, "accepts", None) or getattr(exc, "expected", None) or set())
    expected = {e for e in expected if e != "$END" or len(expected) == 1} or set(expected)
    if tok is None or tok.type == "$END":
        pos = len(source.text.rstrip())
        span = Span(max(0, pos - 1), pos)
    elif tok.type == "_NL":
        span = Span(tok.start_pos, tok.start_pos + 1)
    else:
        span = Span(tok.start_pos, tok.end_pos)
    msg = f"expected {_words(expected)}, found {_found(tok)}"
    secondary, help_ = [], None
    line = source.line_col(span.start)[0]
    unclosed = [b for b in _BRACKETS.open if b.start_pos < span.start]
    braces = [b for b in _BRACKETS.braces if b.start_pos < span.start]
    if unclosed:
        b = unclosed[-1]
        earlier = source.line_col(b.start_pos)[0] < line
        secondary.append(Label(Span(b.start_pos, b.end_pos),
                               f"this `{b.value}` is {'never closed' if earlier else 'still open'}", False))
        if tok is not None and tok.type == "EQUAL" and b.type == "LSQB":
            msg = "expected `,` or `]` in this list, found `=`"
            help_ = "close the list with `]` before the next argument"
        elif earlier:
            help_ = f"close the `{b.value}` with `{')' if b.type == 'LPAR' else ']'}`"
    elif braces and "RBRACE" in expected and (tok is None or tok.type == "$END"):
        b = braces[-1]
        secondary.append(Label(Span(b.start_pos, b.end_pos), "this `{` is never closed", False))
        help_ = "close the block with `}` on a line of its own"
    if help_ is None and tok is not None and tok.type == "EQUAL":
        before = source.text[source.text.rfind("\n", 0, span.start) + 1:span.start].strip()
        if before in _KEYWORDS:
            help_ = f"`{before}` starts a declaration; a binding needs another name"
    if help_ is None and tok is not None and tok.type in _EXPR_START and "COMMA" in expected:
        help_ = f"is a `,` missing before {_found(tok)}?"
    return error("syntax", msg, span, label="unexpected here", secondary=secondary, help=help_)


MAX_SPEC_BYTES = 1 << 20      # a real model is a few KB; past this a spec is refused, not crawled


def parse(source: Source) -> ast.Module:
    """Parse a spec into its AST, or raise SpecError with a located syntax diagnostic."""
    text = source.text
    size = len(text.encode("utf-8", "surrogatepass"))
    if size > MAX_SPEC_BYTES:
        raise SpecError([error("too-large", f"the spec is {size:,} bytes; cnnc reads specs of at most "
                               f"{MAX_SPEC_BYTES:,} bytes", Span(0, 0),
                               help="a model this large is probably generated: split it, or check "
                               "that this is the file you meant")], source)
    work, diags = text if text.endswith("\n") else text + "\n", []
    while True:
        try:
            tree = _lark().parse(work)
        except UnexpectedInput as exc:
            diags.append(_syntax_diagnostic(exc, source))
            region = _statement_at(exc, work)
            if region is None or len(diags) >= MAX_SYNTAX_ERRORS:
                raise SpecError(diags, source) from None
            work = _blank(work, *region)
            continue
        if diags:
            raise SpecError(diags, source)
        return _ToAst().transform(tree)


MAX_SYNTAX_ERRORS = 20


def _statement_at(exc: UnexpectedInput, text: str) -> tuple[int, int] | None:
    """The lines to blank out so that parsing can go on after `exc`, reporting the file's other
    syntax errors in the same run: from the line where the failing statement began (its
    outermost bracket still open) to the end of the line of the error, and on to the matching
    `}` if those lines open a block. None when nothing after the error is left to parse."""
    tok = getattr(exc, "token", None)
    if isinstance(exc, UnexpectedCharacters):
        pos = exc.pos_in_stream
    elif tok is None or tok.type == "$END":
        return None
    else:
        pos = tok.start_pos
    begin = min([pos] + [b.start_pos for b in _BRACKETS.open])
    start = text.rfind("\n", 0, begin) + 1
    end = text.find("\n", pos)
    end = len(text) if end < 0 else end
    depth, i = 0, start
    while i < len(text):                   # an opened block is skipped whole, to its `}`
        ch = text[i]
        line_end = text.find("\n", i)
        line_end = len(text) if line_end < 0 else line_end
        if ch == "#":                      # a comment: on to the end of its line
            i = line_end
            continue
        if ch == '"':                      # a string: past its closing quote, if on this line
            close = text.find('"', i + 1, line_end)
            i = line_end if close < 0 else close + 1
            continue
        if ch == "{":
            depth += 1
        elif ch == "}":
            depth -= 1
            if depth <= 0 and i >= end:
                end = line_end
                break
        if i >= end and depth <= 0:
            break
        i += 1
    return (start, end) if end > start and end < len(text) else None


def _blank(text: str, start: int, end: int) -> str:
    """Spaces over text[start:end], newlines kept: every later span stays where it was."""
    return text[:start] + "".join(c if c == "\n" else " " for c in text[start:end]) + text[end:]
