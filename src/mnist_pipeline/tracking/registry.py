"""The model registry: a version of REGISTERED_MODEL for each model that passed evaluate's gate, its
evaluation, and the alias that the champion policy (mnist_pipeline.champion) gives it; reads and
writes, one experiment at a time, any fault of the registry said in one line."""

from __future__ import annotations

import contextlib
import logging
import warnings
from collections.abc import Iterator

import mlflow

from .. import write_fault
from ..champion import CHAMPION_ALIAS, Champion, alias_held, already_registered, by_comparison, required_gain, without_comparison
from .runs import (
    STORE_FAULTS,
    TrackingError,
    _git_commit,
    _mentions,
    project_file_digest,
    repo_root,
    store_faults_in_one_line,
    tracking_uri,
)

REGISTERED_MODEL = "mnist-cnn"


def register(model_id: str, test_metrics: dict[str, float], labels, predicted, test_set: str, tags: dict[str, str]) -> tuple[int, str, str]:
    """Register the model as a new version of REGISTERED_MODEL and let the evidence decide its alias.

    The candidate is scored with `mlflow.models.evaluate` on its predictions (logged to the active
    run), and `mlflow.validate_evaluation_results` compares it with the champion's evaluation run:
    `champion` moves to the new version only when its test accuracy beats the champion's by at least
    one image on the same test set (`test_set`, a digest of its files); a tie, a worse score, another
    test set or a champion with no evaluation of its own (an alias set by hand) make it the
    `challenger` (mnist_pipeline.champion decides). The decision is the version's description and
    tags, which the MLflow UI shows.

    Once per logged model: a rerun of the same evaluation (the same `model_id`) returns the version
    already registered and its decision. Any other fault of the registry is one TrackingError.
    Returns (version, alias, why)."""
    client = mlflow.MlflowClient()
    with _registry_lock(), _registry_faults_in_one_line():  # read the champion, compare, move the alias: one experiment at a time
        earlier = [v for v in client.search_model_versions(f"name='{REGISTERED_MODEL}'") if v.tags.get("logged_model_id") == model_id]
        if earlier and "decision" in earlier[0].tags:
            version = client.get_model_version(REGISTERED_MODEL, earlier[0].version)  # its aliases now, not when it was decided
            return int(version.version), alias_held(version.aliases), already_registered(int(version.version), version.tags["decision"])
        candidate = _evaluated(labels, predicted)
        version_tags = (
            tags
            | {f"test.{k}": f"{v:.6g}" for k, v in test_metrics.items()}
            | {
                "test_set": test_set,
                "evaluate_run_id": mlflow.active_run().info.run_id,
                "logged_model_id": model_id,
                "uv_lock_sha256": project_file_digest("uv.lock"),
                "params_sha256": project_file_digest("params.yaml"),
                "git_commit": _git_commit(),
            }
        )
        version = (
            earlier[0].version if earlier else mlflow.register_model(f"models:/{model_id}", REGISTERED_MODEL, tags=version_tags).version
        )
        try:
            champion = client.get_model_version_by_alias(REGISTERED_MODEL, CHAMPION_ALIAS)
        except mlflow.exceptions.MlflowException as exc:
            if exc.error_code not in ("RESOURCE_DOES_NOT_EXIST", "INVALID_PARAMETER_VALUE"):
                raise
            champion = None
        evidence = _evaluation_of(champion)
        held = None if champion is None else _as_champion(champion, evidence)
        decision = without_comparison(int(version), held, test_set)
        if decision is None:  # the champion's evaluation and the candidate's, on the same test set: MLflow compares them
            beats = _beats(candidate, evidence, required_gain(len(labels)))
            decision = by_comparison(int(version), held, candidate.metrics["accuracy_score"], len(labels), beats)
        client.set_registered_model_alias(REGISTERED_MODEL, decision.alias, version)
        client.update_model_version(REGISTERED_MODEL, version, description=f"{decision.alias}: {decision.why}")
        client.set_model_version_tag(REGISTERED_MODEL, version, "decision", decision.why)  # last: a version with it is decided
        if decision.former_champion is not None:
            client.update_model_version(REGISTERED_MODEL, champion.version, description=decision.former_champion_description)
    return int(version), decision.alias, decision.why


