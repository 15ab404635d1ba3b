"""The champion moves only to a better model: tracking.register on a real MLflow store (SQLite), with
a real logged model, and predictions whose accuracy the test chooses."""

from __future__ import annotations

import hashlib

import mlflow
import numpy as np
import pytest
from helpers import ROOT

from mnist_pipeline import tracking

N = 1000
LABELS = np.arange(N) % 10
TEST_SET = "a+b"


class Constant(mlflow.pyfunc.PythonModel):
    def predict(self, context, model_input):
        return np.zeros(len(model_input))


def predictions(accuracy: float) -> np.ndarray:
    wrong = round(N * (1 - accuracy))
    return np.concatenate([(LABELS[:wrong] + 1) % 10, LABELS[wrong:]])


@pytest.fixture
def store(tmp_path, monkeypatch):
    """An empty SQLite store of the pipeline's experiment; DVC_ROOT names the repo root, as `dvc repro` does."""
    monkeypatch.setenv("DVC_ROOT", str(tmp_path))
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    tracking.connect()
    with mlflow.start_run():
        model_id = mlflow.pyfunc.log_model(name="model", python_model=Constant()).model_id
    yield model_id
    mlflow.set_tracking_uri(None)


def register(model_id: str, accuracy: float, test_set: str = TEST_SET) -> tuple[int, str, str]:
    with mlflow.start_run():
        return tracking.register(
            model_id, {"test_acc": accuracy}, LABELS, predictions(accuracy), test_set, {"dvc.exp_name": f"acc-{accuracy}"}
        )


def aliases() -> dict[str, int]:
    model = mlflow.MlflowClient().get_registered_model(tracking.REGISTERED_MODEL)
    return dict(model.aliases)


def test_the_champion_moves_only_to_a_better_model_on_the_same_test_set(store):
    assert register(store, 0.90)[:2] == (1, "champion")
    version, alias, why = register(store, 0.80)
    assert (version, alias) == (2, "challenger") and "does not beat champion version 1" in why and "80.0000% against 90.0000%" in why
    version, alias, why = register(store, 0.90)
    assert (version, alias) == (3, "challenger") and "a tie keeps the champion" in why
    version, alias, why = register(store, 0.95, test_set="other+set")
    assert (version, alias) == (4, "challenger") and "not compared with champion version 1" in why and "other+set" in why
    assert aliases() == {"champion": 1, "challenger": 4}
    version, alias, why = register(store, 0.95)
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
