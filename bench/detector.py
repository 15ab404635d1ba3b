"""The served models' digit-or-not verdict, side by side on the same images: the share called
"not a digit" of MNIST's test digits, of digits of every kind the project makes (from test
digits, with seeds that neither synthesize nor evaluate uses), of the UCI scans in bench/scans.py's
four renderings, and of the project's non-digits of every kind; the share of each set of digits
read right (not flagged, the right digit); and the non-digits answered as a digit with 90%
confidence or more. Writes bench/detector_results.json and prints Markdown.

    python bench/detector.py --models A.tflite B.tflite --names before after
    python bench/detector.py --tiny --out F.json --models M.tflite     # checks this script
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import numpy as np
from sklearn.datasets import load_digits

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "src"))

from scans import RENDERINGS, git_commit, render  # noqa: E402

from bench import parse_args  # noqa: E402
from mnist_pipeline import evaluation, machine, mnist, synthetic  # noqa: E402
from mnist_pipeline.loading import LiteRTModel  # noqa: E402

SEED = 2000  # other than synthetic.seed (0) and evaluate.non_digits_seed (1000)


def image_sets(n_made: int, n_test: int) -> dict[str, tuple[np.ndarray, np.ndarray]]:
    """name -> (images (N, 28, 28), labels; -1: not a digit)."""
    test = mnist.load_prepared(ROOT / "data" / "prepared", "test") if (ROOT / "data" / "prepared").exists() else None
    if test is None:
        raise SystemExit("error: no data/prepared/test_*.npy: run `dvc repro preprocess` first")
    digits, labels = test.images.reshape(-1, 28, 28), test.labels
    made_digits = synthetic.make_set(digits, labels, {"photo": n_made // 6} | synthetic.shares(n_made, synthetic.DIGIT_KINDS), (SEED, 0))
    made_non = synthetic.make_set(digits, labels, synthetic.shares(n_made, synthetic.NON_DIGIT_KINDS), (SEED, 1))
    sets = {"mnist test": (digits[:n_test], labels[:n_test].astype(np.int8))}
    for made in (made_digits, made_non):
        for code in sorted(set(made["kind"].tolist())):
            pick = made["kind"] == code
            sets[synthetic.KINDS[code]] = (made["images"][pick], made["labels"][pick])
    uci = load_digits()
    scans, target = (uci.images[: n_made // 10], uci.target[: n_made // 10]) if n_made < 1000 else (uci.images, uci.target)
    for rendering, (size, resample) in RENDERINGS.items():
        sets[f"UCI scans, {rendering}"] = (render(scans, size, resample).reshape(-1, 28, 28), target.astype(np.int8))
    return sets


def measure(model: LiteRTModel, sets: dict) -> dict:
    out = {}
    for name, (images, labels) in sets.items():
        verdicts = evaluation.verdicts(*model.read(images), labels)
        row = {"n": len(labels), "flagged": float(verdicts["flagged"].mean())}
        if (labels >= 0).all():
            row["read_right"] = float(verdicts["read_right"].mean())
        else:
            row["answered_sure"] = float(verdicts["answered_sure"].mean())
        out[name] = row
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--models", type=Path, nargs="+", default=[ROOT / "models/export/model.tflite"])
    parser.add_argument("--names", nargs="+", help="a name for each model (default: its path)")
    args = parse_args(parser, "detector_results.json")
    names = args.names or [str(path) for path in args.models]
    if len(names) != len(args.models):
        parser.error("--names needs one name for each of --models")
    sets = image_sets(n_made=120 if args.tiny else 6000, n_test=200 if args.tiny else 10000)
    results = {name: measure(LiteRTModel(path), sets) for name, path in zip(names, args.models, strict=True)}
    run_by = {"commit": git_commit(), "machine": machine.describe(), "instruction_set": machine.instruction_set()}
    models = dict(zip(names, map(str, args.models), strict=True))
    args.out.write_text(json.dumps({"seed": SEED, "models": models, "results": results} | run_by, indent=2) + "\n")
    print(f"| set | {' | '.join(names)} |\n|---|{'---|' * len(names)}")
    for name in sets:
        cells = []
        for model in names:
            row = results[model][name]
            extra = f", read right {row['read_right']:.1%}" if "read_right" in row else f", sure digit {row['answered_sure']:.1%}"
            cells.append(f"{row['flagged']:.1%} flagged{extra}")
        print(f"| {name} ({sets[name][1].size}) | {' | '.join(cells)} |")


if __name__ == "__main__":
    main()
