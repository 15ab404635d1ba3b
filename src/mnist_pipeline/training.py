"""Training shared by crossvalidate and train: datasets, the epoch loop with its checkpoints, and
several models trained side by side. Tracking comes in as a callback."""

from __future__ import annotations

import json
import os
import sys
import threading
import time
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor, as_completed
from dataclasses import dataclass, field
from pathlib import Path
from typing import TypeVar

import numpy as np
from tqdm import tqdm

from . import PipelineError, machine, not_retracing, quiet_native_stderr, stage

with quiet_native_stderr():  # TensorFlow's start-up banner (see quiet_native_stderr)
    import keras
    import tensorflow as tf

from .models import INPUT_SHAPE, NUM_CLASSES, build
from .params import Augment, Distribute, Model

# Several batches per call into TensorFlow: same batches and maths, far less Python per step.
STEPS_PER_EXECUTION = 16
# Large enough to be fast; small enough that five folds validating at once hold little memory.
VALIDATION_BATCH = 250
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


def gpu_capability() -> tuple[int, int] | None:
    """The compute capability of this machine's first GPU, None without one."""
    gpus = tf.config.list_physical_devices("GPU")
    return tf.config.experimental.get_device_details(gpus[0]).get("compute_capability", (0, 0)) if gpus else None


def native_bfloat16() -> str | None:
    """What computes bfloat16 natively here: a GPU from Ampere on (compute capability 8.0), or a
    CPU flag (x86's avx512_bf16 or AMX, Arm's bf16); None where bfloat16 would be emulated,
    several times slower than float32."""
    if (gpu_capability() or (0, 0)) >= (8, 0):
        return "a GPU"
    flag = machine.bfloat16_flag()
    return f"the CPU's {flag}" if flag else None


def set_precision(requested: str) -> str:
    """Set Keras's dtype policy for the models built next (distribute.precision) and return it.
    `auto`: mixed_bfloat16 where bfloat16 is native (native_bfloat16), else float32. A mixed
    policy the hardware cannot run fast is one clear error before any training starts."""
    native = None if requested == "float32" else native_bfloat16()
    if requested == "auto":
        policy = "mixed_bfloat16" if native else "float32"
        print(f"precision: auto -> {policy} ({native or 'no GPU and no native bfloat16 in this CPU'})", flush=True)
    else:
        policy = requested
        needs = {
            "mixed_bfloat16": (native is not None, "a GPU (compute capability 8.0 or more) or a CPU with avx512_bf16, AMX or Arm's bf16"),
            "mixed_float16": ((gpu_capability() or (0, 0)) >= (7, 0), "a GPU (compute capability 7.0 or more)"),
        }
        if policy in needs and not needs[policy][0]:
            raise PipelineError(
                f"distribute.precision: {policy} needs {needs[policy][1]}; this machine has none, and would emulate it "
                "several times slower than float32: use float32 or auto"
            )
    keras.config.set_dtype_policy(policy)
    return policy


def distribution(params: Distribute) -> tf.distribute.Strategy:
    """The tf.distribute strategy `params` names. Call it before TensorFlow runs anything: it may
    split the CPU into logical devices, and a multi-worker strategy must start before any op.

    `none` is TensorFlow's default strategy, under which Keras trains exactly as without one. The
    others keep the params' batch size as the global batch: each step, every replica computes the
    gradient of its share (batch_size / replicas) and the all-reduced sum updates every copy of the
    weights, so the learning rate means what it means on one device.
    """
    if params.strategy == "none":
        return tf.distribute.get_strategy()
    if params.strategy == "mirrored":
        cpus = [int(d.rsplit(":", 1)[1]) for d in params.devices if "cpu" in d.lower()]
        if cpus and max(cpus) > 0:  # e.g. two logical CPUs to try mirrored without a GPU
            tf.config.set_logical_device_configuration(
                tf.config.list_physical_devices("CPU")[0], [tf.config.LogicalDeviceConfiguration()] * (max(cpus) + 1)
            )

        def short(name: str) -> str:  # "/job:localhost/replica:0/task:0/device:GPU:0", "/gpu:0" -> "gpu:0"
            return name.lower().rsplit("device:", 1)[-1].lstrip("/")

        here = [short(d.name) for d in tf.config.list_logical_devices()]
        missing = [d for d in params.devices if short(d) not in here]
        if missing:
            raise PipelineError(f"distribute.devices: {', '.join(missing)} not on this machine; it has {', '.join(here)}")
        return tf.distribute.MirroredStrategy(list(params.devices) or None)
    if not os.environ.get("TF_CONFIG"):
        raise PipelineError(
            "distribute.strategy is multi_worker but TF_CONFIG is not set: set it on every machine to "
            "the cluster and that machine's task (README: Several devices and machines)"
        )
    return _MultiWorkerMirroredStrategy()


