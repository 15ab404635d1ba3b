"""Where and in what precision the models train: Keras's dtype policy from what the hardware
computes natively, tf.distribute's strategies (one device, mirrored, several machines) with the
chief that writes, and TensorFlow's threading for models trained side by side."""

from __future__ import annotations

import os

from . import PipelineError, machine, quiet_native_stderr

with quiet_native_stderr():  # TensorFlow's start-up banner (see quiet_native_stderr)
    import keras
    import tensorflow as tf

from .params import Distribute


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


def one_thread_per_op() -> None:
    """Run every TensorFlow op on one thread; for training several models side by side.

    At batch 32 one model spreading each small op over all cores leaves them idle between ops;
    models trained side by side, each op on one thread, keep them busy (bench/results.json, 2 cores:
    five folds at once, 1.10x the images/s of one model at batch 32). It also makes each model's
    numbers independent of the core count and of what trains beside it. Call it before TensorFlow
    runs anything.
    """
    tf.config.threading.set_intra_op_parallelism_threads(1)
