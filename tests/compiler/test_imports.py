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


# --------------------------------------------------------------------------- inside compiler/

# Each module of compiler/ (a package counts as one module) at its stage; a module may import
# only modules at its own stage or an earlier one, at the top of the file or inside a function.
# kernel.py sits with ops: the op files define the kernel rules, on kernel.py's records.
# target.py (the CPU target: ISA flags, micro-tile) is a description of the machine that kernel
# rules, emit and build consult, so it sits first.
# functions.py (kernel names), fuse.py, memory.py, summary.py and bounds.py (the index ranges
# the manifest lists) are parts of lowering
# (summary renders the lowered Program's memory); verify.py re-checks autodiff's graph.
# check/ (the checker) may import types, ir, ops and builder, and the optimizer and
# initializer tables it validates against.
STAGES = [
    {"types", "target"},
    {"ir"},
    {"ops", "kernel"},
    {"builder"},
    {"check", "initializers", "optimizers"},
    {"modes"},
    {"autodiff", "verify"},
    {"lower", "functions", "fuse", "fold", "memory", "summary", "bounds"},
    {"emit"},
    {"build"},
]
STAGE_OF = {name: i for i, names in enumerate(STAGES) for name in names}


def compiler_modules() -> dict[str, set[str]]:
    """Each compiler module (by its first name under compiler/) -> the compiler modules it
    imports anywhere in its files, late imports included."""
    out: dict[str, set[str]] = {}
    for path in sorted((ROOT / "compiler").rglob("*.py")):
        rel = path.relative_to(ROOT / "compiler").with_suffix("")
        if rel.parts == ("__init__",):
            continue
        name = rel.parts[0]
        package = ".".join(["cnnc", "compiler"] + list(rel.parts[:-1]))
        deps = out.setdefault(name, set())
        for node in ast.walk(ast.parse(path.read_text(), str(path))):
            if isinstance(node, ast.ImportFrom) and node.level:
                parts = package.split(".")
                base = parts[:len(parts) - node.level + 1] + (node.module.split(".") if node.module else [])
                targets = [base] if node.module else [base + [a.name] for a in node.names]
            elif isinstance(node, ast.ImportFrom):
                targets = [(node.module or "").split(".")]
            elif isinstance(node, ast.Import):
                targets = [a.name.split(".") for a in node.names]
            else:
                continue
            for t in targets:
                if t[:1] == ["cnnc"]:
                    t = t[1:]
                if len(t) > 1 and t[0] == "compiler" and t[1] != name:
                    deps.add(t[1])
    return out


def test_every_compiler_module_has_a_stage():
    missing = sorted(set(compiler_modules()) - set(STAGE_OF))
    assert not missing, f"place these in STAGES: {missing}"


def test_compiler_imports_follow_the_stage_order():
    bad = [f"{m} (stage {STAGE_OF[m]}) imports {d} (stage {STAGE_OF[d]})"
           for m, deps in compiler_modules().items() for d in sorted(deps)
           if m in STAGE_OF and d in STAGE_OF and STAGE_OF[d] > STAGE_OF[m]]
    assert not bad, "imports against the stage order: " + "; ".join(bad)


def test_no_import_circle_in_compiler():
    deps = compiler_modules()
    circles = []
    for start in sorted(deps):
        stack = [(start, [start])]
        while stack:
            m, path = stack.pop()
            for d in sorted(deps.get(m, ())):
                if d == start:
                    circles.append(" -> ".join(path + [d]))
                elif d not in path and d > start:
                    stack.append((d, path + [d]))
    assert not circles, f"import circles: {circles}"


def test_the_order_check_sees_late_and_package_imports():
    deps = compiler_modules()
    assert "kernel" in deps["ops"] and "ops" in deps["builder"]
    assert "emit" in deps["build"] and "autodiff" in deps["lower"]
