"""Mutation fuzz: random edits of every example spec (delete, duplicate or swap a token or a
line, change a number, rename an identifier, drop a bracket). Whatever the text, `cnnc check`
must answer with diagnostics (exit 0 or 1), never a Python traceback or an internal error.
Seeded, so a failure names a reproducible mutant."""
from __future__ import annotations

import random
import re

import pytest

from .conftest import EXAMPLES

TOKEN = re.compile(r'"[^"\n]*"|[A-Za-z_][A-Za-z0-9_]*|\d+\.?\d*(?:[eE][+-]?\d+)?|\|>|\s+|.', re.S)
MUTANTS_PER_EXAMPLE = int(__import__("os").environ.get("CNNC_FUZZ_MUTANTS", 45))


def mutate(text: str, rng: random.Random) -> str:
    toks = TOKEN.findall(text)
    words = [i for i, t in enumerate(toks) if not t.isspace()]
    kind = rng.choice(["del_tok", "dup_tok", "swap_tok", "del_line", "dup_line", "swap_line",
                       "number", "rename", "bracket", "insert"])
    i = rng.choice(words)
    if kind == "del_tok":
        toks[i] = ""
    elif kind == "dup_tok":
        toks[i] = toks[i] + " " + toks[i]
    elif kind == "swap_tok":
        j = rng.choice(words)
        toks[i], toks[j] = toks[j], toks[i]
    elif kind == "number":
        nums = [k for k in words if toks[k][0].isdigit()] or [i]
        k = rng.choice(nums)
        toks[k] = rng.choice(["0", "-1", "1", "2", "3", "7", "100", "1e9", "0.5", "99999999999999999999", "-0"])
    elif kind == "rename":
        names = [k for k in words if toks[k][0].isalpha() or toks[k][0] == "_"] or [i]
        k = rng.choice(names)
        toks[k] = rng.choice(["x", "N", "f32", "i32", "relu", "scope", "model", "param", "output", "loss",
                              "conv", "dense", "stack", "true", "None", toks[k] + "_", toks[k][:-1] or "z"])
    elif kind == "bracket":
        br = [k for k in words if toks[k] in "()[]{}"] or [i]
        toks[rng.choice(br)] = ""
    elif kind == "insert":
        toks[i] = toks[i] + rng.choice([" , ", " = ", " - ", " * ", " |> ", " [ ", " ) ", "\n", " \"", " # "])
    else:
        lines = "".join(toks).split("\n")
        a, b = rng.randrange(len(lines)), rng.randrange(len(lines))
        if kind == "del_line":
            del lines[a]
        elif kind == "dup_line":
            lines.insert(b, lines[a])
        else:
            lines[a], lines[b] = lines[b], lines[a]
        return "\n".join(lines)
    return "".join(toks)


@pytest.mark.parametrize("spec", sorted(EXAMPLES.glob("*.cnn")), ids=lambda p: p.stem)
def test_mutants_never_crash_the_checker(spec, run_cnnc, tmp_path):
    rng = random.Random(f"cnnc-fuzz-{spec.stem}")
    original = spec.read_text()
    path = tmp_path / "mutant.cnn"
    for n in range(MUTANTS_PER_EXAMPLE):
        text = original
        for _ in range(rng.randint(1, 3)):
            text = mutate(text, rng)
        path.write_text(text)
        out = run_cnnc("check", "-q", str(path))
        crashed = out.code not in (0, 1) or "Traceback" in out.stderr or "internal error" in out.stderr
        assert not crashed, f"mutant {n} of {spec.name} crashed cnnc check:\n{text}\n---\n{out.stderr}"
        if out.code == 1:
            assert re.search(r":\d+:\d+: error: ", out.stderr) or out.stderr.startswith("cnnc: error"), out.stderr
