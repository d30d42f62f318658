"""Import direction: spec imports nothing from compiler or runtime; runtime imports neither
spec nor compiler (it uses only the built module and its manifest). Checked by parsing each
file's imports with `ast`, without importing anything."""
from __future__ import annotations

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
FORBIDDEN = {"spec": {"compiler", "runtime"}, "runtime": {"spec", "compiler"}, "compiler": {"runtime"}}


def imported_packages(path: Path, package: str) -> set[str]:
    """The cnnc subpackages a file imports, resolving relative imports against `package`."""
    found = set()
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            names = [a.name for a in node.names]
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                parts = package.split(".")
                base = parts[:len(parts) - node.level + 1]
                mod = ".".join(base + ([node.module] if node.module else []))
                names = [mod] + ([f"{mod}.{a.name}" for a in node.names] if not node.module else [])
            else:
                names = [node.module or ""]
        else:
            continue
        for name in names:
            parts = name.split(".")
            if parts[0] == "cnnc" and len(parts) > 1:
                found.add(parts[1])
            elif parts[0] in ("spec", "compiler", "runtime"):
                found.add(parts[0])
    return found


@pytest.mark.parametrize("layer", sorted(FORBIDDEN))
def test_no_stage_reaches_back(layer):
    bad = {}
    for path in sorted((ROOT / layer).rglob("*.py")):
        rel = path.relative_to(ROOT / layer).with_suffix("")
        package = ".".join(["cnnc", layer] + list(rel.parts[:-1]))
        hits = imported_packages(path, package) & FORBIDDEN[layer]
        if hits:
            bad[str(path.relative_to(ROOT))] = sorted(hits)
    assert not bad, f"{layer}/ must not import {sorted(FORBIDDEN[layer])}: {bad}"


def test_the_checker_sees_relative_imports():
    src = ROOT / "compiler" / "check" / "checker.py"
    assert "spec" in imported_packages(src, "cnnc.compiler.check")
