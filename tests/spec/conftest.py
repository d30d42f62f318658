"""Helpers for the spec tier: run `cnnc` in-process and capture what it prints."""
from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

import pytest

from cnnc import cli

ROOT = Path(__file__).resolve().parents[2]
EXAMPLES = ROOT / "examples"
ERRORS = EXAMPLES / "errors"


@dataclass
class Run:
    code: int
    stdout: str
    stderr: str


@pytest.fixture
def run_cnnc(capsys, monkeypatch):
    """run_cnnc(*argv, cwd=None) -> Run: cnnc.cli.main in-process, with its exit code and output."""
    def run(*argv, cwd: Path | None = None) -> Run:
        if cwd is not None:
            monkeypatch.chdir(cwd)
        capsys.readouterr()
        try:
            code = cli.main(list(argv))
        except SystemExit as e:           # argparse's --help / --version / usage errors
            code = e.code if isinstance(e.code, int) else 1
        out = capsys.readouterr()
        return Run(code, out.out, out.err)
    return run