class _MultiWorkerMirroredStrategy(tf.distribute.MultiWorkerMirroredStrategy):
    """MultiWorkerMirroredStrategy with two gaps of Keras 3's fit closed (keras-team/keras#20585):
    Keras reduces each scalar metric with axis=0 and a sample (uint8 images, labels) batch as one
    structure, and the collective reduce takes neither scalars with an axis nor uint8."""

    def reduce(self, reduce_op, value, axis):
        def reduce_one(v):
            local = self.experimental_local_results(v)[0]
            one_axis = None if local.shape.rank == 0 else axis
            if local.dtype.is_integer and local.dtype.size < 4:
                wide = self.run(tf.function(lambda t: tf.cast(t, tf.int32)), args=(v,))
                return tf.cast(super(_MultiWorkerMirroredStrategy, self).reduce(reduce_op, wide, one_axis), local.dtype)
            return super(_MultiWorkerMirroredStrategy, self).reduce(reduce_op, v, one_axis)

        return tf.nest.map_structure(reduce_one, value)


def is_chief(strategy: tf.distribute.Strategy) -> bool:
    """Whether this process writes the outputs and logs to MLflow: always, but on the other
    workers of a multi-worker cluster."""
    resolver = getattr(strategy, "cluster_resolver", None)
    if not isinstance(strategy, tf.distribute.MultiWorkerMirroredStrategy) or resolver is None:
        return True
    has_chief = "chief" in resolver.cluster_spec().as_dict()
    return resolver.task_type == "chief" or (not has_chief and resolver.task_type == "worker" and resolver.task_id == 0)


def wait_for_all(strategy: tf.distribute.Strategy) -> None:
    """Under multi_worker, return once every worker has got here (a one-number all-reduce): a
    worker that exits while the chief still saves is reported as crashed by TensorFlow."""
    if isinstance(strategy, tf.distribute.MultiWorkerMirroredStrategy):
        strategy.reduce("SUM", strategy.run(tf.function(lambda: tf.constant(1))), axis=None)


def off_strategy(model: keras.Model) -> keras.Model:
    """The model as a plain one outside any strategy, to predict with in this process alone: under
    multi_worker, the trained model's predict is a collective step that waits for the other workers."""
    if not isinstance(model.distribute_strategy, tf.distribute.MultiWorkerMirroredStrategy):
        return model
    copy = keras.models.clone_model(model)
    copy.set_weights(model.get_weights())
    return copy


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


Examples = tuple[tf.Tensor, tf.Tensor]  # uint8 images (N, 28, 28, 1) and labels (N,)


def to_tensors(images: np.ndarray, labels: np.ndarray) -> Examples:
    """The examples as tensors, once: jobs prepared from them share this one copy."""
    return tf.constant(images), tf.constant(labels)


