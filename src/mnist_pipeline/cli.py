"""`mnist-pipeline predict ...`: read the digits in people's own images."""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import sys
from pathlib import Path

import numpy as np
from PIL import Image

from . import PipelineError, write_fault
from .predict import (
    DEFAULT_MODEL,
    Prediction,
    UsageError,
    check_model_path,
    find_images,
    load_model,
    load_served_model,
    predict,
    preprocess,
)


def save_debug_images(directory: Path, paths: list[Path], prepared: list[np.ndarray | str]) -> list[str]:
    """Write what the model saw; returns one line for each image that could not be written (a full
    disk, an unwritable directory): the answers do not depend on it."""
    failed = []
    for i, (path, array) in enumerate(zip(paths, prepared, strict=False)):
        if isinstance(array, str):
            continue
        target = directory / f"{i:04d}-{path.stem}.png"
        try:
            directory.mkdir(parents=True, exist_ok=True)
            Image.fromarray(array).save(target)
        except OSError as exc:
            with contextlib.suppress(OSError):
                target.unlink(missing_ok=True)  # nothing half-written
            failed.append(f"{target} ({write_fault(exc) or exc})")
    return failed


def _table(results: list[Prediction], top_k: int) -> str:
    width = max([len(r.path) for r in results] + [4])
    answers = [r.answer if not r.error else "" for r in results]
    answer_width = max([len(a) for a in answers] + [6])
    lines = [f"{'file':<{width}}  {'answer':<{answer_width}}  confidence  top {top_k}"]
    for r, answer in zip(results, answers, strict=False):
        if r.error:
            lines.append(f"{r.path:<{width}}  error: {r.error}")
            continue
        order = np.argsort(r.probabilities)[::-1][:top_k]
        top = "  ".join(f"{d}:{r.probabilities[d]:.3f}" for d in order)
        lines.append(f"{r.path:<{width}}  {answer:<{answer_width}}  {r.probabilities[order[0]]:>10.2%}  {top}")
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
    u = commands.add_parser("ui", help="the MLflow UI on the project's runs (mlflow ui on its store)")
    u.add_argument("--port", type=int, default=5000, help="port (default: 5000); the UI listens on 127.0.0.1")
    args = parser.parse_args(argv)
    if args.command == "serve":
        return serve(args)
    if args.command == "ui":
        return ui(args)

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
    unsaved = save_debug_images(args.debug_dir, paths, prepared) if args.debug_dir is not None else []
    results = predict(paths, prepared, model)
    try:
        print(json.dumps([r.as_json() for r in results], indent=1) if args.json else _table(results, args.top_k), flush=True)
    except OSError as exc:  # standard output on a full disk
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())  # else Python's exit flushes it again, with a traceback
        print(f"mnist-pipeline: error: cannot write the answers to standard output: {write_fault(exc) or exc}", file=sys.stderr)
        return 1
    for r in results:
        if r.error:
            print(f"mnist-pipeline: {r.path}: {r.error}", file=sys.stderr)
    if unsaved:
        print(
            f"mnist-pipeline: warning: {len(unsaved)} of {len(paths)} debug images not written to {args.debug_dir}, "
            f"the first {unsaved[0]}; the answers above are complete",
            file=sys.stderr,
        )
    return 1 if unsaved or any(r.error for r in results) else 0


def serve(args: argparse.Namespace) -> int:
    import uvicorn

    from .serve import SERVE_MODEL_ENV

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
        uvicorn.run(
            app, host=args.host, port=args.port, workers=args.workers, factory=args.workers > 1, log_level="warning", access_log=False
        )
    except SystemExit as exc:  # uvicorn exits 1 when it cannot listen (port taken); it has said why
        return int(exc.code or 1)
    return 0


def ui(args: argparse.Namespace, timeout: float = 120) -> int:
    """`mlflow ui` on the project's store, and the address of the experiment's training runs: a
    fresh browser would open on the GenAI overview."""
    import signal
    import subprocess
    import time
    import urllib.error
    import urllib.request

    from .tracking import EXPERIMENT, tracking_uri  # MLflow: only for this command

    try:
        store = tracking_uri()
    except PipelineError as exc:  # outside the repository
        print(f"mnist-pipeline: error: {exc}", file=sys.stderr)
        return exc.exit_code
    if store.startswith("sqlite:///") and not Path(store.removeprefix("sqlite:///")).is_file():  # mlflow would create it
        print(f"mnist-pipeline: error: no MLflow store at {store} yet: run `dvc repro` first", file=sys.stderr)
        return 1
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(0))  # so that `finally` stops the server too
    base = f"http://127.0.0.1:{args.port}"
    mlflow_cli = Path(sys.executable).with_name("mlflow")
    server = subprocess.Popen(
        [str(mlflow_cli), "ui", "--backend-store-uri", store, "--host", "127.0.0.1", "--port", str(args.port)], stdout=sys.stderr
    )  # stdout: only the address
    try:
        deadline = time.monotonic() + timeout
        while True:
            try:
                with urllib.request.urlopen(
                    f"{base}/api/2.0/mlflow/experiments/get-by-name?experiment_name={EXPERIMENT}", timeout=5
                ) as response:
                    experiment_id = json.loads(response.read())["experiment"]["experiment_id"]
                break
            except urllib.error.HTTPError:  # the server answers, but the store has no runs of this project yet
                print(f"mnist-pipeline: error: no MLflow experiment {EXPERIMENT} in {store}: run `dvc repro` first", file=sys.stderr)
                return 1
            except OSError:
                if server.poll() is not None or time.monotonic() > deadline:
                    print(f"mnist-pipeline: error: mlflow ui did not answer at {base}", file=sys.stderr)
                    return 1
                time.sleep(0.5)
        print(
            f"MLflow UI, the pipeline's runs: {base}/#/experiments/{experiment_id}/runs?workflowType=machine_learning (Ctrl-C stops)",
            flush=True,
        )
        server.wait()
        return 0
    except KeyboardInterrupt:
        return 0
    finally:
        if server.poll() is None:
            server.terminate()
            server.wait()


def entry_point() -> None:
    sys.exit(main())


if __name__ == "__main__":
    entry_point()
