"""The project's own files agree: the lock with pyproject.toml, the code with its linter."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

from helpers import ROOT

BIN = Path(sys.executable).parent


def tool(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([str(BIN / args[0]), *args[1:]], cwd=ROOT, capture_output=True, text=True, timeout=120)


def test_the_lock_matches_pyproject():
    result = tool("uv", "lock", "--check", "--offline")  # offline: the lock's own metadata is enough to check it
    assert result.returncode == 0, result.stderr


def test_ruff_finds_nothing_to_fix():
    for args in (("ruff", "check", "."), ("ruff", "format", "--check", ".")):
        result = tool(*args)
        assert result.returncode == 0, f"{' '.join(args)}:\n{result.stdout}{result.stderr}"
