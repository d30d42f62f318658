"""`cnnc check SPEC --graph OUT`: one box per binding with its op, shape and param count, scopes
as clusters, the data flow as arrows (checked against the names each line of the spec reads),
skip connections drawn apart; .svg through Graphviz, .dot with nothing installed."""
from __future__ import annotations

import re
import shutil
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
FLOWERS = ROOT / "examples" / "flowers.cnn"


def reference(text: str) -> tuple[set[str], set[tuple[str, str]]]:
    """The boxes and arrows flowers.cnn should give, read off its text: every input and
    binding, the loss and each metric; an arrow from each binding or input a line reads."""
    code = [line.split("#")[0] for line in text.splitlines()]
    inputs = [m.group(1) for line in code if (m := re.match(r"\s*input (\w+):", line))]
    boxes, reads = set(inputs), {}
    for line in code:
        m = re.match(r"\s*(?:output |metric )?(\w+) = (.*)", line)
        if m and not line.strip().startswith(("param", "optimizer")):
            name = m.group(1) if not line.strip().startswith("metric") else f"metric {m.group(1)}"
            boxes.add(name)
            reads[name] = set(re.findall(r"[A-Za-z_]\w*", m.group(2)))
    edges = {(src, dst) for dst, names in reads.items() for src in names & (boxes | set(inputs))}
    return boxes, edges


def parse_dot(text: str) -> tuple[dict[str, str], set[tuple[str, str]], list[str]]:
    """Box id -> its label's first line, the arrows by those names, and the full labels."""
    labels = dict(re.findall(r'^\s*(n\d+) \[label="([^"]*)"', text, flags=re.M))
    names = {k: v.split("\\n")[0] for k, v in labels.items()}
    edges = {(names[a], names[b]) for a, b in re.findall(r"^\s*(n\d+) -> (n\d+)", text, flags=re.M)}
    return names, edges, list(labels.values())


def test_flowers_dot_has_one_box_per_binding_and_the_data_flow(run_cnnc, tmp_path):
    out = tmp_path / "flowers.dot"
    result = run_cnnc("check", "-q", str(FLOWERS), "--graph", str(out))
    assert result.code == 0, result.stderr
    text = out.read_text()
    names, edges, labels = parse_dot(text)
    boxes, expected_edges = reference(FLOWERS.read_text())
    assert sorted(names.values()) == sorted(boxes)          # one box each, none twice
    assert edges == expected_edges
    by_name = {label.split("\\n")[0]: label for label in labels}
    assert by_name["conv1"] == "conv1\\nconv2d\\nf32[N, 100, 100, 32]\\n2,400 params"
    assert by_name["pool4"] == "pool4\\nmax_pool\\nf32[N, 6, 6, 128]"
    assert "output logits" in by_name["logits"]
    assert text.count("subgraph cluster_") == 11
    layer1 = re.search(r'label="layer1-conv1";(.*?)\n  }', text, flags=re.S).group(1)
    assert [n for n in re.findall(r'label="(\w+)\\n', layer1)] == ["conv1", "relu1"]


def test_a_skip_connection_is_drawn_apart(run_cnnc, tmp_path):
    spec = tmp_path / "res.cnn"
    spec.write_text("model res\ninput x: f32[N, 8, 8, 4]\nh1 = conv(x, 4, 3, activation=relu)\n"
                    "h2 = conv(h1, 4, 3)\ny = relu(h2 + x)\noutput y\n")
    assert run_cnnc("check", "-q", str(spec), "--graph", str(tmp_path / "res.dot")).code == 0
    text = (tmp_path / "res.dot").read_text()
    names, _, _ = parse_dot(text)
    ids = {v: k for k, v in names.items()}
    arrows = dict(((a, b), style) for a, b, style in re.findall(r"(n\d+) -> (n\d+)(.*);", text))
    assert "dashed" in arrows[(ids["x"], ids["y"])]                       # x skips h1 and h2
    assert all("dashed" not in arrows[(ids[a], ids[b])] for a, b in [("x", "h1"), ("h1", "h2"), ("h2", "y")])


@pytest.mark.skipif(shutil.which("dot") is None, reason="Graphviz's dot is not installed (.ci/run installs it)")
def test_flowers_svg(run_cnnc, tmp_path):
    result = run_cnnc("check", str(FLOWERS), "--graph", "flowers.svg", cwd=tmp_path)
    assert result.code == 0 and "wrote flowers.svg" in result.stdout
    svg = (tmp_path / "flowers.svg").read_text()
    assert "<svg" in svg and "f32[N, 6, 6, 128]" in svg and "layer8&#45;pool4" in svg


def test_without_graphviz_a_clear_message_and_dot_still_works(run_cnnc, tmp_path, monkeypatch):
    monkeypatch.setenv("PATH", str(tmp_path))                             # no `dot` on it
    monkeypatch.setitem(sys.modules, "graphviz", None)                    # nor the package
    result = run_cnnc("check", "-q", str(FLOWERS), "--graph", str(tmp_path / "f.svg"))
    assert result.code == 1 and not (tmp_path / "f.svg").exists()
    assert "apt-get install graphviz" in result.stderr and "pip install 'cnnc[graph]'" in result.stderr
    assert run_cnnc("check", "-q", str(FLOWERS), "--graph", str(tmp_path / "f.dot")).code == 0
    assert (tmp_path / "f.dot").read_text().startswith('digraph "flowers"')


def test_an_unknown_format_is_refused(run_cnnc, tmp_path):
    result = run_cnnc("check", "-q", str(FLOWERS), "--graph", str(tmp_path / "f.jpeg"))
    assert result.code == 1 and ".svg" in result.stderr and not (tmp_path / "f.jpeg").exists()
