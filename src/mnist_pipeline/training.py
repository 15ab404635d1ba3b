"""The fit loop shared by crossvalidate and train. Tracking comes in as a callback."""

from __future__ import annotations

import sys
from typing import Callable

import keras
import numpy as np
import tensorflow as tf

from .models import build
from .params import Model

# Several batches per call into TensorFlow: same batches and maths, far less Python per step.
STEPS_PER_EXECUTION = 16
EpochCallback = Callable[[int, dict[str, float]], None]


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


def fit(
    model_params: Model,
    x: np.ndarray,
    y: np.ndarray,
    *,
    epochs: int,
    batch_size: int,
    optimizer: str,
    learning_rate: float,
    seed: int,
    validation: tuple[np.ndarray, np.ndarray] | None = None,
    on_epoch_end: EpochCallback | None = None,
) -> tuple[keras.Model, dict[str, list[float]]]:
    """Build the model from a seed and train it; returns the model and its per-epoch history."""
    model = compile_model(model_params, optimizer, learning_rate, seed)
    callbacks = []
    if on_epoch_end is not None:
        callbacks.append(keras.callbacks.LambdaCallback(on_epoch_end=lambda epoch, logs: on_epoch_end(epoch + 1, logs)))
    history = model.fit(
        dataset(x, y, batch_size, shuffle_seed=seed),
        epochs=epochs,
        validation_data=None if validation is None else dataset(*validation, 1000, shuffle_seed=None),
        callbacks=callbacks,
        shuffle=False,  # the dataset shuffles itself, seeded
        verbose=1 if sys.stdout.isatty() else 2,
    )
    return model, {k: [float(v) for v in vs] for k, vs in history.history.items()}

