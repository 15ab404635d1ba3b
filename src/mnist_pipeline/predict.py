"""Read the digits in people's images: the prediction record, loading an exported model, and
batches through a process pool. No TensorFlow import for .tflite models: prediction starts fast."""

from __future__ import annotations

import multiprocessing
import os
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from PIL import Image

from . import PipelineError, imaging
from .loading import KerasModel, LiteRTModel

DEFAULT_MODEL = Path("models/export/model.tflite")
MODEL_TYPES = (".tflite", ".keras")
PARALLEL_FROM = 200  # images; below this a process pool costs more than it saves
UNSURE_FROM = 0.2  # the second most likely digit at least this likely: the answer is unsure between the two


class UsageError(PipelineError):
    exit_code = 2


@dataclass
class Prediction:
    """One image's answer: the closest digit and its (calibrated) confidence, and whether it is a
    digit at all (None for a model without the verdict, such as a bare classifier)."""

    path: str
    probabilities: list[float] = field(default_factory=list)
    digit_score: float | None = None  # >= 0.5: a digit (the threshold is inside the exported model)
    error: str | None = None

    @property
    def digit(self) -> int:
        return int(np.argmax(self.probabilities))

    @property
    def is_digit(self) -> bool | None:
        return None if self.digit_score is None else self.digit_score >= 0.5

    @property
    def unsure_between(self) -> list[int] | None:
        first, second = (int(d) for d in np.argsort(self.probabilities)[::-1][:2])
        return [first, second] if self.probabilities[second] >= UNSURE_FROM else None

    def as_json(self) -> dict:
        if self.error:
            return {"path": self.path, "error": self.error}
        return {
            "path": self.path,
            "answer": self.answer,
            "is_digit": self.is_digit,
            "digit_score": self.digit_score,
            "digit": self.digit,
            "confidence": self.probabilities[self.digit],
            "unsure_between": self.unsure_between,
            "probabilities": self.probabilities,
        }

    @property
    def answer(self) -> str:
        """In words: `7`, `not a digit (closest: 4)`, `unsure: 4 or 9`."""
        if self.is_digit is False:
            return f"not a digit (closest: {self.digit})"
        if self.unsure_between:
            return "unsure: {} or {}".format(*self.unsure_between)
        return str(self.digit)


def check_model_path(path: Path) -> None:
    if path.suffix not in MODEL_TYPES:
        raise UsageError(f"--model {path}: unknown model type {path.suffix or '(none)'}; allowed: {', '.join(MODEL_TYPES)}")
    if not path.is_file():
        hint = " (run `dvc repro` to build it, or pass --model)" if path == DEFAULT_MODEL else ""
        raise UsageError(f"--model {path}: no such file{hint}")


def load_model(path: Path) -> LiteRTModel | KerasModel:
    check_model_path(path)
    if path.suffix == ".tflite":
        try:
            return LiteRTModel(path)
        except (ValueError, RuntimeError, KeyError) as exc:
            raise UsageError(f"--model {path}: not a valid TFLite model ({exc})") from None
    try:
        return KerasModel(path)
    except Exception as exc:  # Keras raises many types for a bad file; all mean the same to the user
        raise UsageError(f"--model {path}: not a loadable Keras model ({exc})") from None


def load_served_model(path: Path) -> LiteRTModel:
    """The LiteRT model `serve` runs (.tflite only: no TensorFlow), or a UsageError."""
    check_model_path(path)
    if path.suffix != ".tflite":
        raise UsageError(f"--model {path}: serve runs .tflite models (LiteRT, no TensorFlow); export one with `dvc repro`")
    try:
        return LiteRTModel(path, batch_size=1, threads=1)  # one image: threads would only wait on each other
    except (ValueError, RuntimeError, KeyError) as exc:
        raise UsageError(f"--model {path}: not a valid TFLite model ({exc})") from None


def find_images(paths: list[str]) -> list[Path]:
    """Files as given; directories searched recursively for files with an image extension Pillow knows."""
    extensions = set(Image.registered_extensions())
    found = []
    for raw in paths:
        path = Path(raw)
        if path.is_dir():
            found += sorted(p for p in path.rglob("*") if p.is_file() and p.suffix.lower() in extensions)
        else:
            found.append(path)
    return found


def _prepare(path: Path) -> np.ndarray | str:
    """The 28x28 array for one image, or the reason it failed. Nothing one file does, however
    broken or hostile, may cost the other images their answers."""
    try:
        return imaging.to_mnist(imaging.open_image(path))
    except imaging.ImageError as exc:
        return str(exc)
    except Exception as exc:  # a decoder's own bug or limit on a crafted file: still one file's error
        return f"cannot read ({type(exc).__name__}: {exc})"


def preprocess(paths: list[Path]) -> list[np.ndarray | str]:
    """Each image as the 28x28 array the model sees, or the reason it failed.

    Call it before a model is loaded: the process pool forks, which is only safe
    before TensorFlow or LiteRT start their threads."""
    if len(paths) >= PARALLEL_FROM and (os.cpu_count() or 1) > 1:
        with multiprocessing.get_context("fork").Pool() as pool:  # decoding is CPU-bound Python
            return pool.map(_prepare, paths, chunksize=64)
    return [_prepare(path) for path in paths]


def predict(paths: list[Path], prepared: list[np.ndarray | str], model) -> list[Prediction]:
    """One Prediction a path, from the arrays `preprocess` made, in one call of the model."""
    results = [Prediction(str(path), error=p if isinstance(p, str) else None) for path, p in zip(paths, prepared, strict=False)]
    ok = [i for i, p in enumerate(prepared) if not isinstance(p, str)]
    if ok:
        probabilities, scores = model.read(np.stack([prepared[i] for i in ok])[..., np.newaxis])
        for n, i in enumerate(ok):
            results[i].probabilities = [round(float(v), 6) for v in probabilities[n]]
            results[i].digit_score = None if scores is None else round(float(scores[n]), 6)
    return results
