"""Repo copies and commands for the tests and the benchmark: everything real, nothing of pytest's,
so that `python bench/bench.py` runs in the environment the README's command 1 makes."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parents[1]
MIRROR = Path(os.environ.get("MNIST_MIRROR") or ROOT.parent / "shared" / "data" / "mnist").resolve()
TINY = {
    "data": {"train_limit": 1200, "test_limit": 300},
    "cv": {"folds": 3, "epochs": 1},
    "train": {"epochs": 2},
    "evaluate": {"gate": 0.5, "photos": 60},
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
    path = repo / "params.yaml"
    params = yaml.safe_load(path.read_text())
    for section, values in changes.items():
        params.setdefault(section, {}).update(values)
    path.write_text(yaml.safe_dump(params, sort_keys=False))


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


def read_json(path: Path) -> dict:
    return json.loads(path.read_text())


def without_run_ids(metrics: dict) -> dict:
    """Metrics minus the MLflow ids, which are new for every run by design."""
    return {k: v for k, v in metrics.items() if k != "mlflow"}


def wait_until_answers(url: str, process: subprocess.Popen, timeout: float) -> None:
    """Poll `url` until it answers; fail if `process` exits first or nothing answers within `timeout` s."""
    deadline = time.monotonic() + timeout
    while True:
        try:
            urllib.request.urlopen(url, timeout=2).close()
            return
        except OSError:
            if process.poll() is not None:
                raise AssertionError(f"{process.args[0]} exited before {url} answered") from None
            if time.monotonic() > deadline:
                raise AssertionError(f"nothing answered {url} within {timeout:.0f} s") from None
            time.sleep(0.2)
