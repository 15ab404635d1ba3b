"""Interrupted runs resume without losing or corrupting results; untrusted model files are refused."""

from __future__ import annotations

import os
import signal
import subprocess
import time
from pathlib import Path

import mlflow
import pytest
from helpers import read_json, without_run_ids
from PIL import Image

from mnist_pipeline.testing import TINY, env_for, run, update_params


def kill_when(repo: Path, target: str, ready, *options: str, timeout: float = 600) -> str:
    """Start `dvc repro [options] target`, SIGKILL its whole process group as soon as ready(repo, output) is true."""
    log = repo.parent / f"{repo.name}-repro.log"
    with log.open("w") as out:
        process = subprocess.Popen(
            ["dvc", "repro", *options, target], cwd=repo, env=env_for(repo), stdout=out, stderr=subprocess.STDOUT, start_new_session=True
        )
        deadline = time.monotonic() + timeout
        while not ready(repo, log.read_text()):
            assert process.poll() is None, f"dvc repro ended before the kill:\n{log.read_text()[-3000:]}"
            assert time.monotonic() < deadline, "timed out waiting for the moment to kill"
            time.sleep(0.1)
        os.killpg(process.pid, signal.SIGKILL)
        process.wait()
    return log.read_text()


@pytest.mark.slow
def test_killed_crossvalidation_reuses_the_finished_folds(pipeline_copy, pipeline):
    repo = pipeline_copy
    kill_when(repo, "crossvalidate", lambda r, _: any(r.glob(".cache/crossvalidate/*/fold-1/result.json")), "--force", "--single-item")
    assert not (repo / "metrics" / "cv.json").exists(), "dvc removes a stage's outputs before running it"
    result = run(repo, "dvc", "repro", "crossvalidate")
    assert "fold 1/3: reusing the result saved by an interrupted run" in result.stdout
    for name in ("metrics/cv.json", "reports/cv.json"):
        assert without_run_ids(read_json(repo / name)) == without_run_ids(read_json(pipeline / name)), name
    assert not list(repo.glob(".cache/crossvalidate/*")), "finished work clears its checkpoints"


@pytest.mark.slow
def test_killed_crossvalidation_resumes_each_fold_after_its_last_epoch_in_the_same_mlflow_runs(pipeline_copy):
    # Epochs of a few seconds, so that the kill comes between a fold's first and second epoch.
    repo = pipeline_copy
    update_params(repo, {"data": {"train_limit": 6000, "test_limit": 300}, "cv": {"folds": 2, "epochs": 2}})
    kill_when(repo, "crossvalidate", lambda r, _: any(r.glob(".cache/crossvalidate/*/fold-*/checkpoint.json")))
    [saved] = (repo / ".cache" / "crossvalidate").iterdir()
    interrupted = [
        k for k in (1, 2) if (saved / f"fold-{k}" / "checkpoint.json").exists() and not (saved / f"fold-{k}" / "result.json").exists()
    ]
    assert interrupted, "both folds had finished before the kill"
    parent_id = (saved / "mlflow_run_id").read_text()
    fold_run_ids = [(saved / f"fold-{k}" / "mlflow_run_id").read_text() for k in (1, 2)]

    resumed = run(repo, "dvc", "repro", "crossvalidate").stdout
    for k in interrupted:
        assert f"fold {k}/2: resuming after epoch 1/2, saved by an interrupted run" in resumed
        assert f"fold {k}/2 epoch 1/2:" not in resumed and f"fold {k}/2 epoch 2/2:" in resumed
    cv = read_json(repo / "reports" / "cv.json")
    assert cv["mlflow"] == {"run_id": parent_id, "fold_run_ids": fold_run_ids}
    client = mlflow.MlflowClient(f"sqlite:///{repo / 'mlflow.db'}")
    for run_id in (parent_id, *fold_run_ids):
        assert client.get_run(run_id).info.status == "FINISHED"
    for run_id in fold_run_ids:
        assert sorted({m.step for m in client.get_metric_history(run_id, "val_accuracy")}) == [1, 2]
    assert not list(repo.glob(".cache/crossvalidate/*"))

    run(repo, "dvc", "repro", "--force", "--single-item", "crossvalidate")  # the same work, never interrupted
    assert without_run_ids(read_json(repo / "reports" / "cv.json")) == without_run_ids(cv)