def _as_champion(version, evidence: mlflow.models.EvaluationResult | None) -> Champion:
    """What the champion policy reads of the version that holds the champion alias, and of its evaluation."""
    accuracy = evidence.metrics["accuracy_score"] if evidence is not None else None
    return Champion(int(version.version), version.description or "", version.tags.get("test_set"), accuracy)


def _beats(candidate: mlflow.models.EvaluationResult, champion: mlflow.models.EvaluationResult, gain: float) -> bool:
    """Whether the candidate's accuracy_score is higher than the champion's by `gain` at least, as
    mlflow.validate_evaluation_results judges it."""
    from mlflow.models import MetricThreshold
    from mlflow.models.evaluation.validation import ModelValidationFailedException

    threshold = {"accuracy_score": MetricThreshold(min_absolute_change=gain, greater_is_better=True)}
    try:
        mlflow.validate_evaluation_results(threshold, candidate, champion)
    except ModelValidationFailedException:
        return False
    return True


def _evaluated(labels, predicted):
    """mlflow.models.evaluate on predictions already made, logged to the active run."""
    import pandas as pd

    data = pd.DataFrame({"label": labels, "prediction": predicted})
    with warnings.catch_warnings(), _quiet("mlflow.models.evaluation"):  # its notes on the inferred schema and model type
        warnings.simplefilter("ignore", UserWarning)
        return mlflow.models.evaluate(
            data=data,
            targets="label",
            predictions="prediction",
            model_type="classifier",
            evaluator_config={"log_model_explainability": False, "label_list": list(range(10))},
        )


def _evaluation_of(version) -> mlflow.models.EvaluationResult | None:
    """The evaluation run that registered `version`, None if it has none (an alias set by hand, a run deleted since)."""
    run_id = version.tags.get("evaluate_run_id") if version is not None else None
    if not run_id:
        return None
    try:
        metrics = mlflow.get_run(run_id).data.metrics
    except mlflow.exceptions.MlflowException as exc:
        if exc.error_code != "RESOURCE_DOES_NOT_EXIST":
            raise
        return None
    return mlflow.models.EvaluationResult(metrics, {}) if "accuracy_score" in metrics else None


@contextlib.contextmanager
def _registry_faults_in_one_line() -> Iterator[None]:
    """A registry fault (the store, the server, a version it refuses) as one TrackingError; a
    store that cannot be written says so (store_faults_in_one_line)."""
    with store_faults_in_one_line():
        try:
            yield
        except mlflow.exceptions.MlflowException as exc:
            if write_fault(exc) or any(_mentions(exc, fault) for fault in STORE_FAULTS):
                raise  # a store that cannot be written: store_faults_in_one_line says so
            message = " ".join(str(exc.message).split())
            raise TrackingError(
                f"the model registry of {tracking_uri()} refused the registration ({exc.error_code}: {message[:300]}); "
                "the outputs are written: fix it and run `dvc repro` again to register"
            ) from None


@contextlib.contextmanager
def _quiet(logger: str) -> Iterator[None]:
    log = logging.getLogger(logger)
    level = log.level
    log.setLevel(logging.ERROR)
    try:
        yield
    finally:
        log.setLevel(level)


@contextlib.contextmanager
def _registry_lock() -> Iterator[None]:
    """An exclusive lock for the experiments of this repository (`dvc queue start -j 2` runs
    several at once; their copies share the main repository's root)."""
    import fcntl

    path = repo_root() / ".dvc" / "tmp" / "registry.lock"
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        handle = path.open("a")
    except OSError as exc:
        raise TrackingError(
            f"cannot lock the model registry at {path} ({exc.strerror}); the outputs are written: "
            "fix it and run `dvc repro` again to register"
        ) from None
    with handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)
