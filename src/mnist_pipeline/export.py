"""Export trained Keras models for serving, and check each export predicts as the original does."""

from __future__ import annotations

import tempfile
from pathlib import Path

import numpy as np

from . import not_retracing, quiet_native_stderr

with quiet_native_stderr():  # TensorFlow's start-up banner (see quiet_native_stderr)
    import keras
    import tensorflow as tf
tf.get_logger().addFilter(not_retracing)  # evaluate predicts with six models in one process

from .loading import LiteRTModel  # noqa: E402 (after TensorFlow's banner is silenced)

SAVED_MODEL = "saved_model"
TUTORIAL_JSON, TUTORIAL_WEIGHTS = "model.json", "model.weights.h5"


def to_tflite(model: keras.Model, path: Path, saved_model: Path | None = None, weights: str = "float32") -> None:
    """Convert through a SavedModel with a `serve` signature, kept at `saved_model` if given.
    `weights="int8"`: LiteRT's dynamic-range quantization, weights stored as int8 and the
    activations quantized on the fly: a quarter of the size; how much faster depends on the CPU
    (bench/predict_models.py measures it)."""
    with tempfile.TemporaryDirectory() as scratch:
        directory = saved_model or Path(scratch) / SAVED_MODEL
        model.export(str(directory), format="tf_saved_model", verbose=False)
        converter = tf.lite.TFLiteConverter.from_saved_model(str(directory))
        if weights == "int8":
            converter.optimizations = [tf.lite.Optimize.DEFAULT]
        path.write_bytes(converter.convert())


def export_tutorial_files(model: keras.Model, out: Path) -> None:
    """The tutorial's model.json + HDF5 weights."""
    (out / TUTORIAL_JSON).write_text(model.to_json())
    model.save_weights(out / TUTORIAL_WEIGHTS)


def predict_saved_model(directory: Path, images: np.ndarray) -> np.ndarray:
    loaded = tf.saved_model.load(str(directory))  # keep a reference: serve() uses its variables
    return np.concatenate([loaded.serve(tf.constant(images[i : i + 1000])).numpy() for i in range(0, len(images), 1000)])


def predict_tutorial_files(out: Path, images: np.ndarray) -> np.ndarray:
    tutorial = keras.models.model_from_json((out / TUTORIAL_JSON).read_text())
    tutorial.load_weights(out / TUTORIAL_WEIGHTS)
    return tutorial.predict(images, batch_size=250, verbose=0)


def predict_tflite(path: Path, images: np.ndarray) -> np.ndarray:
    return LiteRTModel(path).predict(images)


def parity(reference: np.ndarray, other: np.ndarray) -> dict[str, float]:
    return {
        "same_class": float((reference.argmax(1) == other.argmax(1)).mean()),
        "max_probability_diff": float(np.abs(reference - other).max()),
    }


def verdict_parity(keras_model: keras.Model, tflite: Path, images: np.ndarray) -> dict[str, float]:
    """A served model's TFLite file against its Keras model: the class, the probabilities, and
    the verdict (digit or not) on the same images."""
    reference = keras_model.predict(images, batch_size=250, verbose=0)
    probabilities, scores = LiteRTModel(tflite).read(images)
    return parity(reference["probabilities"], probabilities) | {
        "same_verdict": float(((reference["digit_score"][:, 1] >= 0.5) == (scores >= 0.5)).mean()),
        "max_digit_score_diff": float(np.abs(reference["digit_score"][:, 1] - scores).max()),
    }
