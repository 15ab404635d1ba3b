"""Where runs go, how they are tagged, what they hold: the connection to the MLflow store and experiment,
the runs of the stages, what they log, and a store that cannot be written said in one line."""

from __future__ import annotations

import contextlib
import dataclasses
import hashlib
import importlib.metadata
import logging
import os
import sqlite3
import subprocess
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import mlflow
import psutil

from .. import PipelineError, machine, write_fault
from ..stage import atomic_path

EXPERIMENT = "mnist-pipeline"
# The MLflow UI opens an experiment of this kind on its training runs, not on the GenAI trace overview.
EXPERIMENT_KIND = {"mlflow.experimentKind": "custom_model_development"}

logging.getLogger("mlflow").setLevel(logging.WARNING)  # its INFO lines (database set-up, registrations) are not the stage's
# its tracebacks and retries of a store that cannot be written: store_faults_in_one_line says it in one line
logging.getLogger("mlflow.store.db.utils").setLevel(logging.CRITICAL)


class TrackingError(PipelineError):
    pass


def repo_root() -> Path:
    """The main repository, also from a `dvc exp run --temp/--queue` copy under .dvc/tmp/exps."""
    root = os.environ.get("DVC_ROOT")
    if not root:
        try:
            root = subprocess.run(["git", "rev-parse", "--show-toplevel"], capture_output=True, text=True, check=True).stdout.strip()
        except (OSError, subprocess.CalledProcessError):
            raise TrackingError("cannot find the repository root: run inside the git repository or through dvc") from None
    path = Path(root).resolve()
    parts = path.parts
    for i in range(len(parts) - 3):
        if parts[i : i + 3] == (".dvc", "tmp", "exps"):
            return Path(*parts[:i])
    return path


def default_uri() -> str:
    return f"sqlite:///{repo_root() / 'mlflow.db'}"


def tracking_uri() -> str:
    return os.environ.get("MLFLOW_TRACKING_URI") or default_uri()


def _git_commit() -> str:
    try:
        return subprocess.run(["git", "rev-parse", "HEAD"], capture_output=True, text=True, check=True).stdout.strip()
    except (OSError, subprocess.CalledProcessError):
        return "unknown"


_enabled = True


def connect(enabled: bool = True) -> None:
    """Point MLflow at the store and experiment; raise TrackingError at once if a server is down.

    `enabled=False` (a multi-worker cluster's other workers: only the chief logs) makes run()
    and the log functions do nothing."""
    global _enabled
    _enabled = enabled
    if not enabled:
        return
    uri = tracking_uri()
    if uri.startswith(("http://", "https://")):
        try:
            urllib.request.urlopen(uri.rstrip("/") + "/health", timeout=5).close()
        except (urllib.error.URLError, OSError) as exc:
            reason = getattr(exc, "reason", exc)
            raise TrackingError(
                f"MLflow tracking server {uri} is unreachable ({reason}); start it, "
                f"or unset MLFLOW_TRACKING_URI to use the embedded store {default_uri()}"
            ) from None
    mlflow.set_tracking_uri(uri)
    with store_faults_in_one_line():
        _probe_sqlite(uri)
        _open_experiment(uri)


def _probe_sqlite(uri: str) -> None:
    """Open a SQLite store once, as MLflow will: MLflow retries an engine that cannot open its
    file for some 100 s before it gives up, the same fault that this answers at once."""
    import sqlalchemy

    url = sqlalchemy.engine.make_url(uri)
    if url.get_backend_name() != "sqlite" or url.database in (None, "", ":memory:") or url.query.get("uri") == "true":
        return  # in memory, or a file: URI whose mode SQLite's own options decide
    path = Path(url.database)
    path.parent.mkdir(parents=True, exist_ok=True)
    with contextlib.closing(sqlite3.connect(path, timeout=30)) as db:
        db.execute("PRAGMA schema_version").fetchone()


def _open_experiment(uri: str) -> None:
    if mlflow.get_experiment_by_name(EXPERIMENT) is None:
        artifacts = None if uri.startswith("http") else (repo_root() / "mlartifacts").as_uri()
        try:
            mlflow.create_experiment(EXPERIMENT, artifact_location=artifacts, tags=EXPERIMENT_KIND)
        except mlflow.exceptions.MlflowException as exc:
            if exc.error_code != "RESOURCE_ALREADY_EXISTS":  # else a stage running in parallel created it first
                raise
    experiment = mlflow.set_experiment(EXPERIMENT)
    for key, value in EXPERIMENT_KIND.items():
        if experiment.tags.get(key) != value:  # an experiment made before the tag existed
            mlflow.set_experiment_tag(key, value)


def pipeline_run() -> str:
    """One name for the stages of one `dvc repro` or `dvc exp run`, to group them in the UI: the
    DVC process that runs them (its id and start time) and the experiment's name, if any."""
    name = os.environ.get("DVC_EXP_NAME") or "repro"
    for process in psutil.Process().parents():
        try:
            if any(Path(part).name == "dvc" for part in process.cmdline()[:2]):
                return f"{name}-{process.pid}-{int(process.create_time())}"
        except psutil.Error:
            continue
    return f"{name}-{os.getpid()}-{int(psutil.Process().create_time())}"  # a stage run by hand: its own group


