"""The one place that talks to MLflow: where runs go, how they are tagged, what they hold (runs), and
the model registry's versions and aliases (registry), whose policy is mnist_pipeline.champion's."""

from __future__ import annotations

import os

# Fail fast instead of MLflow's default of minutes of retries against a dead server.
os.environ.setdefault("MLFLOW_HTTP_REQUEST_MAX_RETRIES", "2")
os.environ.setdefault("MLFLOW_HTTP_REQUEST_TIMEOUT", "20")

from ..champion import CHALLENGER_ALIAS, CHAMPION_ALIAS  # noqa: E402  (the settings above must come before MLflow is imported)
from .registry import REGISTERED_MODEL, register  # noqa: E402
from .runs import (  # noqa: E402
    EXPERIMENT,
    EXPERIMENT_KIND,
    STORE_FAULTS,
    TrackingError,
    connect,
    default_uri,
    flat_params,
    log_artifact,
    log_epoch,
    log_keras_model,
    log_metrics,
    pipeline_run,
    project_file_digest,
    repo_root,
    run,
    store_faults_in_one_line,
    tracking_uri,
)

__all__ = [
    "CHALLENGER_ALIAS",
    "CHAMPION_ALIAS",
    "EXPERIMENT",
    "EXPERIMENT_KIND",
    "REGISTERED_MODEL",
    "STORE_FAULTS",
    "TrackingError",
    "connect",
    "default_uri",
    "flat_params",
    "log_artifact",
    "log_epoch",
    "log_keras_model",
    "log_metrics",
    "pipeline_run",
    "project_file_digest",
    "register",
    "repo_root",
    "run",
    "store_faults_in_one_line",
    "tracking_uri",
]
