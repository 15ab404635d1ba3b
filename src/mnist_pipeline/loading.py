"""Exported models as predict, serve, export and evaluate read them: a .tflite file through
LiteRT (no TensorFlow), a .keras file through Keras (TensorFlow loads with it, and only then)."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
from ai_edge_litert.interpreter import Interpreter

from . import quiet_native_stderr


def load_keras(path: Path | str):
    """A saved Keras model (TensorFlow is imported here, on the first .keras file, not before)."""
    with quiet_native_stderr():  # TensorFlow's start-up banner (see quiet_native_stderr)
        import keras

    return keras.saving.load_model(path, safe_mode=True)


class LiteRTModel:
    """A .tflite model taking raw 0-255 pixels of shape (N, 28, 28, 1): the probabilities, and the
    digit score where the model has one (the exported models do: `digit_score`, (N, 2))."""

    def __init__(self, path: Path | str, batch_size: int = 256, threads: int | None = None):
        """`threads`: for each batch; None = every core (LiteRT's own default is one)."""
        with quiet_native_stderr():  # LiteRT's C++ prints an INFO line about its CPU delegate
            self.interpreter = Interpreter(model_path=str(path), num_threads=threads or os.cpu_count() or 1)
        self.batch_size = batch_size
        self._input = self.interpreter.get_input_details()[0]["index"]
        # outputs told apart by their width: 10 probabilities, 2 for digit or not
        widths = {int(d["shape"][-1]): d["index"] for d in self.interpreter.get_output_details()}
        self._probabilities, self._digit_score = widths[10], widths.get(2)
        self._allocated_for = None

    def _run(self, batch: np.ndarray) -> tuple[np.ndarray, np.ndarray | None]:
        if self._allocated_for != len(batch):
            self.interpreter.resize_tensor_input(self._input, batch.shape)
            with quiet_native_stderr():
                self.interpreter.allocate_tensors()
            self._allocated_for = len(batch)
        self.interpreter.set_tensor(self._input, batch)
        self.interpreter.invoke()
        score = None if self._digit_score is None else self.interpreter.get_tensor(self._digit_score)[:, 1].copy()
        return self.interpreter.get_tensor(self._probabilities).copy(), score

    def read(self, images: np.ndarray) -> tuple[np.ndarray, np.ndarray | None]:
        """Probabilities (N, 10) and digit scores (N,), or None where the model has no verdict."""
        images = np.asarray(images, dtype=np.float32).reshape(-1, 28, 28, 1)
        if len(images) == 0:
            return np.zeros((0, 10), np.float32), None if self._digit_score is None else np.zeros(0, np.float32)
        parts = [self._run(images[i : i + self.batch_size]) for i in range(0, len(images), self.batch_size)]
        scores = None if self._digit_score is None else np.concatenate([s for _, s in parts])
        return np.concatenate([p for p, _ in parts]), scores

    def predict(self, images: np.ndarray) -> np.ndarray:
        return self.read(images)[0]


class KerasModel:
    """A .keras model with LiteRTModel's read and predict (TensorFlow loads with it)."""

    def __init__(self, path: Path | str):
        self.model = load_keras(path)

    def read(self, images: np.ndarray) -> tuple[np.ndarray, np.ndarray | None]:
        out = self.model.predict(np.asarray(images, np.float32).reshape(-1, 28, 28, 1), batch_size=256, verbose=0)
        if isinstance(out, dict):
            return out["probabilities"], out["digit_score"][:, 1]
        return out, None

    def predict(self, images: np.ndarray) -> np.ndarray:
        return self.read(images)[0]
