"""A team shares data, models and experiments through a DVC remote (a local directory here, a real
remote type; S3, GCS and SSH work the same way) and a git remote: a teammate's fresh clone pulls
instead of training, and without the internet."""

from __future__ import annotations

import json
import shutil

import numpy as np
import pytest
from PIL import Image

from mnist_pipeline.testing import run

# A teammate needs no internet: any download attempt would hit a closed port on this machine.
OFFLINE = {"MNIST_MIRROR": "/nonexistent", "http_proxy": "http://127.0.0.1:9", "https_proxy": "http://127.0.0.1:9"}


def _experiment_metrics(repo, name: str) -> dict:
    for baseline in json.loads(run(repo, "dvc", "exp", "show", "--json").stdout):
        for exp in baseline.get("experiments") or []:
            if exp["name"] == name:
                return exp["revs"][0]["data"]["metrics"]["metrics/eval.json"]["data"]
    raise AssertionError(f"no experiment {name} in dvc exp show")


@pytest.mark.slow
def test_a_teammate_pulls_instead_of_training(tmp_path, pipeline):
    origin, storage = tmp_path / "origin.git", tmp_path / "dvc-storage"
    run(tmp_path, "git", "init", "-q", "--bare", "-b", "main", str(origin))
    alice = tmp_path / "alice"
    shutil.copytree(pipeline, alice, symlinks=True)  # her repo, after `dvc repro`
    run(alice, "dvc", "remote", "add", "-d", "storage", str(storage))
    run(alice, "git", "add", "-A")
    run(alice, "git", "commit", "-qm", "pipeline run, shared through the remote")
    run(alice, "git", "tag", "-a", "mnist-cnn@v1.0.0", "-m", "mnist-cnn v1.0.0")  # a version of the artifact, as GTO names it
    run(alice, "git", "remote", "add", "origin", str(origin))
    run(alice, "git", "push", "-q", "--follow-tags", "origin", "main")
    run(alice, "dvc", "push")
    # the served model, by the name dvc.yaml's artifacts give it, from the git remote and the DVC remote alone
    run(tmp_path, "dvc", "artifacts", "get", str(origin), "mnist-cnn", "-o", str(tmp_path / "served.tflite"), **OFFLINE)
    assert (tmp_path / "served.tflite").read_bytes() == (alice / "models" / "export" / "model.tflite").read_bytes()

    bob = tmp_path / "bob"
    run(tmp_path, "git", "clone", "-q", str(origin), str(bob))
    assert not (bob / "models").exists()
    run(bob, "dvc", "pull", **OFFLINE)
    status = run(bob, "dvc", "status", **OFFLINE).stdout
    assert "Data and pipelines are up to date." in status, status
    repro = run(bob, "dvc", "repro", **OFFLINE).stdout
    assert "Running stage" not in repro and "Data and pipelines are up to date." in repro, repro
    assert (bob / "models" / "export" / "model.tflite").read_bytes() == (alice / "models" / "export" / "model.tflite").read_bytes()
    images = np.load(bob / "data" / "prepared" / "test_images.npy")
    Image.fromarray(images[0, :, :, 0]).save(tmp_path / "digit.png")
    [answer] = json.loads(run(bob, "mnist-pipeline", "predict", "--json", str(tmp_path / "digit.png")).stdout)
    assert answer["digit"] in range(10) and 0 < answer["confidence"] <= 1

    # an experiment Alice ran reaches Bob with its metrics and outputs
    run(alice, "dvc", "exp", "run", "-n", "fewer-photos", "-S", "evaluate.photos=30")
    run(alice, "dvc", "exp", "push", "origin", "fewer-photos")
    run(bob, "dvc", "exp", "pull", "origin", "fewer-photos", **OFFLINE)
    shared = _experiment_metrics(bob, "fewer-photos")
    assert shared == _experiment_metrics(alice, "fewer-photos")
    run(bob, "dvc", "exp", "apply", "fewer-photos", **OFFLINE)
    assert json.loads((bob / "metrics" / "eval.json").read_text())["photo_read"] == shared["photo_read"]
    assert "Data and pipelines are up to date." in run(bob, "dvc", "status", **OFFLINE).stdout
