"""Run an exported TFLite model with LiteRT. No TensorFlow import: prediction starts fast."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
from ai_edge_litert.interpreter import Interpreter

from . import quiet_native_stderr


class LiteRTModel:
    """A .tflite classifier taking raw 0-255 pixels of shape (N, 28, 28, 1), returning probabilities."""

    def __init__(self, path: Path | str, batch_size: int = 256, threads: int | None = None):
        """`threads`: for each batch; None = every core (LiteRT's own default is one)."""
        with quiet_native_stderr():  # LiteRT's C++ prints an INFO line about its CPU delegate
            self.interpreter = Interpreter(model_path=str(path), num_threads=threads or os.cpu_count() or 1)
        self.batch_size = batch_size
        self._input = self.interpreter.get_input_details()[0]["index"]
        self._output = self.interpreter.get_output_details()[0]["index"]
        self._allocated_for = None

    def _run(self, batch: np.ndarray) -> np.ndarray:
        if self._allocated_for != len(batch):
            self.interpreter.resize_tensor_input(self._input, batch.shape)
            with quiet_native_stderr():
                self.interpreter.allocate_tensors()
            self._allocated_for = len(batch)
        self.interpreter.set_tensor(self._input, batch)
        self.interpreter.invoke()
        return self.interpreter.get_tensor(self._output).copy()

    def predict(self, images: np.ndarray) -> np.ndarray:
        images = np.asarray(images, dtype=np.float32).reshape(-1, 28, 28, 1)
        if len(images) == 0:
            return np.zeros((0, 10), np.float32)
        return np.concatenate([self._run(images[i : i + self.batch_size]) for i in range(0, len(images), self.batch_size)])
