"""An example built with CNNC_CFLAGS="-fsanitize=address,undefined" trains, predicts and
differentiates with no report from AddressSanitizer or UBSan. The documented command
`python -m tests.tools.sanitize` runs every example this way."""
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]


def test_digits_runs_clean_under_address_and_undefined_sanitizers(tmp_path):
    from tests.tools import sanitize
    if not sanitize.available():
        pytest.skip("this compiler has no AddressSanitizer runtime (libasan)")
    r = sanitize.run("digits", tmp_path, timeout=900)
    assert r.returncode == 0, r.stderr[-4000:]
    assert "ERROR: AddressSanitizer" not in r.stderr and "runtime error" not in r.stderr, r.stderr[-4000:]
    assert "trained" in r.stdout
