"""Shared fixtures: a temporary copy of this repository with tiny params, and a pipeline run in it.

Everything is real: git, dvc, the stage scripts, MLflow's SQLite store and the MNIST mirror in
../shared/data/mnist (or $MNIST_MIRROR), subsampled through params.yaml for speed.
"""

from __future__ import annotations

from pathlib import Path

import pytest
from helpers import MIRROR, ROOT, TINY, copy_repo, env_for, read_json, run, update_params, without_run_ids  # noqa: F401


def pytest_configure(config):
    if not (MIRROR / "train-images-idx3-ubyte.gz").is_file():
        pytest.exit(f"the MNIST mirror is missing: expected it at {MIRROR} (or set MNIST_MIRROR)", returncode=4)


@pytest.fixture(scope="session")
def pipeline(tmp_path_factory) -> Path:
    """A repo copy on which `dvc repro` has run once with tiny params."""
    repo = copy_repo(tmp_path_factory.mktemp("pipeline"))
    run(repo, "dvc", "repro")
    return repo


@pytest.fixture(scope="session")
def tflite_model(pipeline) -> Path:
    return pipeline / "models" / "export" / "model.tflite"
