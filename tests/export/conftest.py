"""One build directory for the export tests: a spec built by one test is reused by the next."""
from __future__ import annotations

import pytest


@pytest.fixture(scope="session")
def build_dir(tmp_path_factory):
    return tmp_path_factory.mktemp("export_gen")
