"""Reproducible MNIST digit recognition with Keras, DVC and MLflow."""

import contextlib
import os

# Quiet TensorFlow's C++ start-up chatter and pin Keras to TensorFlow before either is imported.
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
os.environ.setdefault("KERAS_BACKEND", "tensorflow")


class PipelineError(Exception):
    """A problem the user can fix, reported as one clear line (or one line per problem)."""

    exit_code = 1


@contextlib.contextmanager
def quiet_native_stderr():
    """Silence what native code writes to file descriptor 2 (Python exceptions still propagate).

    For TensorFlow's import: its C++ start-up lines ("All log messages before absl::InitializeLog()
    ...", the CPU feature and oneDNN notices) come before TF_CPP_MIN_LOG_LEVEL is read on some
    machines, and a stage's output should be its own lines. Also LiteRT's INFO line."""
    saved = os.dup(2)
    try:
        with open(os.devnull, "w") as devnull:
            os.dup2(devnull.fileno(), 2)
            yield
    finally:
        os.dup2(saved, 2)
        os.close(saved)


def not_retracing(record) -> bool:
    """A filter for TensorFlow's logger: its "triggered tf.function retracing" warning, which comes
    by design when several models train or predict in one process (each traces its own step
    functions, but TensorFlow counts traces across models), is not the stage's output."""
    return "triggered tf.function retracing" not in record.getMessage()
