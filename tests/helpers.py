"""Repo copies and commands for the tests and the benchmark: everything real, nothing of pytest's,
so that `python bench/bench.py` runs in the environment the README's command 1 makes."""

from __future__ import annotations

import contextlib
import glob
import json
import os
import shutil
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parents[1]
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


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _postgres_bin(name: str) -> str:
    found = shutil.which(name) or next(iter(sorted(glob.glob(f"/usr/lib/postgresql/*/bin/{name}"), reverse=True)), None)
    if not found:
        raise AssertionError(f"PostgreSQL's {name} is not installed (Debian: apt-get install postgresql; .ci/run does it)")
    return found


@contextlib.contextmanager
def postgres() -> Iterator[str]:
    """A throwaway PostgreSQL cluster listening on 127.0.0.1 only, with an empty database `mlflow`;
    yields its URI and deletes the cluster afterwards. PostgreSQL refuses to run as root, so as root
    the server runs as the `postgres` user Debian's package makes."""
    as_user = ["runuser", "-u", "postgres", "--"] if os.geteuid() == 0 else []
    directory = Path(tempfile.mkdtemp(prefix="mlflow-postgres-"))  # not under pytest's root-only tmp
    if as_user:
        shutil.chown(directory, "postgres")
    data, port = directory / "data", free_port()
    quiet = {"stdout": subprocess.DEVNULL, "check": True}
    try:
        subprocess.run([*as_user, _postgres_bin("initdb"), "-D", data, "-U", "mlflow", "--auth=trust", "-E", "UTF8"], **quiet)
        subprocess.run(
            [
                *as_user,
                _postgres_bin("pg_ctl"),
                "-D",
                data,
                "-l",
                directory / "server.log",
                "-w",
                "start",
                "-o",
                f"-c listen_addresses=127.0.0.1 -p {port} -k {directory} -c fsync=off",
            ],
            **quiet,
        )
        try:
            subprocess.run([_postgres_bin("createdb"), "-h", "127.0.0.1", "-p", str(port), "-U", "mlflow", "mlflow"], **quiet)
            yield f"postgresql://mlflow@127.0.0.1:{port}/mlflow"
        finally:
            subprocess.run([*as_user, _postgres_bin("pg_ctl"), "-D", data, "-m", "fast", "-w", "stop"], **quiet)
    finally:
        shutil.rmtree(directory, ignore_errors=True)


@contextlib.contextmanager
def mlflow_server(backend_store_uri: str, artifacts: Path) -> Iterator[str]:
    """`mlflow server` on 127.0.0.1 over that store, serving the artifacts itself from `artifacts`
    (clients need no access to its disk); yields its URL and stops it afterwards."""
    port = free_port()
    artifacts.mkdir(parents=True, exist_ok=True)
    process = subprocess.Popen(
        [
            str(Path(sys.executable).parent / "mlflow"),
            "server",
            "--host",
            "127.0.0.1",
            "--port",
            str(port),
            "--workers",
            "1",
            "--backend-store-uri",
            backend_store_uri,
            "--artifacts-destination",
            str(artifacts),
        ],
        cwd=artifacts,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    url = f"http://127.0.0.1:{port}"
    try:
        wait_until_answers(f"{url}/health", process, timeout=180)
        yield url
    finally:
        process.terminate()
        process.wait(timeout=30)
