"""The fit and k-fold loops shared by crossvalidate and train. Tracking comes in as a callback."""

from __future__ import annotations

import os
import sys
import time
from concurrent.futures import ThreadPoolExecutor, as_completed
from dataclasses import dataclass
from typing import Callable, TypeVar

import keras
import numpy as np
import tensorflow as tf

from . import PipelineError
from .models import build
from .params import Model

# Several batches per call into TensorFlow: same batches and maths, far less Python per step.
STEPS_PER_EXECUTION = 16
EpochCallback = Callable[[int, dict[str, float]], None]
K = TypeVar("K")
T = TypeVar("T")


def seed_everything(seed: int) -> None:
    """Same seed, same machine, same numbers.

    On CPU, TensorFlow's kernels already give bit-identical results for a fixed thread count
    (the tests check it), and forcing op determinism there costs up to a quarter of the speed.
    GPU kernels (cuDNN) are not deterministic by default, so there it is switched on.
    """
    keras.utils.set_random_seed(seed)
    if tf.config.list_physical_devices("GPU"):
        tf.config.experimental.enable_op_determinism()


def make_optimizer(name: str, learning_rate: float) -> keras.optimizers.Optimizer:
    if name == "sgd":
        return keras.optimizers.SGD(learning_rate, momentum=0.9)  # the tutorial's CV optimizer
    return keras.optimizers.Adam(learning_rate)


def dataset(x: np.ndarray, y: np.ndarray, batch_size: int, shuffle_seed: int | None) -> tf.data.Dataset:
    """Batches of the in-memory uint8 arrays; the model's first layer casts and scales them.

    tf.data's autotuner is off on purpose: its background thread sleeps 10 ms, 20 ms, ... up to
    10.24 s, and destroying an iterator (Keras makes one per epoch) waits for it to wake, so every
    epoch ended with a stall of up to 10 s. Slicing uint8 batches is cheap, so one private thread
    and a one-batch prefetch keep the training threads fed without competing for the cores.
    """
    ds = tf.data.Dataset.from_tensor_slices((x, y))
    if shuffle_seed is not None:
        ds = ds.shuffle(len(x), seed=shuffle_seed, reshuffle_each_iteration=True)
    options = tf.data.Options()
    options.autotune.enabled = False
    options.threading.private_threadpool_size = 1
    return ds.batch(batch_size).prefetch(1).with_options(options)


def compile_model(model_params: Model, optimizer: str, learning_rate: float, seed: int) -> keras.Model:
    seed_everything(seed)
    model = build(model_params)
    model.compile(
        optimizer=make_optimizer(optimizer, learning_rate),
        loss="sparse_categorical_crossentropy",
        metrics=["accuracy"],
        steps_per_execution=STEPS_PER_EXECUTION,
    )
    return model


@dataclass
class Job:
    """A seeded model and its datasets, ready to train."""

    model: keras.Model
    data: tf.data.Dataset
    validation: tf.data.Dataset | None


def prepare(
    model_params: Model,
    x: np.ndarray,
    y: np.ndarray,
    *,
    batch_size: int,
    optimizer: str,
    learning_rate: float,
    seed: int,
    validation: tuple[np.ndarray, np.ndarray] | None = None,
) -> Job:
    """Build the model and datasets from a seed. The seed is process-wide, so prepare jobs one
    after another, then train them in any order or at the same time."""
    model = compile_model(model_params, optimizer, learning_rate, seed)
    val = None if validation is None else dataset(*validation, 1000, shuffle_seed=None)
    return Job(model, dataset(x, y, batch_size, shuffle_seed=seed), val)


def train(job: Job, epochs: int, on_epoch_end: EpochCallback | None = None, label: str | None = None) -> dict[str, list[float]]:
    """Train a prepared job; returns its per-epoch history. With a label, progress is one line
    per epoch that starts with it (for jobs trained at the same time) instead of Keras's bar."""
    callbacks = []
    if on_epoch_end is not None:
        callbacks.append(keras.callbacks.LambdaCallback(on_epoch_end=lambda epoch, logs: on_epoch_end(epoch + 1, logs)))
    if label is not None:
        callbacks.append(EpochLine(label, epochs))
    history = job.model.fit(
        job.data,
        epochs=epochs,
        validation_data=job.validation,
        callbacks=callbacks,
        shuffle=False,  # the dataset shuffles itself, seeded
        verbose=0 if label is not None else 1 if sys.stdout.isatty() else 2,
    )
    if len(history.epoch) < epochs:  # stop_training was set: the caller is giving up on this job
        raise PipelineError(f"training stopped after {len(history.epoch)} of {epochs} epochs")
    return {k: [float(v) for v in vs] for k, vs in history.history.items()}


def fit(model_params: Model, x: np.ndarray, y: np.ndarray, *, epochs: int, batch_size: int, optimizer: str,
        learning_rate: float, seed: int, on_epoch_end: EpochCallback | None = None) -> tuple[keras.Model, dict[str, list[float]]]:
    """Build a model from a seed and train it; returns the model and its per-epoch history."""
    job = prepare(model_params, x, y, batch_size=batch_size, optimizer=optimizer, learning_rate=learning_rate, seed=seed)
    return job.model, train(job, epochs, on_epoch_end)


def concurrent_jobs(n_jobs: int) -> int:
    """How many jobs to train at once in one process. Small batches leave cores idle between
    TensorFlow's ops; a second model's ops fill them (12% more images/s at batch 32 on 2 cores)."""
    return max(1, min(n_jobs, os.cpu_count() or 1))


def train_together(jobs: dict[K, Job], train_one: Callable[[K, Job], T]) -> list[T]:
    """Run train_one on every job at the same time, a thread each; results in finishing order.

    The jobs share TensorFlow's one thread pool, whose size is fixed, so each job computes
    exactly what it would alone. On an error or Ctrl-C the other jobs stop at their next step.
    """
    with ThreadPoolExecutor(len(jobs)) as pool:
        futures = [pool.submit(train_one, key, job) for key, job in jobs.items()]
        try:
            return [finished.result() for finished in as_completed(futures)]
        except BaseException:
            for job in jobs.values():
                job.model.stop_training = True
            raise


def train_in_waves(keys: list[K], prepare: Callable[[K], Job], train_one: Callable[[K, Job], T]) -> list[T]:
    """Prepare and train the jobs `concurrent_jobs` at a time (the k-fold loop). Jobs are
    prepared one after another, since the seed is process-wide, and only one wave is in memory."""
    at_once = concurrent_jobs(len(keys))
    results = []
    for start in range(0, len(keys), at_once):
        results += train_together({key: prepare(key) for key in keys[start : start + at_once]}, train_one)
    return results


class EpochLine(keras.callbacks.Callback):
    def __init__(self, label: str, epochs: int):
        super().__init__()
        self.label, self.epochs = label, epochs

    def on_epoch_begin(self, epoch, logs=None):
        self.start = time.perf_counter()

    def on_epoch_end(self, epoch, logs=None):
        values = " ".join(f"{k} {v:.4f}" for k, v in (logs or {}).items())
        print(f"{self.label} epoch {epoch + 1}/{self.epochs}: {values} ({time.perf_counter() - self.start:.0f} s)", flush=True)
