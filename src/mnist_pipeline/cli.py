"""`mnist-pipeline predict ...`: read the digits in people's own images."""

from __future__ import annotations

import argparse
import json
import multiprocessing
import os
import sys
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from PIL import Image

from . import PipelineError, imaging

DEFAULT_MODEL = Path("models/export/model.tflite")
MODEL_TYPES = (".tflite", ".keras")
SERVE_MODEL_ENV = "MNIST_PIPELINE_MODEL"  # how `serve --workers N` names the model to each worker process
PARALLEL_FROM = 200  # images; below this a process pool costs more than it saves


@dataclass
class Prediction:
    path: str
    probabilities: list[float] = field(default_factory=list)
    error: str | None = None

    def as_json(self) -> dict:
        if self.error:
            return {"path": self.path, "error": self.error}
        digit = int(np.argmax(self.probabilities))
        return {"path": self.path, "digit": digit, "confidence": self.probabilities[digit], "probabilities": self.probabilities}


class UsageError(PipelineError):
    exit_code = 2


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


def check_model_path(path: Path) -> None:
    if path.suffix not in MODEL_TYPES:
        raise UsageError(f"--model {path}: unknown model type {path.suffix or '(none)'}; allowed: {', '.join(MODEL_TYPES)}")
    if not path.is_file():
        hint = " (run `dvc repro` to build it, or pass --model)" if path == DEFAULT_MODEL else ""
        raise UsageError(f"--model {path}: no such file{hint}")


def load_model(path: Path):
    """An object with .predict(images (N, 28, 28, 1) raw pixels) -> probabilities (N, 10)."""
    check_model_path(path)
    if path.suffix == ".tflite":
        from .predict import LiteRTModel

        try:
            return LiteRTModel(path)
        except (ValueError, RuntimeError) as exc:
            raise UsageError(f"--model {path}: not a valid TFLite model ({exc})") from None
    from .export import load_keras  # TensorFlow only when a Keras model is asked for

    try:
        model = load_keras(path)
    except Exception as exc:  # Keras raises many types for a bad file; all mean the same to the user
        raise UsageError(f"--model {path}: not a loadable Keras model ({exc})") from None

    class KerasModel:
        def predict(self, images):
            return model.predict(np.asarray(images, np.float32), batch_size=256, verbose=0)

    return KerasModel()


def load_served_model(path: Path):
    """The LiteRT model `serve` runs (.tflite only: no TensorFlow), or a UsageError."""
    check_model_path(path)
    if path.suffix != ".tflite":
        raise UsageError(f"--model {path}: serve runs .tflite models (LiteRT, no TensorFlow); export one with `dvc repro`")
    from .predict import LiteRTModel

    try:
        return LiteRTModel(path, batch_size=1, threads=1)  # one image: threads would only wait on each other
    except (ValueError, RuntimeError) as exc:
        raise UsageError(f"--model {path}: not a valid TFLite model ({exc})") from None


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
    results = [Prediction(str(path), error=p if isinstance(p, str) else None) for path, p in zip(paths, prepared)]
    ok = [i for i, p in enumerate(prepared) if not isinstance(p, str)]
    if ok:
        probabilities = model.predict(np.stack([prepared[i] for i in ok])[..., np.newaxis])
        for i, p in zip(ok, probabilities):
            results[i].probabilities = [round(float(v), 6) for v in p]
    return results


def save_debug_images(directory: Path, paths: list[Path], prepared: list[np.ndarray | str]) -> None:
    directory.mkdir(parents=True, exist_ok=True)
    for i, (path, array) in enumerate(zip(paths, prepared)):
        if not isinstance(array, str):
            Image.fromarray(array).save(directory / f"{i:04d}-{path.stem}.png")


def _table(results: list[Prediction], top_k: int) -> str:
    width = max([len(r.path) for r in results] + [4])
    lines = [f"{'file':<{width}}  digit  confidence  top {top_k}"]
    for r in results:
        if r.error:
            lines.append(f"{r.path:<{width}}  error: {r.error}")
            continue
        order = np.argsort(r.probabilities)[::-1][:top_k]
        top = "  ".join(f"{d}:{r.probabilities[d]:.3f}" for d in order)
        lines.append(f"{r.path:<{width}}  {order[0]:>5}  {r.probabilities[order[0]]:>10.2%}  {top}")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="mnist-pipeline", description=__doc__)
    commands = parser.add_subparsers(dest="command", required=True)
    p = commands.add_parser("predict", help="predict the digit in each image")
    p.add_argument("inputs", nargs="+", help="image files or directories (searched recursively)")
    p.add_argument("--model", type=Path, default=DEFAULT_MODEL, help=f"a .tflite or .keras model (default: {DEFAULT_MODEL})")
    p.add_argument("--top-k", type=int, default=3, choices=range(1, 11), metavar="K", help="how many candidates to show (1-10)")
    p.add_argument("--json", action="store_true", help="print a JSON array, one object per image")
    p.add_argument("--debug-dir", type=Path, help="write the 28x28 image the model saw for each input here")
    s = commands.add_parser("serve", help="a draw-a-digit page and a JSON API (POST /predict, GET /health)")
    s.add_argument("--model", type=Path, default=DEFAULT_MODEL, help=f"a .tflite model (default: {DEFAULT_MODEL})")
    s.add_argument("--host", default="127.0.0.1", help="address to listen on (default: 127.0.0.1, this machine only)")
    s.add_argument("--port", type=int, default=8000, help="port (default: 8000)")
    s.add_argument("--workers", type=int, default=1, choices=range(1, 65), metavar="N", help="server processes (1-64, default 1)")
    args = parser.parse_args(argv)
    if args.command == "serve":
        return serve(args)

    try:
        paths = find_images(args.inputs)
        if not paths:
            raise UsageError(f"no images found in {' '.join(args.inputs)}")
        check_model_path(args.model)
        prepared = preprocess(paths)
        model = load_model(args.model)
    except PipelineError as exc:
        print(f"mnist-pipeline: error: {exc}", file=sys.stderr)
        return exc.exit_code
    if args.debug_dir is not None:
        save_debug_images(args.debug_dir, paths, prepared)
    results = predict(paths, prepared, model)
    if args.json:
        print(json.dumps([r.as_json() for r in results], indent=1))
    else:
        print(_table(results, args.top_k))
    for r in results:
        if r.error:
            print(f"mnist-pipeline: {r.path}: {r.error}", file=sys.stderr)
    return 1 if any(r.error for r in results) else 0


def serve(args: argparse.Namespace) -> int:
    import uvicorn

    try:  # the model is checked before anything listens
        if args.workers > 1:  # each worker process builds the app and loads the model itself
            load_served_model(args.model)
            os.environ[SERVE_MODEL_ENV] = str(args.model)
            app = "mnist_pipeline.serve:app_from_environment"
        else:
            from .serve import create_app

            app = create_app(args.model)
    except PipelineError as exc:
        print(f"mnist-pipeline: error: {exc}", file=sys.stderr)
        return exc.exit_code
    print(f"serving {args.model} at http://{args.host}:{args.port}/ (Ctrl-C stops)", flush=True)
    try:
        uvicorn.run(app, host=args.host, port=args.port, workers=args.workers, factory=args.workers > 1,
                    log_level="warning", access_log=False)
    except SystemExit as exc:  # uvicorn exits 1 when it cannot listen (port taken); it has said why
        return int(exc.code or 1)
    return 0


def entry_point() -> None:
    sys.exit(main())


if __name__ == "__main__":
    entry_point()
