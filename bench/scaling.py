"""Benchmark behind the README's "Scaling" section: what one training step costs on this machine,
what feeding it costs, what tf.distribute adds, and what every stage pays before it computes.
Writes bench/scaling_results.json and prints Markdown.

    python bench/scaling.py        # ~5 min on 2 cores
    python bench/scaling.py --tiny --out F.json    # a few hundred images, one round: checks this script

Each measurement runs in a fresh process (device and thread settings are per process), in
alternation over `--rounds`, and the best round is kept:
- input: images/s the input pipeline (datasets.dataset: shuffle, gather, batch) delivers alone;
- compute: images/s of the final fit (the train section's batch) on one device, and under
  `mirrored` over two logical CPUs made from the same two cores (so the difference is the cost
  of the strategy itself: the all-reduce and one step per call instead of several);
- all-reduce payload: the gradient's bytes per step (= the trainable weights, float32);
- start-up: seconds for a fresh Python to import TensorFlow, Keras and MLflow, as each stage does.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "src"))

import numpy as np  # noqa: E402

N_IMAGES = 12_000  # per measured epoch: enough for steady state, short enough for 2 cores


def _examples(n_images: int):
    from mnist_pipeline import mnist
    from mnist_pipeline.testing import MIRROR

    data = mnist.load_split(MIRROR, "train")
    return data.images[:n_images], data.labels[:n_images]


def input_speed(batch_size: int, n_images: int = N_IMAGES) -> float:
    from mnist_pipeline import datasets

    images, labels = _examples(n_images)
    examples = datasets.to_tensors(images, labels)
    for epoch in range(3):  # the first one warms up
        start = time.perf_counter()
        for _ in datasets.dataset(examples, np.arange(len(labels)), batch_size, shuffle_seed=(0, epoch)):
            pass
        seconds = time.perf_counter() - start
    return len(labels) / seconds


def training_speed(strategy_name: str, n_images: int = N_IMAGES) -> dict:
    from mnist_pipeline import datasets, distribute, params, training
    from mnist_pipeline.params import Distribute

    devices = ["/cpu:0", "/cpu:1"] if strategy_name == "mirrored" else []
    strategy = distribute.distribution(Distribute(strategy=strategy_name, devices=devices))
    p = params.load(ROOT / "params.yaml")
    images, labels = _examples(n_images)
    job = training.prepare(
        p.model,
        datasets.to_tensors(images, labels),
        np.arange(len(labels)),
        batch_size=p.train.batch_size,
        optimizer=p.train.optimizer,
        learning_rate=p.train.learning_rate,
        seed=0,
        strategy=strategy,
    )
    training.train(job, 1)  # traces and warms up
    start = time.perf_counter()
    training.train(job, 2)
    weights = sum(int(np.prod(w.shape)) for w in job.model.trainable_weights)
    return {
        "images_per_s": 2 * len(labels) / (time.perf_counter() - start),
        "replicas": strategy.num_replicas_in_sync,
        "gradient_bytes": 4 * weights,
        "batch_size": p.train.batch_size,
    }


def startup_seconds() -> float:
    start = time.perf_counter()
    subprocess.run([sys.executable, "-c", "import tensorflow, keras, mlflow"], check=True, capture_output=True)
    return time.perf_counter() - start


def _probe(n_images: int, *args: str) -> dict | float:
    result = subprocess.run([sys.executable, __file__, "--images", str(n_images), "--probe", *args], capture_output=True, text=True)
    if result.returncode:
        raise SystemExit(f"probe {' '.join(args)} failed:\n{result.stderr[-3000:]}")
    return json.loads(result.stdout.strip().splitlines()[-1])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--images", type=int, default=N_IMAGES, help="images per measured epoch")
    parser.add_argument("--probe", nargs="+", help=argparse.SUPPRESS)
    from bench import parse_args
    from mnist_pipeline import machine

    args = parse_args(parser, "scaling_results.json")
    if args.tiny:
        args.rounds, args.images = 1, 512
    if args.probe:
        kind, *rest = args.probe
        value = input_speed(int(rest[0]), args.images) if kind == "input" else training_speed(rest[0], args.images)
        print(json.dumps(value))
        return

    best: dict[str, float | dict] = {}
    for round_ in range(args.rounds):
        for name, probe in (
            ("input_batch_32", ("input", "32")),
            ("input_batch_200", ("input", "200")),
            ("train_none", ("train", "none")),
            ("train_mirrored_2_cpus", ("train", "mirrored")),
        ):
            value = _probe(args.images, *probe)
            speed = value["images_per_s"] if isinstance(value, dict) else value
            previous = best.get(name)
            if previous is None or speed > (previous["images_per_s"] if isinstance(previous, dict) else previous):
                best[name] = value
            print(f"  round {round_ + 1}: {name} {speed:,.0f} images/s", file=sys.stderr)
        best["startup_s"] = min(best.get("startup_s", float("inf")), startup_seconds())
    results = {"machine": machine.describe(), "n_images_per_epoch": args.images, "rounds": args.rounds, "best": best}
    args.out.write_text(json.dumps(results, indent=2) + "\n")
    none, mirrored = best["train_none"], best["train_mirrored_2_cpus"]
    print(f"| measured on {results['machine']} (best of {args.rounds}) | |\n|---|---|")
    print(f"| input pipeline alone, batch 32 / 200 | {best['input_batch_32']:,.0f} / {best['input_batch_200']:,.0f} images/s |")
    print(f"| final fit, batch {none['batch_size']}, one device | {none['images_per_s']:,.0f} images/s |")
    print(
        f"| same, mirrored over 2 logical CPUs | {mirrored['images_per_s']:,.0f} images/s "
        f"({mirrored['images_per_s'] / none['images_per_s']:.2f}x) |"
    )
    print(f"| gradient all-reduced per step | {none['gradient_bytes'] / 1e6:.2f} MB |")
    print(f"| fresh process to TensorFlow + Keras + MLflow imported | {best['startup_s']:.1f} s |")


if __name__ == "__main__":
    main()
