"""The champion moves only to a better model: tracking.register on a real MLflow store (SQLite, and an
MLflow server on PostgreSQL), with real logged models, and predictions whose accuracy the test chooses."""

from __future__ import annotations

import hashlib

import mlflow
import numpy as np
import pytest
from helpers import mlflow_server, postgres, read_json

from mnist_pipeline import tracking
from mnist_pipeline.testing import ROOT, run, update_params

N = 1000
LABELS = np.arange(N) % 10
TEST_SET = "a+b"


class Constant(mlflow.pyfunc.PythonModel):
    def predict(self, context, model_input):
        return np.zeros(len(model_input))


def predictions(accuracy: float) -> np.ndarray:
    wrong = round(N * (1 - accuracy))
    return np.concatenate([(LABELS[:wrong] + 1) % 10, LABELS[wrong:]])


@pytest.fixture(params=["sqlite", pytest.param("postgresql", marks=pytest.mark.slow)])
def store(request, tmp_path, monkeypatch):
    """An empty store of the pipeline's experiment: the embedded SQLite file, or an MLflow server on a
    throwaway PostgreSQL; DVC_ROOT names the repo root, as `dvc repro` does."""
    monkeypatch.setenv("DVC_ROOT", str(tmp_path))
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    if request.param == "sqlite":
        tracking.connect()
        yield
    else:
        with postgres() as uri, mlflow_server(uri, tmp_path / "artifacts") as url:
            monkeypatch.setenv("MLFLOW_TRACKING_URI", url)
            tracking.connect()
            yield
    mlflow.set_tracking_uri(None)


def logged_model() -> str:
    with mlflow.start_run():
        return mlflow.pyfunc.log_model(name="model", python_model=Constant()).model_id


def register(accuracy: float, test_set: str = TEST_SET, model_id: str | None = None) -> tuple[int, str, str]:
    """What evaluate does with a model that passed its gate: a new logged model unless `model_id` names one."""
    model_id = model_id or logged_model()
    with mlflow.start_run():
        return tracking.register(
            model_id, {"test_acc": accuracy}, LABELS, predictions(accuracy), test_set, {"dvc.exp_name": f"acc-{accuracy}"}
        )


def aliases() -> dict[str, int]:
    model = mlflow.MlflowClient().get_registered_model(tracking.REGISTERED_MODEL)
    return {alias: int(version) for alias, version in model.aliases.items()}  # a server sends the versions as strings


def versions() -> list[int]:
    return sorted(int(v.version) for v in mlflow.MlflowClient().search_model_versions(f"name='{tracking.REGISTERED_MODEL}'"))


def test_the_champion_moves_only_to_a_better_model_on_the_same_test_set(store):
    assert register(0.90)[:2] == (1, "champion")
    version, alias, why = register(0.80)
    assert (version, alias) == (2, "challenger") and "does not beat champion version 1" in why and "80.0000% against 90.0000%" in why
    version, alias, why = register(0.90)
    assert (version, alias) == (3, "challenger") and "a tie keeps the champion" in why
    version, alias, why = register(0.95, test_set="other+set")
    assert (version, alias) == (4, "challenger") and "not compared with champion version 1" in why and "other+set" in why
    assert aliases() == {"champion": 1, "challenger": 4}
    version, alias, why = register(0.95)
    assert (version, alias) == (5, "champion") and "beats champion version 1" in why
    assert aliases() == {"champion": 5, "challenger": 4}

    client = mlflow.MlflowClient()
    champion = client.get_model_version_by_alias(tracking.REGISTERED_MODEL, "champion")
    assert champion.description == f"champion: {why}" and champion.tags["decision"] == why  # what the UI shows
    assert client.get_model_version(tracking.REGISTERED_MODEL, "1").description.startswith("was champion until version 5 beat it")
    lock = hashlib.sha256((ROOT / "uv.lock").read_bytes()).hexdigest()
    assert champion.tags["uv_lock_sha256"] == lock and champion.tags["test_set"] == TEST_SET
    assert champion.tags["dvc.exp_name"] == "acc-0.95" and champion.tags["test.test_acc"] == "0.95"
    assert set(champion.tags) >= {"git_commit", "params_sha256", "evaluate_run_id"}
    evaluated = mlflow.get_run(champion.tags["evaluate_run_id"]).data.metrics
    assert evaluated["accuracy_score"] == pytest.approx(0.95), "mlflow.models.evaluate logged the candidate's scores"