def flat_params(**sections: Any) -> dict[str, Any]:
    """{"cv": CV(folds=5, ...)} -> {"cv.folds": 5, ...}; a mapping within a section, key by key"""
    flat = {}
    for name, section in sections.items():
        for key, value in dataclasses.asdict(section).items():
            if isinstance(value, dict):
                flat |= {f"{name}.{key}.{inner}": v for inner, v in value.items()}
            else:
                flat[f"{name}.{key}"] = value
    return flat


@contextlib.contextmanager
def run(
    stage: str,
    params: dict[str, Any] | None = None,
    name: str | None = None,
    parent_run_id: str | None = None,
    resume_from: Path | None = None,
) -> Iterator[str]:
    """An MLflow run tagged with the stage, git commit and DVC experiment; yields its run id.
    The active run is per thread, so a child run started in another thread names its parent.

    With `resume_from`, the run id is kept in that file, and a later attempt at the same work
    continues that run (if the store still has it) instead of starting another. Yields None
    when tracking is off (see connect).
    """
    if not _enabled:
        yield None
        return
    tags = {
        "stage": stage,
        "git_commit": _git_commit(),
        "pipeline_run": pipeline_run(),
        "uv_lock_sha256": project_file_digest("uv.lock"),
        "cpu": machine.cpu_name(),
        "instruction_set": machine.instruction_set(),  # same numbers on one kind of CPU, not across kinds
    }
    if os.environ.get("DVC_EXP_NAME"):
        tags["dvc.exp_name"] = os.environ["DVC_EXP_NAME"]
    with store_faults_in_one_line():
        run_id = _resumable(resume_from)
        with mlflow.start_run(
            run_id=run_id, run_name=name or stage, parent_run_id=parent_run_id, nested=parent_run_id is not None, tags=tags
        ) as active:
            if resume_from and run_id is None:
                with atomic_path(resume_from) as tmp:
                    tmp.write_text(active.info.run_id)
            if params:
                mlflow.log_params(params)  # the same values again when resumed, which MLflow accepts
            yield active.info.run_id


# What SQLite (through SQLAlchemy and MLflow) says when its file cannot be written.
STORE_FAULTS = ("database or disk is full", "readonly database", "unable to open database file", "disk I/O error")


@contextlib.contextmanager
def store_faults_in_one_line() -> Iterator[None]:
    """An MLflow store that cannot be written (a full disk, a read-only place, a file-size limit)
    becomes one TrackingError that names the store; a stage's own error, raised first, wins.
    The stage then fails: DVC records nothing of it, and a rerun redoes it (crossvalidate and
    train resume from their checkpoints)."""
    try:
        yield
    except Exception as exc:
        cause: BaseException | None = exc
        while cause is not None:
            if isinstance(cause, PipelineError):
                raise cause from None
            cause = cause.__cause__ or cause.__context__
        reason = write_fault(exc) or next((f for f in STORE_FAULTS if _mentions(exc, f)), None)
        if reason is None:
            raise
        raise TrackingError(
            f"the MLflow store {tracking_uri()} cannot be written ({reason}); free some space or make it "
            "writable (or point MLFLOW_TRACKING_URI elsewhere), then run the stage again"
        ) from None


def _mentions(exc: BaseException | None, words: str) -> bool:
    while exc is not None:
        if words in str(exc):
            return True
        exc = exc.__cause__ or exc.__context__
    return False


def _resumable(id_file: Path | None) -> str | None:
    """The run id saved in id_file, if that run is still in this store's experiment."""
    if id_file is None or not id_file.exists():
        return None
    try:
        saved = mlflow.get_run(id_file.read_text().strip())
    except mlflow.exceptions.MlflowException:
        return None
    in_experiment = saved.info.experiment_id == mlflow.get_experiment_by_name(EXPERIMENT).experiment_id
    return saved.info.run_id if saved.info.lifecycle_stage == "active" and in_experiment else None


def log_metrics(metrics: dict[str, float], step: int | None = None, model_id: str | None = None) -> None:
    if _enabled:
        mlflow.log_metrics({k: float(v) for k, v in metrics.items()}, step=step, model_id=model_id)


def log_epoch(epoch: int, logs: dict[str, float]) -> None:
    """A training callback: one step per epoch."""
    log_metrics(logs, step=epoch)


def log_artifact(path: Path | str) -> None:
    if _enabled:
        mlflow.log_artifact(str(path))


def log_keras_model(model, example_input) -> str:
    """Log the model with its signature (no input_example: mlflow#16183); returns the model id."""
    from mlflow.models import infer_signature

    signature = infer_signature(example_input, model.predict(example_input, verbose=0))
    return mlflow.keras.log_model(model, name="model", signature=signature, pip_requirements=_model_requirements()).model_id


def _model_requirements() -> list[str]:
    """What a served model loads, pinned as installed (MLflow adds itself): what MLflow would infer
    by loading the model in a subprocess, which costs a stage about 10 s."""
    from packaging.utils import canonicalize_name

    distributions = importlib.metadata.packages_distributions()
    names = {d for module in ("keras", "numpy", "tensorflow") for d in distributions[module]}
    return sorted(f"{canonicalize_name(name)}=={importlib.metadata.version(name)}" for name in names)


def project_file_digest(name: str) -> str:
    """sha256 of one of the project's files (uv.lock, params.yaml) as this run sees it: the
    experiment's own copy under `dvc exp run --temp/--queue`; "missing" if there is none."""
    path = Path(__file__).resolve().parents[3] / name
    return hashlib.sha256(path.read_bytes()).hexdigest() if path.is_file() else "missing"
