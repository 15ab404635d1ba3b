"""The epoch loop shared by crossvalidate, train and the detector: a seeded, compiled model and
what it trains on (prepare), one line per epoch with checkpoints to resume from (train), and
several models trained side by side (train_together). Tracking comes in as a callback; the data
pipeline is datasets.py's, devices and precision distribute.py's."""

from __future__ import annotations

import json
import sys
import threading
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor, as_completed
from dataclasses import dataclass, field
from pathlib import Path
from typing import TypeVar

import numpy as np
from tqdm import tqdm

from . import PipelineError, not_retracing, quiet_native_stderr, stage

with quiet_native_stderr():  # TensorFlow's start-up banner (see quiet_native_stderr)
    import keras
    import tensorflow as tf

from .datasets import VALIDATION_BATCH, Examples, dataset
from .models import build
from .params import Augment, Model

# Several batches per call into TensorFlow: same batches and maths, far less Python per step.
STEPS_PER_EXECUTION = 16
tf.get_logger().addFilter(not_retracing)
EpochCallback = Callable[[int, dict[str, float]], None]
History = dict[str, list[float]]  # per metric, one value per epoch
K = TypeVar("K")
T = TypeVar("T")
_started: float | None = None  # when train was first called: the stage's elapsed time counts from there


def seed_everything(seed: int) -> None:
    """Same seed, same machine, same numbers.

    On CPU, TensorFlow's kernels already give bit-identical results for a fixed thread count
    (the tests check it), and forcing op determinism there costs up to a quarter of the speed.
    GPU kernels (cuDNN) are not deterministic by default, so there it is switched on.
    """
    keras.utils.set_random_seed(seed)
    if tf.config.list_physical_devices("GPU"):
        tf.config.experimental.enable_op_determinism()