def test_a_rerun_of_the_same_evaluation_registers_no_second_version(store):
    model_id = logged_model()
    assert register(0.90, model_id=model_id) == (1, "champion", "the first version registered")
    version, alias, why = register(0.90, model_id=model_id)
    assert (version, alias) == (1, "champion") and why == "already registered as version 1: the first version registered"
    assert versions() == [1]


def test_a_champion_set_by_hand_makes_a_challenger_with_the_reason(store):
    register(0.90)
    client = mlflow.MlflowClient()
    by_hand = mlflow.register_model(f"models:/{logged_model()}", tracking.REGISTERED_MODEL).version  # no evaluation of its own
    client.set_registered_model_alias(tracking.REGISTERED_MODEL, "champion", by_hand)
    version, alias, why = register(0.99)
    assert (version, alias) == (3, "challenger"), why
    assert why.startswith(f"not compared with champion version {by_hand}: it has no evaluation of its own")
    assert aliases() == {"champion": 2, "challenger": 3}, "the hand-set champion stays"


def test_a_registry_fault_is_one_line_and_registers_nothing(store):
    register(0.90)
    with pytest.raises(tracking.TrackingError) as raised:
        register(0.95, model_id="m-0123456789abcdef0123456789abcdef")  # no such logged model
    message = str(raised.value)
    assert "\n" not in message and message.startswith("the model registry of ") and "refused the registration" in message
    assert "the outputs are written: fix it and run `dvc repro` again" in message
    assert versions() == [1] and aliases() == {"champion": 1}


def _versions_in(repo) -> list[int]:
    mlflow.set_tracking_uri(f"sqlite:///{repo / 'mlflow.db'}")
    try:
        return versions()
    finally:
        mlflow.set_tracking_uri(None)


def test_evaluate_registers_last_and_once_and_never_below_the_gate(pipeline_copy):
    """The evaluate stage on the session's pipeline (whose served model is version 1): below the gate
    nothing is registered and it says why; a registry fault after the outputs are written registers
    nothing and is one line; the rerun registers the model once, and a rerun of that no more."""
    repo = pipeline_copy
    assert _versions_in(repo) == [1]
    update_params(repo, {"evaluate": {"gate": 1.0}})
    result = run(repo, "python", "stages/evaluate.py", PYTHONPATH="src")
    accuracy = read_json(repo / "metrics" / "eval.json")["test_acc"]
    assert f"test accuracy {accuracy:.4%} is below the gate evaluate.gate=1.0: not registered" in result.stdout
    report = read_json(repo / "reports" / "eval.json")
    assert not report["gate_passed"] and report["mlflow"]["model_version"] is None and _versions_in(repo) == [1]

    update_params(repo, {"evaluate": {"gate": 0.5}})
    run(repo, "python", "stages/export.py", PYTHONPATH="src")  # a newly logged served model, not yet registered
    lock = repo / ".dvc" / "tmp" / "registry.lock"
    lock.unlink(missing_ok=True)
    lock.mkdir(parents=True)  # the registry cannot be locked: a fault after the outputs are written
    for name in ("metrics/eval.json", "reports/eval.json"):
        (repo / name).unlink()
    result = run(repo, "python", "stages/evaluate.py", check=False, PYTHONPATH="src")
    assert result.returncode == 1 and "Traceback" not in result.stderr, result.stderr
    assert result.stderr.strip().splitlines()[-1].startswith(f"error: cannot lock the model registry at {lock}")
    assert (repo / "metrics" / "eval.json").exists() and read_json(repo / "reports" / "eval.json")["mlflow"]["model_version"] is None
    assert _versions_in(repo) == [1], "nothing registered"

    lock.rmdir()
    run(repo, "python", "stages/evaluate.py", PYTHONPATH="src")
    registered = read_json(repo / "reports" / "eval.json")["mlflow"]
    assert registered["model_version"] == 2 and _versions_in(repo) == [1, 2]
    result = run(repo, "python", "stages/evaluate.py", PYTHONPATH="src")
    assert "already registered as version 2" in result.stdout and _versions_in(repo) == [1, 2]
    assert read_json(repo / "reports" / "eval.json")["mlflow"]["model_version"] == 2
