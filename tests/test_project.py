"""The project's own files agree: the lock with pyproject.toml, the code with its linter."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from mnist_pipeline.testing import ROOT

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


def test_the_layering_contracts_hold():
    result = tool("lint-imports")
    assert result.returncode == 0, result.stdout + result.stderr


PLANTED = {  # a module of the library, a line that breaks one of pyproject.toml's contracts, and that contract
    "imaging.py": ("import mlflow", "never loads TensorFlow or MLflow"),
    "serve.py": ("from .export import to_tflite", "never loads TensorFlow or MLflow"),
    "calibration.py": ("import mlflow", "Only the tracking room talks to MLflow"),
    "loading.py": ("from .predict import Prediction", "No import circles"),
    "machine.py": ("import helpers", "imports no stage, test or benchmark"),
}


@pytest.mark.parametrize("module", PLANTED)
def test_lint_imports_fails_on_a_planted_violation(tmp_path, module):
    line, contract = PLANTED[module]
    shutil.copytree(ROOT / "src", tmp_path / "src", ignore=shutil.ignore_patterns("__pycache__"))
    shutil.copy(ROOT / "pyproject.toml", tmp_path)
    planted = tmp_path / "src" / "mnist_pipeline" / module
    planted.write_text(planted.read_text() + f"\n{line}\n")
    result = subprocess.run(
        [str(BIN / "lint-imports"), "--no-cache"],
        cwd=tmp_path,
        env=os.environ | {"PYTHONPATH": str(tmp_path / "src")},  # the copy before the installed (editable) package
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode == 1, result.stdout + result.stderr
    broken = [block for block in result.stdout.split("\n\n") if "BROKEN" in block]
    assert len(broken) == 1 and contract in " ".join(broken[0].split()), result.stdout