def make_optimizer(
    name: str, learning_rate: float, schedule: str = "constant", steps_per_epoch: int = 1, epochs: int = 1
) -> keras.optimizers.Optimizer:
    """`cosine`: a linear warm-up over the first epoch from a tenth of `learning_rate` to it, then
    a cosine decay to 0 at the end of the last epoch. The step count lives in the optimizer's
    state, so a resumed run goes on with the rate it had."""
    if schedule == "cosine":
        warmup = min(steps_per_epoch, steps_per_epoch * epochs // 2)
        learning_rate = keras.optimizers.schedules.CosineDecay(
            learning_rate / 10, decay_steps=max(1, steps_per_epoch * epochs - warmup), warmup_target=learning_rate, warmup_steps=warmup
        )
    if name == "sgd":
        return keras.optimizers.SGD(learning_rate, momentum=0.9)  # the tutorial's CV optimizer
    return keras.optimizers.Adam(learning_rate)


def compile_model(
    model_params: Model | Callable[[], keras.Model], optimizer: keras.optimizers.Optimizer, seed: int, one_hot: bool = False
) -> keras.Model:
    """Build (from params, or with a builder such as models.detector) and compile under the
    current strategy's scope, if any; `one_hot`: for one-hot targets instead of digits."""
    seed_everything(seed)
    model = model_params() if callable(model_params) else build(model_params)
    model.compile(
        optimizer=optimizer,
        loss="categorical_crossentropy" if one_hot else "sparse_categorical_crossentropy",
        metrics=["accuracy"],
        # Keras's loop of several steps per call fails under tf.distribute (placeholder errors)
        steps_per_execution=1 if tf.distribute.has_strategy() else STEPS_PER_EXECUTION,
    )
    return model


@dataclass
class Job:
    """A seeded model and what it trains on, ready to train."""

    model: keras.Model
    examples: Examples
    index: np.ndarray
    batch_size: int
    seed: int
    validation: tf.data.Dataset | None
    augment: Augment | None = None
    label_smoothing: float | None = None  # None: the labels are digits; a number: smoothed one-hot targets
    strategy: tf.distribute.Strategy = field(default_factory=tf.distribute.get_strategy)
    stop: threading.Event = field(default_factory=threading.Event)  # set: training ends at its next step

    def epoch(self, number: int) -> tf.data.Dataset:
        """Epoch `number`'s batches (from 0), shuffled by (seed, number) alone, so a job resumed at
        any epoch sees the order it would have seen without the interruption."""
        return dataset(
            self.examples,
            self.index,
            self.batch_size,
            shuffle_seed=(self.seed, number),
            augment=self.augment,
            label_smoothing=self.label_smoothing,
        )


def prepare(
    model_params: Model | Callable[[], keras.Model],
    examples: Examples,
    index: np.ndarray,
    *,
    batch_size: int,
    optimizer: str,
    learning_rate: float,
    seed: int,
    validation_index: np.ndarray | None = None,
    schedule: str = "constant",
    epochs: int = 1,
    augment: Augment | None = None,
    label_smoothing: float = 0.0,
    strategy: tf.distribute.Strategy | None = None,
) -> Job:
    """Build the model from a seed, to train on the `examples` at `index` (distorted as `augment`
    says, towards one-hot targets smoothed by `label_smoothing` if it is not 0) and validate on
    those at `validation_index` (against the plain labels). `epochs` is what the learning-rate
    `schedule` spans. The seed is process-wide, so prepare jobs one after another, then train
    them in any order or at the same time. Under a `strategy` (see distribution) the model
    trains on its devices."""
    strategy = strategy or tf.distribute.get_strategy()
    steps_per_epoch = -(-len(index) // batch_size)
    smoothing = label_smoothing or None  # 0: digits and the sparse loss, exactly the tutorial's computation
    with strategy.scope():  # the default strategy's scope changes nothing
        model = compile_model(
            model_params, make_optimizer(optimizer, learning_rate, schedule, steps_per_epoch, epochs), seed, one_hot=smoothing is not None
        )
    val = (
        None
        if validation_index is None
        else dataset(examples, validation_index, VALIDATION_BATCH, shuffle_seed=None, label_smoothing=None if smoothing is None else 0.0)
    )
    return Job(model, examples, index, batch_size, seed, val, augment, smoothing, strategy)


def train(
    job: Job, epochs: int, on_epoch_end: EpochCallback | None = None, label: str | None = None, checkpoint: Path | None = None
) -> History:
    """Train a prepared job for `epochs`, printing one line per epoch (starting with `label`, if
    given) with the time since the process first called train and an estimate of this job's time
    left, plus a live bar of the epoch's steps on a terminal; returns its per-epoch history.

    With a `checkpoint` directory, the model, its optimizer state and the history are saved there
    after every epoch, and a job that finds a checkpoint there goes on after its last epoch: since
    each epoch's order depends on the seed and the epoch alone, it ends exactly where it would
    have ended without the interruption. (Keras's BackupAndRestore restores the model too, but
    inside one `fit` that has already been given its data, and it keeps no history.)
    """
    global _started
    if _started is None:
        _started = time.perf_counter()
    prefix = f"{label} " if label else ""
    live = sys.stdout.isatty()
    steps = -(-len(job.index) // job.batch_size)
    trained = 0.0  # seconds spent on this call's epochs, resumed ones not counted, for the estimate
    with job.strategy.scope():  # the optimizer's variables a checkpoint restores are made on its devices
        history, done = load_checkpoint(job.model, checkpoint) if checkpoint else ({}, 0)
    if done:
        print(f"{label + ': ' if label else ''}resuming after epoch {done}/{epochs}, saved by an interrupted run", flush=True)
    for epoch in range(done, epochs):
        start = time.perf_counter()
        reseed_dropout(job.model, epoch)
        callbacks = [StopWhenSet(job.stop)] + ([ProgressBar(steps, f"{prefix}epoch {epoch + 1}/{epochs}")] if live else [])
        result = job.model.fit(
            job.epoch(epoch), validation_data=job.validation, callbacks=callbacks, shuffle=False, verbose=0
        )  # shuffle: the dataset is shuffled already
        if job.stop.is_set():  # the caller is giving up on this job
            raise PipelineError(f"training stopped during epoch {epoch + 1} of {epochs}")
        logs = {name: float(values[-1]) for name, values in result.history.items()}
        for name, value in logs.items():
            history.setdefault(name, []).append(value)
        values = " ".join(f"{name} {value:.4f}" for name, value in logs.items())
        now = time.perf_counter()
        trained += now - start
        left = trained / (epoch + 1 - done) * (epochs - epoch - 1)
        line = (
            f"{prefix}epoch {epoch + 1}/{epochs}: {values} "
            f"({duration(now - start)}; {duration(now - _started)} in, about {duration(left)} left)"
        )
        if live:
            tqdm.write(line)  # above the bars of the jobs still training beside this one
        else:
            print(line, flush=True)
        if on_epoch_end is not None:
            on_epoch_end(epoch + 1, logs)
        if checkpoint:  # after on_epoch_end: a kill in between repeats an epoch's log rather than losing it
            save_checkpoint(job.model, history, checkpoint)
    return history


def duration(seconds: float) -> str:
    """`45 s`, `3 min 05 s`, `1 h 02 min`."""
    s = round(seconds)
    if s < 60:
        return f"{s} s"
    if s < 3600:
        return f"{s // 60} min {s % 60:02d} s"
    return f"{s // 3600} h {s % 3600 // 60:02d} min"


def reseed_dropout(model: keras.Model, epoch: int) -> None:
    """Start each dropout layer's random stream for this epoch at (its seed, epoch). Its seed
    generator's state is not among the weights a checkpoint saves, so without this a resumed run
    would drop other units than an uninterrupted one."""
    for layer in model.layers:
        generator = getattr(layer, "seed_generator", None)
        if isinstance(generator, keras.random.SeedGenerator):
            seed = generator.state.numpy()[0]  # the counter is the second element; the seed never changes
            generator.state.assign(np.array([seed, epoch << 20], dtype=generator.state.dtype))


def save_checkpoint(model: keras.Model, history: History, directory: Path) -> None:
    """The weights (with the optimizer's state) go to a new file, then checkpoint.json that names
    it replaces the old one in one rename: a kill at any moment leaves a whole checkpoint."""
    epochs = len(next(iter(history.values())))
    weights = f"epoch-{epochs}.weights.h5"
    directory.mkdir(parents=True, exist_ok=True)
    model.save_weights(directory / weights)
    stage.write_json(directory / "checkpoint.json", {"epochs": epochs, "weights": weights, "history": history})
    for old in directory.glob("epoch-*.weights.h5"):
        if old.name != weights:
            old.unlink()


def load_checkpoint(model: keras.Model, directory: Path) -> tuple[History, int]:
    """The history saved in `directory` and its number of epochs, with the model and its optimizer
    restored to the end of the last one; ({}, 0) if nothing was saved."""
    path = directory / "checkpoint.json"
    if not path.exists():
        return {}, 0
    saved = json.loads(path.read_text())
    model.optimizer.build(model.trainable_variables)  # its variables must exist to be loaded
    model.load_weights(directory / saved["weights"])
    return saved["history"], saved["epochs"]


def train_together(jobs: dict[K, Job], train_one: Callable[[K, Job], T]) -> list[T]:
    """Run train_one on every job at the same time, a thread each; results in finishing order.

    Each job computes exactly what it would alone as long as TensorFlow's thread pool keeps its
    size (one_thread_per_op). On an error or Ctrl-C the other jobs stop at their next step.
    """
    with ThreadPoolExecutor(max(1, len(jobs))) as pool:
        futures = [pool.submit(train_one, key, job) for key, job in jobs.items()]
        try:
            return [finished.result() for finished in as_completed(futures)]
        except BaseException:
            for job in jobs.values():
                job.stop.set()
            raise


class StopWhenSet(keras.callbacks.Callback):
    """Ends training at the next step once the event is set, also if it was set before `fit`
    began (fit resets `model.stop_training` when it starts)."""

    def __init__(self, event: threading.Event):
        super().__init__()
        self.event = event

    def on_train_batch_end(self, batch, logs=None):
        if self.event.is_set():
            self.model.stop_training = True


class ProgressBar(keras.callbacks.Callback):
    """A live bar of one epoch's training steps, for a terminal."""

    def __init__(self, steps: int, description: str):
        super().__init__()
        self.steps, self.description = steps, description

    def on_train_begin(self, logs=None):
        self.bar = tqdm(total=self.steps, desc=self.description, unit="step", leave=False, file=sys.stdout)

    def on_train_batch_end(self, batch, logs=None):
        # Keras calls this once per steps_per_execution steps with the last one's index, which
        # runs past the epoch's end when the steps do not divide evenly
        self.bar.update(min(batch + 1, self.steps) - self.bar.n)

    def on_train_end(self, logs=None):
        self.bar.close()
