"""Benchmark `mnist-pipeline predict` with different model files side by side: the wall time of
the whole command over a directory of 1,000 PNG digits and on one image, median of --repeats
runs, the models taking turns so that the machine's drift falls on each alike. Writes
bench/predict_models_results.json and prints Markdown.

    python bench/predict_models.py                        # after `dvc repro`: the bare final model
                                                          # (the tutorial's answer, no verdict, float32)
                                                          # against the served final model, the served
                                                          # ensemble, and the ensemble with float32 weights
    python bench/predict_models.py --models a.tflite b.tflite
    python bench/predict_models.py --tiny --out F.json    # 20 PNGs, one run: checks this script

The bare final model and the float32 ensemble are converted from models/model.keras and
models/export/ensemble.keras into a temporary directory.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
from PIL import Image

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "src"))

from bench import parse_args  # noqa: E402
from mnist_pipeline import machine  # noqa: E402


def timed(command: list[str]) -> float:
    env = dict(os.environ, PATH=f"{Path(sys.executable).parent}{os.pathsep}{os.environ['PATH']}")
    start = time.perf_counter()
    subprocess.run(command, env=env, capture_output=True, check=True)
    return time.perf_counter() - start


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--models", type=Path, nargs="+", help="model files (default: bare final, served final, served ensemble)")
    parser.add_argument("--repeats", type=int, default=7)
    args = parse_args(parser, "predict_models_results.json")
    if args.tiny:
        args.repeats = 1
    n_images = 20 if args.tiny else 1000
    needed = [ROOT / "data" / "prepared" / "test_images.npy"]
    if not args.models:
        needed += [ROOT / "models" / "model.keras", ROOT / "models" / "export" / "ensemble.keras"]
    missing = [str(path.relative_to(ROOT)) for path in needed if not path.exists()]
    if missing:
        raise SystemExit(f"error: no {', '.join(missing)}: run `dvc repro` first")
    from mnist_pipeline import mnist

    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        models = args.models
        if not models:
            from mnist_pipeline import export, loading

            export.to_tflite(loading.load_keras(ROOT / "models" / "model.keras"), tmp / "bare_final.tflite")
            export.to_tflite(loading.load_keras(ROOT / "models" / "export" / "ensemble.keras"), tmp / "ensemble_float32.tflite")
            models = [
                tmp / "bare_final.tflite",
                ROOT / "models" / "export" / "final.tflite",
                tmp / "ensemble_float32.tflite",
                ROOT / "models" / "export" / "ensemble.tflite",
            ]
        images = tmp / "images"
        images.mkdir()
        test = mnist.load_prepared(ROOT / "data" / "prepared", "test")
        for i in range(n_images):
            Image.fromarray(test.images[i, ..., 0]).save(images / f"{i:04d}.png")
        commands = {
            model.name: {
                "directory": ["mnist-pipeline", "predict", "--json", "--model", str(model), str(images)],
                "one_image": ["mnist-pipeline", "predict", "--model", str(model), str(images / "0000.png")],
            }
            for model in models
        }
        for runs in commands.values():  # warm the page cache
            for command in runs.values():
                timed(command)
        walls = {name: {kind: [] for kind in runs} for name, runs in commands.items()}
        for _ in range(args.repeats):
            for name, runs in commands.items():
                for kind, command in runs.items():
                    walls[name][kind].append(timed(command))
    results = {
        "machine": machine.describe(),
        "repeats": args.repeats,
        "median_s": {name: {kind: float(np.median(w)) for kind, w in runs.items()} for name, runs in walls.items()},
        "best_s": {name: {kind: float(np.min(w)) for kind, w in runs.items()} for name, runs in walls.items()},
    }
    args.out.write_text(json.dumps(results, indent=2) + "\n")
    first = next(iter(results["median_s"]))
    print(f"Machine: {results['machine']}; median (best) of {args.repeats} runs, side by side; ratio to {first}\n")
    print(f"| model | {n_images:,} PNGs (s) | ratio | one image (s) | ratio |\n|---|---|---|---|---|")
    for name, median in results["median_s"].items():
        base, best = results["median_s"][first], results["best_s"][name]
        print(
            f"| {name} | {median['directory']:.2f} ({best['directory']:.2f}) | {median['directory'] / base['directory']:.2f} "
            f"| {median['one_image']:.2f} ({best['one_image']:.2f}) | {median['one_image'] / base['one_image']:.2f} |"
        )


if __name__ == "__main__":
    main()
