"""crossvalidate and train under tf.distribute on this CPU machine: `mirrored` over two logical CPU
devices in one process, and `multi_worker` as two worker processes on 127.0.0.1 joined by
TF_CONFIG, each in its own clone as on two machines. Both must end where `none` ends on the same
tiny params (the session's `pipeline`), and only the chief may write outputs and log to MLflow."""

from __future__ import annotations

import json
import subprocess

import mlflow
import pytest
from helpers import read_json

from mnist_pipeline.testing import copy_repo, env_for, free_port, run, update_params

STAGES = ("crossvalidate", "train")


def _assert_same_accuracy_as_none(repo, pipeline) -> None:
    """Within noise: replicas sum their gradients in another order than one device does."""
    cv, cv_none = read_json(repo / "reports" / "cv.json"), read_json(pipeline / "reports" / "cv.json")
    assert cv["n_folds"] == cv_none["n_folds"]
    assert cv["accuracy_mean"] == pytest.approx(cv_none["accuracy_mean"], abs=0.02)
    train, train_none = read_json(repo / "reports" / "train.json"), read_json(pipeline / "reports" / "train.json")
    assert train["train_accuracy"] == pytest.approx(train_none["train_accuracy"], abs=0.02)


def _runs(repo) -> list:
    mlflow.set_tracking_uri(f"sqlite:///{repo / 'mlflow.db'}")
    return mlflow.search_runs(experiment_names=["mnist-pipeline"], output_format="list")


@pytest.mark.slow
def test_mirrored_over_two_logical_cpus(pipeline_copy, pipeline):
    repo = pipeline_copy
    update_params(repo, {"distribute": {"strategy": "mirrored", "devices": ["/cpu:0", "/cpu:1"]}})
    result = run(repo, "dvc", "repro", "crossvalidate", "train")
    assert "training on 1200 images for 2 epochs on 2 replicas" in result.stdout
    _assert_same_accuracy_as_none(repo, pipeline)
    train_run = {r.info.run_id: r for r in _runs(repo)}[read_json(repo / "reports" / "train.json")["mlflow"]["run_id"]]
    assert train_run.data.params["distribute.strategy"] == "mirrored"
    assert train_run.data.params["distribute.devices"] == "['/cpu:0', '/cpu:1']"


@pytest.mark.slow
def test_multi_worker_with_two_processes(tmp_path, pipeline_copy, pipeline):
    """The chief runs `dvc repro`; the other worker, in its own clone, runs the same stage scripts."""
    ports = [free_port(), free_port()]
    cluster = {"worker": [f"127.0.0.1:{port}" for port in ports]}
    chief, worker = pipeline_copy, copy_repo(tmp_path / "worker")
    (chief / "mlflow.db").unlink()  # so that what it holds afterwards is this run's alone
    for repo in (chief, worker):
        update_params(repo, {"distribute": {"strategy": "multi_worker", "devices": []}})
    run(worker, "dvc", "repro", "preprocess")  # a teammate's clone has the data (dvc pull, see test_remote)
    committed_metrics = {p.name: p.read_text() for p in (worker / "metrics").glob("*.json")}

    def tf_config(index: int) -> str:
        return json.dumps({"cluster": cluster, "task": {"type": "worker", "index": index}})

    script = " && ".join(f"python stages/{stage}.py" for stage in STAGES)
    other = subprocess.Popen(
        ["sh", "-c", script],
        cwd=worker,
        text=True,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        env=env_for(worker, PYTHONPATH="src", TF_CONFIG=tf_config(1)),
    )
    try:
        # one stage after the other, in the order the worker runs them: every step is collective
        run(chief, "dvc", "repro", "crossvalidate", timeout=600, TF_CONFIG=tf_config(0))
        result = run(chief, "dvc", "repro", "train", timeout=600, TF_CONFIG=tf_config(0))
        worker_output, _ = other.communicate(timeout=120)
    finally:
        other.kill()
    assert other.returncode == 0, worker_output
    assert "training on 1200 images for 2 epochs on 2 replicas" in result.stdout
    assert "the chief saves the model and logs the run" in worker_output
    _assert_same_accuracy_as_none(chief, pipeline)

    # only the chief wrote outputs and logged: one crossvalidate run with its folds, one train run
    assert not (worker / "models").exists()
    assert {r.data.tags["stage"] for r in _runs(worker)} == {"download", "preprocess"}, "its own dvc repro preprocess only"
    assert {p.name: p.read_text() for p in (worker / "metrics").glob("*.json")} == committed_metrics
    runs = _runs(chief)
    by_stage = {}
    for r in runs:
        by_stage.setdefault(r.data.tags["stage"], []).append(r)
    assert len(by_stage["train"]) == 1 and len(by_stage["crossvalidate"]) == 1 + read_json(chief / "reports" / "cv.json")["n_folds"]
    assert by_stage["train"][0].data.params["distribute.strategy"] == "multi_worker"


@pytest.mark.parametrize(
    "distribute, error",
    [
        ({"strategy": "mirrored", "devices": ["/gpu:7"]}, "error: distribute.devices: /gpu:7 not on this machine; it has cpu:0"),
        ({"strategy": "multi_worker", "devices": []}, "error: distribute.strategy is multi_worker but TF_CONFIG is not set"),
    ],
)
def test_a_strategy_this_machine_cannot_run_is_one_clear_error(tmp_path, distribute, error):
    repo = copy_repo(tmp_path / "repo")
    update_params(repo, {"distribute": distribute})
    result = run(repo, "python", "stages/train.py", check=False, PYTHONPATH="src")
    assert result.returncode == 1 and result.stderr.strip().startswith(error), result.stderr
    assert "Traceback" not in result.stderr and not (repo / "models").exists()
