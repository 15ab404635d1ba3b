"""`dvc exp run` in the workspace, --temp and --queue (2 in parallel), with MLflow's SQLite store and a
real `mlflow server` on 127.0.0.1: every experiment lands with its metrics and its runs, and the
champion alias moves only to a better model."""

from __future__ import annotations

import json
import subprocess
import time
import urllib.request
from pathlib import Path

import mlflow
import pytest
from helpers import mlflow_server as mlflow_server_on
from helpers import postgres, read_json

from mnist_pipeline.testing import TINY, copy_repo, env_for, free_port, run


def api(server: str, path: str, body: dict | None = None) -> dict:
    request = urllib.request.Request(
        f"{server}/api/2.0/mlflow/{path}",
        data=None if body is None else json.dumps(body).encode(),
        headers={"Content-Type": "application/json"},
    )
    with urllib.request.urlopen(request, timeout=30) as response:
        return json.loads(response.read())


def server_runs(server: str) -> list[dict]:
    experiment = api(server, "experiments/get-by-name?experiment_name=mnist-pipeline")["experiment"]
    runs = api(server, "runs/search", {"experiment_ids": [experiment["experiment_id"]], "max_results": 1000}).get("runs", [])
    for r in runs:
        r["tags"] = {t["key"]: t["value"] for t in r["data"].get("tags", [])}
        r["metrics"] = {m["key"]: m["value"] for m in r["data"].get("metrics", [])}
        r["params"] = {p["key"]: p["value"] for p in r["data"].get("params", [])}
    return runs


def artifact(server: str, run: dict, path: str) -> bytes:
    """An artifact downloaded from the server itself (it proxies its artifact store)."""
    root = run["info"]["artifact_uri"].removeprefix("mlflow-artifacts:")
    with urllib.request.urlopen(f"{server}/api/2.0/mlflow-artifacts/artifacts{root}/{path}", timeout=30) as response:
        return response.read()


@pytest.fixture
def mlflow_server(tmp_path):
    """A team's tracking server: `mlflow server` on a real PostgreSQL, serving the artifacts itself."""
    with postgres() as database, mlflow_server_on(database, tmp_path / "server-artifacts") as url:
        yield url


def test_an_unreachable_tracking_server_fails_fast_with_one_line(tmp_path):
    repo = copy_repo(tmp_path)
    closed = f"http://127.0.0.1:{free_port()}"
    started = time.monotonic()
    result = run(repo, "python", "stages/train.py", check=False, PYTHONPATH="src", MLFLOW_TRACKING_URI=closed)
    assert time.monotonic() - started < 30
    assert result.returncode == 1
    errors = [line for line in result.stderr.splitlines() if line.startswith("error:")]
    assert len(errors) == 1 and f"MLflow tracking server {closed} is unreachable" in errors[0]
    assert "unset MLFLOW_TRACKING_URI to use the embedded store sqlite:///" in errors[0]
    assert "Traceback" not in result.stderr and not (repo / "models").exists()


def _wait_for_queue(repo: Path, timeout: float = 900) -> str:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        status = run(repo, "dvc", "queue", "status").stdout
        if not any(word in status for word in ("Queued", "Running")):
            return status
        time.sleep(3)
    raise AssertionError(f"queue still busy:\n{status}")


