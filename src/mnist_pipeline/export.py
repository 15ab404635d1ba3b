"""Export a trained Keras model for serving, and check each export predicts as the original does."""

from __future__ import annotations

from pathlib import Path

import keras
import numpy as np
import tensorflow as tf

from .predict import LiteRTModel

SAVED_MODEL = "saved_model"
TFLITE = "model.tflite"
TUTORIAL_JSON, TUTORIAL_WEIGHTS = "model.json", "model.weights.h5"


def load_keras(path: Path | str) -> keras.Model:
    return keras.saving.load_model(path, safe_mode=True)


def export_all(model: keras.Model, out: Path) -> None:
    """SavedModel with a `serve` signature, TFLite, and the tutorial's JSON + HDF5 weights."""
    model.export(str(out / SAVED_MODEL), format="tf_saved_model", verbose=False)
    converter = tf.lite.TFLiteConverter.from_saved_model(str(out / SAVED_MODEL))
    (out / TFLITE).write_bytes(converter.convert())
    (out / TUTORIAL_JSON).write_text(model.to_json())
    model.save_weights(out / TUTORIAL_WEIGHTS)


def predict_each(out: Path, images: np.ndarray) -> dict[str, np.ndarray]:
    """Probabilities from every export, each loaded back from disk as its users would."""
    x = images.astype(np.float32)
    loaded = tf.saved_model.load(str(out / SAVED_MODEL))  # keep a reference: serve() uses its variables
    saved = np.concatenate([loaded.serve(tf.constant(x[i : i + 1000])).numpy() for i in range(0, len(x), 1000)])
    tutorial = keras.models.model_from_json((out / TUTORIAL_JSON).read_text())
    tutorial.load_weights(out / TUTORIAL_WEIGHTS)
    return {
        "saved_model": saved,
        "tflite": LiteRTModel(out / TFLITE).predict(x),
        "json_h5": tutorial.predict(x, batch_size=1000, verbose=0),
    }


def parity(reference: np.ndarray, other: np.ndarray) -> dict[str, float]:
    return {
        "same_class": float((reference.argmax(1) == other.argmax(1)).mean()),
        "max_probability_diff": float(np.abs(reference - other).max()),
    }
