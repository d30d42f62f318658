"""The editor tier reuses the spec tier's in-process `cnnc` runner."""
from tests.spec.conftest import run_cnnc  # noqa: F401