@pytest.mark.slow
def test_workspace_temp_and_parallel_queued_experiments(tmp_path, mlflow_server, pipeline_copy):
    """After the session's baseline (version 1 of mnist-cnn, the champion, in the repo's own SQLite store): a --temp
    and a workspace experiment log to that store; two experiments queued at once log to the team's server on
    PostgreSQL, every run of each, and the better of the two ends as the server's champion."""
    repo = pipeline_copy
    baseline, baseline_export = (read_json(repo / "reports" / f"{name}.json") for name in ("eval", "export"))
    assert baseline["mlflow"]["model_version"] == 1 and baseline["mlflow"]["alias"] == "champion"
    run(repo, "git", "add", "-A")
    run(repo, "git", "commit", "-qm", "baseline")

    # the strong preset, at the tiny params' epochs (a -S after the recipe wins over it); a batch-normalised net
    # after a few dozen steps still has its initial moving statistics, so it may or may not pass the gate
    strong = ("-S", "recipe=strong", "-S", "cv.folds=2", "-S", "cv.epochs=1", "-S", "train.epochs=2", "-S", "train.batch_size=100")
    run(repo, "dvc", "exp", "run", "--temp", "-n", "tmp", *strong)
    # q128 retrains the folds too (two instead of three), so that the server gets every stage's runs
    for name, changes in (("q64", ("train.batch_size=64", "export.serve=final")), ("q128", ("train.batch_size=128", "cv.folds=2"))):
        run(repo, "dvc", "exp", "run", "--queue", "-n", name, *(a for change in changes for a in ("-S", change)))
    try:
        # its output to a file, not to a pipe: the queue's workers inherit it, and one may outlive the queue
        with (tmp_path / "queue-start.log").open("w") as log:
            subprocess.run(
                ["dvc", "queue", "start", "-j", "2"],
                cwd=repo,
                env=env_for(repo, MLFLOW_TRACKING_URI=mlflow_server),
                stdout=log,
                stderr=subprocess.STDOUT,
                check=True,
                timeout=120,
            )
        status = _wait_for_queue(repo)
    finally:
        run(repo, "dvc", "queue", "stop", "--kill", check=False)
    assert status.count("Success") == 2, status
    # the scenario, last, in the workspace: a worse model passes the gate, is registered, and is the challenger
    run(repo, "dvc", "exp", "run", "-n", "worse", "-S", "train.epochs=1", "-S", "export.serve=final")

    shown = json.loads(run(repo, "dvc", "exp", "show", "--json").stdout)
    experiments, reports = {}, {}
    for commit in shown:
        for exp in commit.get("experiments") or []:
            experiments[exp["name"]] = exp["revs"][0]["data"]
            # the details are committed with each experiment beside its headline metrics
            reports[exp["name"]] = {
                name: json.loads(run(repo, "git", "show", f"{exp['revs'][0]['rev']}:reports/{name}.json").stdout)
                for name in ("cv", "train", "eval", "export")
            }
    assert {"worse", "tmp", "q64", "q128"} <= set(experiments)
    for name, batch in (("worse", 200), ("tmp", 100), ("q64", 64), ("q128", 128)):
        data = experiments[name]
        assert data["params"]["params.yaml"]["data"]["train"]["batch_size"] == batch
        headline, evaluation = data["metrics"]["metrics/eval.json"]["data"], reports[name]["eval"]
        assert 0 < headline["test_acc"] <= 1 and "run_id" in evaluation["mlflow"]
        assert set(evaluation["test_accuracy"]) >= {"final", "ensemble", "fold_1"}, "every model side by side"
        served = "final" if name in ("q64", "worse") else "ensemble"
        assert evaluation["served"] == served and headline["test_acc"] == evaluation["test_accuracy"][served]
        assert data["params"]["params.yaml"]["data"]["data"]["train_limit"] == TINY["data"]["train_limit"], "the tiny params stay"
    recipe = experiments["tmp"]["params"]["params.yaml"]["data"]
    assert recipe["model"]["name"] == "bn_cnn" and recipe["cv"]["label_smoothing"] > 0 and reports["tmp"]["export"]["tta"] == 1
    assert {"final_without_tta", "ensemble_without_tta"} <= set(reports["tmp"]["eval"]["test_accuracy"])
    assert experiments["worse"]["params"]["params.yaml"]["data"]["model"]["name"] == "seed_cnn"

    # the --temp and workspace runs went to the repo's own SQLite store, not to temporary copies
    mlflow.set_tracking_uri(f"sqlite:///{repo / 'mlflow.db'}")
    local = mlflow.search_runs(experiment_names=["mnist-pipeline"], output_format="list")
    for name in ("worse", "tmp"):
        stages = {r.data.tags["stage"] for r in local if r.data.tags.get("dvc.exp_name") == name}
        assert {"train", "export", "evaluate"} <= stages, name
        run_id = reports[name]["eval"]["mlflow"]["run_id"]
        assert any(r.info.run_id == run_id for r in local)
    assert not list((repo / ".dvc" / "tmp").rglob("mlflow.db"))
    # the local registry: `tmp` is registered only if it passed the gate, and is the champion only if it beats the
    # baseline on the same test images; `worse` does not beat whichever is the champion
    client = mlflow.MlflowClient()
    tmp, worse = reports["tmp"]["eval"], reports["worse"]["eval"]
    assert tmp["gate_passed"] == (experiments["tmp"]["metrics"]["metrics/eval.json"]["data"]["test_acc"] >= TINY["evaluate"]["gate"])
    tmp_wins = tmp["gate_passed"] and tmp["accuracy"] > baseline["accuracy"]
    if tmp["gate_passed"]:
        assert tmp["mlflow"]["model_version"] == 2 and tmp["mlflow"]["alias"] == ("champion" if tmp_wins else "challenger"), tmp["mlflow"]
    else:
        assert tmp["mlflow"]["model_version"] is None
    champion = 2 if tmp_wins else 1
    assert worse["accuracy"] < (tmp if tmp_wins else baseline)["accuracy"] and worse["gate_passed"]
    assert worse["mlflow"]["model_version"] == (3 if tmp["gate_passed"] else 2) and worse["mlflow"]["alias"] == "challenger"
    assert worse["mlflow"]["decision"].startswith(f"does not beat champion version {champion}")
    assert int(client.get_model_version_by_alias("mnist-cnn", "champion").version) == champion
    challenger = client.get_model_version_by_alias("mnist-cnn", "challenger")
    assert int(challenger.version) == worse["mlflow"]["model_version"] and challenger.tags["dvc.exp_name"] == "worse"
    assert challenger.description == f"challenger: {worse['mlflow']['decision']}"
    served_model = (reports["tmp"]["export"] if tmp_wins else baseline_export)["mlflow"]["served_model_id"]
    assert client.get_model_version_by_alias("mnist-cnn", "champion").source == f"models:/{served_model}"

    remote = server_runs(mlflow_server)
    _assert_all_on_server(mlflow_server, remote, reports["q128"])
    # the two parallel queued experiments both landed, complete, in the server
    for name in ("q64", "q128"):
        mine = [r for r in remote if r["tags"].get("dvc.exp_name") == name]
        assert {r["tags"]["stage"] for r in mine} >= {"train", "export", "evaluate"}, name
        assert all(r["info"]["status"] == "FINISHED" for r in mine)
        run_id = reports[name]["eval"]["mlflow"]["run_id"]
        evaluate_run = next(r for r in mine if r["info"]["run_id"] == run_id)
        assert evaluate_run["metrics"]["test_acc"] == pytest.approx(experiments[name]["metrics"]["metrics/eval.json"]["data"]["test_acc"])
    versions = api(mlflow_server, "model-versions/search?filter=name%3D%27mnist-cnn%27")["model_versions"]
    assert len(versions) == 2, "both queued experiments registered"
    # whatever order the two finished in, the champion is the more accurate (the earlier of equals)
    accuracy = {v["version"]: float(next(t["value"] for t in v["tags"] if t["key"] == "test.test_acc")) for v in versions}
    best = min(accuracy, key=lambda version: (-accuracy[version], int(version)))
    alias = api(mlflow_server, "registered-models/alias?name=mnist-cnn&alias=champion")["model_version"]
    assert alias["version"] == best, accuracy
    for version in versions:  # the UI shows why: the decision, or, for a champion since beaten, by whom
        decision = next(t["value"] for t in version["tags"] if t["key"] == "decision")
        description = version["description"]
        assert decision in description or (version["version"] != best and description.startswith("was champion until version ")), version


