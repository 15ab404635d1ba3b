"""Shared fixtures: a temporary copy of this repository with tiny params, and a pipeline run in it.

Everything is real: git, dvc, the stage scripts, MLflow's SQLite store and the MNIST mirror in
../shared/data/mnist (or $MNIST_MIRROR), subsampled through params.yaml for speed.
"""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest
from filelock import FileLock

from mnist_pipeline.testing import MIRROR, ROOT, copy_repo, run


def pytest_configure(config):
    if not (MIRROR / "train-images-idx3-ubyte.gz").is_file():
        pytest.exit(f"the MNIST mirror is missing: expected it at {MIRROR} (or set MNIST_MIRROR)", returncode=4)


def pytest_collection_modifyitems(items):
    for item in items:
        if "pipeline" in item.fixturenames:  # its `dvc repro` takes minutes: not for the fast tier
            item.add_marker(pytest.mark.slow)


@pytest.fixture(scope="session")
def pipeline(tmp_path_factory, worker_id) -> Path:
    """A repo copy on which `dvc repro` has run once with tiny params: one for the whole session,
    made by the first xdist worker that asks for it while the others wait. Tests read it and
    never run a command that writes in it (that is what `pipeline_copy` is for)."""
    shared = tmp_path_factory.getbasetemp() if worker_id == "master" else tmp_path_factory.getbasetemp().parent
    repo, done = shared / "pipeline", shared / "pipeline.done"
    with FileLock(shared / "pipeline.lock"):
        if not done.exists():
            shutil.rmtree(repo, ignore_errors=True)  # what a worker that failed to make it left
            repo.mkdir()
            run(copy_repo(repo), "dvc", "repro")
            done.touch()
    return repo


@pytest.fixture
def pipeline_copy(pipeline, tmp_path) -> Path:
    """A copy of `pipeline`, outputs, DVC cache and MLflow store included, for a test that reruns
    some of its stages: the stages upstream of them need not run again."""
    return Path(shutil.copytree(pipeline, tmp_path / "repo", symlinks=True))


@pytest.fixture(scope="session")
def tflite_model(pipeline) -> Path:
    return pipeline / "models" / "export" / "model.tflite"


@pytest.fixture(scope="session")
def tiny_model() -> Path:
    """A served model of the tiny params (the `pipeline` fixture's models/export/final.tflite: a
    classifier and a detector, int8), committed so that the fast tier predicts without training.
    test_predict checks that it still has the inputs and outputs export writes; when it has not,
    copy that file here again."""
    return ROOT / "tests" / "data" / "tiny-served.tflite"
