"""Make `cnnc.runtime` importable before the project is pip-installed, and share fixtures."""

import importlib.util
import pathlib
import sys

import pytest

RUNTIME_DIR = pathlib.Path(__file__).resolve().parents[2] / "runtime"


def _load_runtime():
    try:
        import cnnc.runtime  # noqa: F401  (works once `pip install -e .` has run)
        return
    except Exception:
        pass
    for name in [m for m in sys.modules if m == "cnnc.runtime" or m.startswith("cnnc.runtime.")]:
        del sys.modules[name]
    # No stand-in `cnnc` is registered: `from cnnc.runtime import ...` only needs "cnnc.runtime" in
    # sys.modules, and a stub parent would hide the real package from other test directories.
    pkg = sys.modules.get("cnnc")
    spec = importlib.util.spec_from_file_location(
        "cnnc.runtime", RUNTIME_DIR / "__init__.py", submodule_search_locations=[str(RUNTIME_DIR)])
    module = importlib.util.module_from_spec(spec)
    sys.modules["cnnc.runtime"] = module
    spec.loader.exec_module(module)
    if pkg is not None:
        pkg.runtime = module


_load_runtime()


@pytest.fixture(scope="session")
def digits():
    from cnnc.runtime import load_digits
    return load_digits(test_fraction=0.2, seed=0)