def _assert_all_on_server(server: str, runs: list[dict], baseline: dict) -> None:
    """Every run, metric, artifact and model of a pipeline run (`baseline`: its reports) is on the server."""
    by_id = {r["info"]["run_id"]: r for r in runs}
    cv_run = by_id[baseline["cv"]["mlflow"]["run_id"]]
    assert cv_run["metrics"]["accuracy_mean"] == pytest.approx(baseline["cv"]["accuracy_mean"])
    children = [r for r in runs if r["tags"].get("mlflow.parentRunId") == cv_run["info"]["run_id"]]
    assert sorted(r["info"]["run_id"] for r in children) == sorted(baseline["cv"]["mlflow"]["fold_run_ids"])
    for child in children:
        fold = baseline["cv"]["folds"][child["params"]["fold"]]
        assert child["metrics"]["val_accuracy"] == pytest.approx(fold["accuracy"]), "the last epoch's held-out score"
    assert artifact(server, cv_run, "cv_boxplot.png").startswith(b"\x89PNG")
    train_run = by_id[baseline["train"]["mlflow"]["run_id"]]
    assert train_run["metrics"]["accuracy"] == pytest.approx(baseline["train"]["train_accuracy"])
    assert train_run["params"]["train.epochs"] == str(baseline["train"]["epochs"])
    evaluate_run = by_id[baseline["eval"]["mlflow"]["run_id"]]
    assert evaluate_run["metrics"]["test_acc"] == pytest.approx(baseline["eval"]["accuracy"])
    assert artifact(server, evaluate_run, "misclassified.png").startswith(b"\x89PNG")
    assert len({r["tags"]["pipeline_run"] for r in (cv_run, train_run, evaluate_run)}) == 1, "one group in the UI"
    assert all(r["info"]["status"] == "FINISHED" for r in runs)
    for model_id in (baseline["train"]["mlflow"]["model_id"], baseline["export"]["mlflow"]["served_model_id"]):
        root = api(server, f"logged-models/{model_id}")["model"]["info"]["artifact_uri"].removeprefix("mlflow-artifacts:")
        with urllib.request.urlopen(f"{server}/api/2.0/mlflow-artifacts/artifacts{root}/MLmodel", timeout=30) as response:
            assert b"keras" in response.read()
    version = baseline["eval"]["mlflow"]["model_version"]
    registered = api(server, f"model-versions/get?name=mnist-cnn&version={version}")["model_version"]
    assert registered["source"] == f"models:/{baseline['export']['mlflow']['served_model_id']}"