@pytest.mark.slow
def test_killed_training_resumes_after_its_last_epoch_in_the_same_mlflow_run(pipeline_copy, pipeline):
    repo = pipeline_copy
    kill_when(repo, "train", lambda r, _: any(r.glob(".cache/train/*/checkpoint.json")), "--force", "--single-item")
    assert not (repo / "models" / "model.keras").exists(), "no model until training has finished"
    assert not [p for p in repo.rglob(".model.keras*")], "no temporary file left behind"
    [saved] = (repo / ".cache" / "train").iterdir()
    run_id = (saved / "mlflow_run_id").read_text()
    assert "train" in run(repo, "dvc", "status").stdout

    resumed = run(repo, "dvc", "repro", "train").stdout
    assert "resuming after epoch 1/2, saved by an interrupted run" in resumed
    assert "epoch 1/2:" not in resumed.split("Running stage 'train'")[1]
    train = read_json(repo / "reports" / "train.json")
    assert train["mlflow"]["run_id"] == run_id, "the interrupted MLflow run goes on"
    client = mlflow.MlflowClient(f"sqlite:///{repo / 'mlflow.db'}")
    assert client.get_run(run_id).info.status == "FINISHED"
    assert [m.step for m in client.get_metric_history(run_id, "loss")] == [1, 2]
    assert without_run_ids(read_json(repo / "reports" / "train.json")) == without_run_ids(read_json(pipeline / "reports" / "train.json"))
    assert not list(repo.glob(".cache/train/*")), "finished work clears its checkpoint"


@pytest.mark.slow
def test_a_killed_detector_resumes_after_its_last_epoch_and_ends_where_an_uninterrupted_one_does(pipeline_copy, pipeline):
    repo = pipeline_copy
    epochs = TINY["detector"]["epochs"]
    kill_when(repo, "detector", lambda r, _: any(r.glob(".cache/detector/*/member_1/checkpoint.json")), "--force", "--single-item")
    assert not (repo / "models" / "detector").exists(), "no detector until training has finished"
    [saved] = (repo / ".cache" / "detector").iterdir()
    run_id = (saved / "mlflow_run_id").read_text()
    resumed = run(repo, "dvc", "repro", "detector").stdout
    assert "detector 1/2: resuming after epoch" in resumed
    assert f"detector 1/2 epoch 1/{epochs}:" not in resumed.split("Running stage 'detector'")[1]
    report = read_json(repo / "reports" / "detector.json")
    assert report["mlflow"]["run_id"] == run_id, "the interrupted MLflow run goes on"
    assert mlflow.MlflowClient(f"sqlite:///{repo / 'mlflow.db'}").get_run(run_id).info.status == "FINISHED"
    assert not list(repo.glob(".cache/detector/*"))
    # the session's pipeline trained the same detector, never interrupted
    assert without_run_ids(report) == without_run_ids(read_json(pipeline / "reports" / "detector.json"))


def predict_one_blank_image(tmp_path, model: Path) -> subprocess.CompletedProcess:
    Image.new("L", (28, 28)).save(tmp_path / "one.png")
    command = ["mnist-pipeline", "predict", "--model", str(model), str(tmp_path / "one.png")]
    return subprocess.run(command, env=env_for(tmp_path), capture_output=True, text=True, timeout=120)


def test_a_keras_file_with_code_in_it_is_refused(tmp_path):
    import keras

    model = keras.Sequential(
        [keras.Input((28, 28, 1)), keras.layers.Lambda(lambda x: x * 2), keras.layers.Flatten(), keras.layers.Dense(10)]
    )
    path = tmp_path / "evil.keras"
    model.save(path)
    result = predict_one_blank_image(tmp_path, path)
    assert result.returncode == 2
    assert "not a loadable Keras model" in result.stderr and "safe_mode" in result.stderr
    assert "Traceback" not in result.stderr


@pytest.mark.parametrize("content", [b"", b"garbage that is no flatbuffer" * 10])
def test_a_broken_tflite_file_is_refused(tmp_path, content):
    path = tmp_path / "broken.tflite"
    path.write_bytes(content)
    result = predict_one_blank_image(tmp_path, path)
    assert result.returncode == 2 and "not a valid TFLite model" in result.stderr and "Traceback" not in result.stderr
