"""Small scans: the UCI handwritten digits (1,797 scans of 8x8 pixels, 0-16 levels, bundled with
scikit-learn, so no download) printed as dark ink on white paper with a 2-pixel margin, scaled
up, read through `imaging.to_mnist` and each exported model. A held-out check that the project
never trains or tunes on: other writers, another scanner, a far coarser grid than MNIST's.
Writes bench/scans_results.json and prints Markdown.

    python bench/scans.py [--models models/export/final.tflite models/export/ensemble.tflite]
    python bench/scans.py --tiny --out F.json [--models ...]     # 100 scans: checks this script
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
from pathlib import Path

import numpy as np
from PIL import Image
from sklearn.datasets import load_digits

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "src"))

from bench import parse_args  # noqa: E402
from mnist_pipeline import imaging, machine  # noqa: E402
from mnist_pipeline.loading import LiteRTModel  # noqa: E402

RENDERINGS = {
    "32 px, nearest": (32, Image.Resampling.NEAREST),
    "96 px, nearest": (96, Image.Resampling.NEAREST),
    "96 px, bilinear": (96, Image.Resampling.BILINEAR),
    "128 px, bicubic": (128, Image.Resampling.BICUBIC),
}


def git_commit() -> str:
    """The commit of the code that ran (its images and to_mnist); the models are named by path."""
    return subprocess.run(["git", "rev-parse", "HEAD"], cwd=ROOT, capture_output=True, text=True, check=True).stdout.strip()


def render(scans: np.ndarray, size: int, resample) -> np.ndarray:
    """What to_mnist makes of each scan (zeros where it finds no digit: read as wrong)."""
    out = []
    for scan in scans:
        paper = np.pad((255 - scan / 16 * 255).round().astype(np.uint8), 2, constant_values=255)
        try:
            out.append(imaging.to_mnist(Image.fromarray(paper).resize((size, size), resample)))
        except imaging.ImageError:
            out.append(np.zeros((28, 28), np.uint8))
    return np.stack(out)[..., np.newaxis]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument(
        "--models", type=Path, nargs="+", default=[ROOT / "models/export/final.tflite", ROOT / "models/export/ensemble.tflite"]
    )
    args = parse_args(parser, "scans_results.json")
    digits = load_digits()
    scans, target = (digits.images[:100], digits.target[:100]) if args.tiny else (digits.images, digits.target)
    results = {}
    for rendering, (size, resample) in RENDERINGS.items():
        images = render(scans, size, resample)
        for path in args.models:
            probabilities, scores = LiteRTModel(path).read(images)
            wrong = probabilities.argmax(1) != target
            results.setdefault(path.name, {})[rendering] = {
                "accuracy": float(1 - wrong.mean()),
                "flagged": None if scores is None else float((scores < 0.5).mean()),
                "wrong_with_90_percent": int((wrong & (probabilities.max(1) >= 0.9)).sum()),
            }
    run_by = {"commit": git_commit(), "machine": machine.describe(), "instruction_set": machine.instruction_set()}
    models = [str(path) for path in args.models]
    args.out.write_text(json.dumps({"n_scans": len(target), "models": models, "results": results} | run_by, indent=2) + "\n")
    print(f"| model | {' | '.join(RENDERINGS)} |\n|---|{'---|' * len(RENDERINGS)}")
    for name, by_rendering in results.items():
        cells = [f"{r['accuracy']:.1%} ({r['wrong_with_90_percent']} wrong at ≥ 90%)" for r in by_rendering.values()]
        print(f"| {name} | {' | '.join(cells)} |")


if __name__ == "__main__":
    main()