@pytest.mark.slow
def test_exp_show_fits_200_columns_with_the_changed_param(pipeline_copy):
    """`dvc exp show --only-changed` in a 200-column terminal after an experiment on one param: every
    headline column that changed and the param, each whole (a dozen headline metrics at most). The
    changed dependencies' hashes come last, after the params, and are what DVC cuts to "…"."""
    repo = pipeline_copy
    run(repo, "git", "add", "-A")
    run(repo, "git", "commit", "-qm", "baseline")
    baseline = read_json(repo / "metrics" / "eval.json")
    run(repo, "dvc", "exp", "run", "-n", "eleven", "-S", "train.epochs=11")
    shown = run(repo, "dvc", "exp", "show", "--only-changed", "--no-pager", COLUMNS="200").stdout
    assert max(len(line) for line in shown.splitlines()) <= 200, shown
    header = next(line for line in shown.splitlines() if "Experiment" in line).split()
    row = next(line for line in shown.splitlines() if line.strip().startswith("workspace")).split()  # one word a column
    exp = next(e for c in json.loads(run(repo, "dvc", "exp", "show", "--json").stdout) for e in c.get("experiments") or [])
    experiment = exp["revs"][0]["data"]["metrics"]["metrics/eval.json"]["data"]
    changed = {key for key in experiment if f"{experiment[key]:.5g}" != f"{baseline[key]:.5g}"}  # as exp show rounds them
    assert changed and changed <= set(header) and "train.epochs" in header, shown
    assert row[header.index("train.epochs")] == "11", shown  # the param's value, whole, under its name
