"""Reproducible MNIST digit recognition with Keras, DVC and MLflow."""

import contextlib
import errno
import os

# Quiet TensorFlow's C++ start-up chatter and pin Keras to TensorFlow before either is imported.
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
os.environ.setdefault("KERAS_BACKEND", "tensorflow")


class PipelineError(Exception):
    """A problem the user can fix, reported as one clear line (or one line per problem)."""

    exit_code = 1


# The machine's faults in writing a file, in words: a full disk, a limit, a path that cannot be written.
WRITE_FAULTS = {
    errno.ENOSPC: "no space left on the device",
    errno.EDQUOT: "disk quota exceeded",
    errno.EFBIG: "file too large for the file system or this process's file-size limit",
    errno.EROFS: "read-only file system",
    errno.EACCES: "permission denied",
    errno.EPERM: "operation not permitted",
}


def write_fault(exc: BaseException | None) -> str | None:
    """What went wrong in words, when `exc` or what caused it is one of WRITE_FAULTS; else None."""
    while exc is not None:
        if isinstance(exc, OSError) and exc.errno in WRITE_FAULTS:
            return WRITE_FAULTS[exc.errno]
        if isinstance(exc, OSError) and exc.errno is None and ("Not enough free space" in str(exc) or " written" in str(exc)):
            return WRITE_FAULTS[errno.ENOSPC]  # numpy's words for a full disk ("N requested and M written"), without an errno
        exc = exc.__cause__ or exc.__context__
    return None


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
