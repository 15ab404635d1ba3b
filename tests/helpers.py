"""Test-only helpers: JSON files, MLflow ids, a server to wait for, PostgreSQL and `mlflow server`.
What the tests share with bench/ (the tiny params, a repo copy, a command run in it) is
mnist_pipeline.testing."""

from __future__ import annotations

import contextlib
import glob
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path

from mnist_pipeline.testing import free_port


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