def distortions(augment: Augment, n: int, rng: np.random.Generator) -> np.ndarray:
    """n random rotations, zooms and shifts about the image centre, as the (n, 8) transforms of
    tf.raw_ops.ImageProjectiveTransformV3: each maps an output pixel (x, y) to the input pixel it
    reads, input = R(-angle) / zoom * (output - centre - shift) + centre."""
    height, width = INPUT_SHAPE[:2]
    angle = np.deg2rad(rng.uniform(-augment.rotation, augment.rotation, n))
    zoom = 1 + rng.uniform(-augment.zoom, augment.zoom, n)
    dx, dy = rng.uniform(-augment.shift, augment.shift, (2, n)) * np.array([[width], [height]])
    cx, cy = (width - 1) / 2, (height - 1) / 2
    a0, a1 = np.cos(angle) / zoom, np.sin(angle) / zoom
    b0, b1 = -a1, a0
    a2 = cx - a0 * (cx + dx) - a1 * (cy + dy)
    b2 = cy - b0 * (cx + dx) - b1 * (cy + dy)
    zeros = np.zeros(n)
    return np.stack([a0, a1, a2, b0, b1, b2, zeros, zeros], axis=1).astype(np.float32)


def distort(images: tf.Tensor, transforms: tf.Tensor) -> tf.Tensor:
    """Apply distortions() to a batch of uint8 images (bilinear, black outside the image)."""
    return tf.raw_ops.ImageProjectiveTransformV3(
        images=images, transforms=transforms, output_shape=INPUT_SHAPE[:2], fill_value=0.0, interpolation="BILINEAR", fill_mode="CONSTANT"
    )


def dataset(
    examples: Examples,
    index: np.ndarray,
    batch_size: int,
    shuffle_seed: Sequence[int] | None,
    augment: Augment | None = None,
    label_smoothing: float | None = None,
) -> tf.data.Dataset:
    """Batches of the examples at `index`, in an order drawn from `shuffle_seed` if given, each
    image distorted as `augment` says (with distortions drawn from the same seed). The labels are
    the digits, or with a `label_smoothing` (0 too) one-hot targets smoothed by it.

    Only the indices are shuffled; each batch is gathered from the shared tensors, so five folds
    hold one copy of the images, not five. The images stay uint8: the model's first layer casts
    and scales them.

    tf.data's autotuner is off on purpose: its background thread sleeps 10 ms, 20 ms, ... up to
    10.24 s, and destroying an iterator (Keras makes one per epoch) waits for it to wake, so every
    epoch ended with a stall of up to 10 s. Gathering uint8 batches is cheap, so one private thread
    and a one-batch prefetch keep the training threads fed without competing for the cores.
    """
    images, labels = examples
    options = tf.data.Options()
    options.autotune.enabled = False
    options.threading.private_threadpool_size = 1
    # Under a strategy each replica gets its share of every batch; across workers, its share of the
    # batches' elements (each worker holds all the data, so nothing is read twice).
    options.experimental_distribute.auto_shard_policy = tf.data.experimental.AutoShardPolicy.DATA
    slices = index
    if shuffle_seed is not None:
        rng = np.random.default_rng(list(shuffle_seed))
        slices = rng.permutation(index)
        if augment is not None and augment.active:
            slices = (slices, distortions(augment, len(slices), rng))

    def targets(i):
        digits = tf.gather(labels, i)
        if label_smoothing is None:
            return digits
        return tf.one_hot(tf.cast(digits, tf.int32), NUM_CLASSES) * (1 - label_smoothing) + label_smoothing / NUM_CLASSES

    if isinstance(slices, tuple):

        def gather(i, transforms):
            return distort(tf.gather(images, i), transforms), targets(i)
    else:

        def gather(i):
            return tf.gather(images, i), targets(i)

    return tf.data.Dataset.from_tensor_slices(slices).batch(batch_size).map(gather).prefetch(1).with_options(options)


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


def one_thread_per_op() -> None:
    """Run every TensorFlow op on one thread; for training several models side by side.

    At batch 32 one model spreading each small op over all cores leaves them idle between ops;
    models trained side by side, each op on one thread, keep them busy (bench/results.json, 2 cores:
    five folds at once, 1.10x the images/s of one model at batch 32). It also makes each model's
    numbers independent of the core count and of what trains beside it. Call it before TensorFlow
    runs anything.
    """
    tf.config.threading.set_intra_op_parallelism_threads(1)


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
