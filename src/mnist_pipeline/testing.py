"""Tools for testing and benchmarking the pipeline (as numpy.testing is numpy's): the tiny params,
a copy of this checkout, a command run in it. Both tests/ and bench/ import them from here, so
bench/ runs in the environment the README's command 1 makes (no test extras), and neither imports
the other. Everything real: git, dvc, the stage scripts, the MNIST mirror in ../shared/data/mnist
(or $MNIST_MIRROR). Imports neither TensorFlow nor MLflow.

ROOT is the checkout this package is imported from (a source checkout: src/mnist_pipeline/), so a
bench script run in a repo copy, with that copy's src/ first on sys.path, works on the copy."""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import sys
import tempfile
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parents[2]
MIRROR = Path(os.environ.get("MNIST_MIRROR") or ROOT.parent / "shared" / "data" / "mnist").resolve()
TINY = {
    "data": {"train_limit": 1200, "test_limit": 300},
    "cv": {"folds": 3, "epochs": 1},
    "train": {"epochs": 2},
    "synthetic": {"mnist": 600, "photos": 200, "digits": 600, "non_digits": 900, "pool": 300},
    "detector": {"epochs": 5, "batch_size": 64, "hard_negatives": 100, "hard_epochs": 1, "members": 2},
    "evaluate": {"gate": 0.5, "photos": 60, "non_digits": 200, "digits": 140},
}


def env_for(repo: Path, **extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("MLFLOW_", "DVC_"))}
    env["PATH"] = f"{Path(sys.executable).parent}{os.pathsep}{env['PATH']}"
    env["MNIST_MIRROR"] = str(MIRROR)
    return env | extra


def run(repo: Path, *args: str, check: bool = True, timeout: float = 900, **env: str) -> subprocess.CompletedProcess:
    result = subprocess.run(args, cwd=repo, env=env_for(repo, **env), capture_output=True, text=True, timeout=timeout)
    if check and result.returncode != 0:
        raise AssertionError(f"{' '.join(args)} exited {result.returncode}\n{result.stdout[-3000:]}\n{result.stderr[-5000:]}")
    return result


def update_params(repo: Path, changes: dict) -> None:
    """The changes in params.yaml and in conf/config.yaml, which `dvc exp run -S` composes it from."""
    for path in (repo / "params.yaml", repo / "conf" / "config.yaml"):
        params = yaml.safe_load(path.read_text())
        for section, values in changes.items():
            params.setdefault(section, {}).update(values)
        path.write_text(yaml.safe_dump(params, sort_keys=False))


def compose(*overrides: str, conf: Path = ROOT / "conf") -> str:
    """params.yaml as `dvc exp run -S OVERRIDE ...` writes it from conf/ (DVC's own Hydra call)."""
    from dvc.utils.hydra import compose_and_dump

    with tempfile.TemporaryDirectory() as scratch:
        out = Path(scratch) / "params.yaml"
        compose_and_dump(out, str(conf), None, "config", "", list(overrides))
        return out.read_text()


def copy_repo(dest: Path, params: dict | None = TINY) -> Path:
    """The working tree as git would clone it (tracked and not-ignored files), committed in a new repo."""
    files = subprocess.run(
        ["git", "ls-files", "-z", "--cached", "--others", "--exclude-standard"], cwd=ROOT, capture_output=True, text=True, check=True
    ).stdout.split("\0")
    for name in filter(None, files):
        if (ROOT / name).is_file():
            (dest / name).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(ROOT / name, dest / name)
    if params:
        update_params(dest, params)
    run(dest, "git", "init", "-q", "-b", "main")
    run(dest, "git", "config", "user.name", "test")  # dvc exp commits too, with the repo's identity
    run(dest, "git", "config", "user.email", "test@example.invalid")
    run(dest, "git", "add", "-A")
    run(dest, "git", "commit", "-qm", "copy for tests")
    return dest


def free_port() -> int:
    """A TCP port on 127.0.0.1 that nothing listens on now, for a server to start on."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]
