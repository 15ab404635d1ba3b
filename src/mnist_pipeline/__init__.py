"""Reproducible MNIST digit recognition with Keras, DVC and MLflow."""

import os

# Quiet TensorFlow's C++ start-up chatter and pin Keras to TensorFlow before either is imported.
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
os.environ.setdefault("KERAS_BACKEND", "tensorflow")


class PipelineError(Exception):
    """A problem the user can fix, reported as one clear line (or one line per problem)."""

    exit_code = 1
