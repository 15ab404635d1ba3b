"""Whether two runs of the pipeline came out the same: a change that only moves code must leave
every trained model's weights and every metric as they were, on the same machine. Compares two
clones that bench/full_run.py kept (--keep): the weights of each fold model, the final model and
the detector (array by array, and the md5 of the weights file inside each .keras), metrics/*.json
byte for byte, and reports/*.json less their MLflow ids (each run has its own).

    python bench/full_run.py --keep /tmp/before   # at the commit before the change
    python bench/full_run.py --keep /tmp/after    # at the change
    python bench/same_results.py /tmp/before /tmp/after
"""

from __future__ import annotations

import argparse
import hashlib
import json
import subprocess
import zipfile
from pathlib import Path

import numpy as np

from mnist_pipeline import machine

ROOT = Path(__file__).resolve().parents[1]
RESULTS = ROOT / "bench" / "same_results.json"
MODELS = ("models/folds/fold-*.keras", "models/model.keras", "models/detector/model.keras")
METRICS = ("metrics/cv.json", "metrics/eval.json")
REPORTS = ("reports/cv.json", "reports/train.json", "reports/detector.json", "reports/export.json", "reports/eval.json")


def weights_md5(path: Path) -> str:
    with zipfile.ZipFile(path) as archive:
        return hashlib.md5(archive.read("model.weights.h5")).hexdigest()


def without_run_ids(report: dict) -> dict:
    return {key: value for key, value in report.items() if key != "mlflow"}


def compare(before: Path, after: Path) -> dict:
    from mnist_pipeline.loading import load_keras

    models = sorted(str(path.relative_to(before)) for pattern in MODELS for path in before.glob(pattern))
    missing = [str(run / name) for run in (before, after) for name in (*models, *METRICS, *REPORTS) if not (run / name).is_file()]
    if not models or missing:
        raise SystemExit(
            f"error: {before} and {after} must each hold a whole run (bench/full_run.py --keep DIR); "
            + (f"missing {', '.join(missing[:3])}" if missing else f"no trained models under {before}/models")
        )
    compared = {}
    for name in models:
        a, b = load_keras(before / name).get_weights(), load_keras(after / name).get_weights()
        same = len(a) == len(b) and all(x.dtype == y.dtype and np.array_equal(x, y) for x, y in zip(a, b, strict=True))
        compared[name] = {"same_weights": same, "weights_md5": [weights_md5(before / name), weights_md5(after / name)]}
    for name in METRICS:
        compared[name] = {"same_bytes": (before / name).read_bytes() == (after / name).read_bytes()}
    for name in REPORTS:
        a, b = (json.loads((run / name).read_text()) for run in (before, after))
        compared[name] = {"same_but_mlflow_ids": without_run_ids(a) == without_run_ids(b)}
    return compared


def commit(repo: Path) -> str:
    return subprocess.run(["git", "rev-parse", "HEAD"], cwd=repo, capture_output=True, text=True, check=True).stdout.strip()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("before", type=Path, help="a clone bench/full_run.py kept, at the commit before the change")
    parser.add_argument("after", type=Path, help="the same, at the change")
    parser.add_argument("--out", type=Path, default=RESULTS, help=f"results file (default {RESULTS.relative_to(ROOT)})")
    args = parser.parse_args()
    compared = compare(args.before, args.after)
    result = {
        "before": commit(args.before),
        "after": commit(args.after),
        "machine": machine.describe(),
        "instruction_set": machine.instruction_set(),
        "all_same": all(next(iter(check.values())) is True for check in compared.values()),
        "compared": compared,
    }
    args.out.write_text(json.dumps(result, indent=2) + "\n")
    print(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
