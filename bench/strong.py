"""Benchmark the strong recipe's training: images/s of the pipeline's loop with augmentation (one
model, and five folds at once as crossvalidate trains them) against the same loop without it, and
against a plain `model.fit` with Keras's own augmentation layers mapped over a tf.data pipeline (the
usual way); each with its fraction of the float32 matmul roof. Writes bench/strong_results.json
and prints Markdown.

    python bench/strong.py [--images 9600] [--rounds 2]
    python bench/strong.py --tiny --out F.json      # a few hundred images, one round: checks this script

Each setup runs in its own process (thread settings are per process), in alternation, so all see
the same machine; epochs of --images images per model after a warm-up.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

from mnist_pipeline import datasets, distribute, machine, training

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "src"))

SETUPS = {  # name: (how, models at once, augmented)
    "plain fit, Keras augmentation layers, one model": ("plain", 1, True),
    "pipeline, one model, augmented": ("pipeline", 1, True),
    "pipeline, one model, not augmented": ("pipeline", 1, False),
    "pipeline, crossvalidate (5 folds at once), augmented": ("pipeline", 5, True),
    "pipeline, crossvalidate (5 folds at once), not augmented": ("pipeline", 5, False),
}


def strong_params():
    """The strong preset (conf/recipe/strong.yaml), as `dvc exp run -S recipe=strong` composes it."""
    import yaml

    from mnist_pipeline import params
    from mnist_pipeline.testing import compose

    return params.parse(yaml.safe_load(compose("recipe=strong")))


def speed(setup: str, n_images: int) -> float:
    """In a fresh process: images/s of one setup over one epoch, after a warm-up."""
    import keras
    import tensorflow as tf

    from bench import warmup_steps
    from mnist_pipeline import mnist, models, params
    from mnist_pipeline.testing import MIRROR

    how, n_models, augmented = SETUPS[setup]
    if n_models > 1:
        distribute.one_thread_per_op()
    p = strong_params()
    data = mnist.load_split(MIRROR, "train")
    augment = p.augment if augmented else params.Augment()
    if how == "plain":
        keras.utils.set_random_seed(0)
        model = models.build(p.model)
        model.compile(training.make_optimizer("adam", p.cv.learning_rate), "sparse_categorical_crossentropy", metrics=["accuracy"])
        distort = keras.Sequential(
            [
                keras.layers.RandomRotation(augment.rotation / 360),
                keras.layers.RandomTranslation(augment.shift, augment.shift),
                keras.layers.RandomZoom(augment.zoom),
            ]
        )
        x, y = data.images[:n_images].astype("float32"), data.labels[:n_images]
        batches = (
            tf.data.Dataset.from_tensor_slices((x, y))
            .shuffle(n_images)
            .batch(p.cv.batch_size)
            .map(lambda a, b: (distort(a, training=True), b), num_parallel_calls=tf.data.AUTOTUNE)
            .prefetch(tf.data.AUTOTUNE)
        )

        def run(steps: int | None = None) -> None:
            model.fit(batches, epochs=1, steps_per_epoch=steps, verbose=0)
    else:
        shared = datasets.to_tensors(data.images, data.labels)
        jobs = {
            k: training.prepare(
                p.model,
                shared,
                np.arange(n_images),
                batch_size=p.cv.batch_size,
                optimizer="adam",
                learning_rate=p.cv.learning_rate,
                schedule=p.cv.schedule,
                epochs=p.cv.epochs,
                augment=augment,
                label_smoothing=p.cv.label_smoothing,
                seed=k,
            )
            for k in range(n_models)
        }

        def run(steps: int | None = None) -> None:
            if steps:
                training.train_together(jobs, lambda _, job: job.model.fit(job.epoch(0), steps_per_epoch=steps, verbose=0))
            else:
                training.train_together(jobs, lambda key, job: training.train(job, 1, label=f"model {key}"))

    run(steps=warmup_steps(n_images, p.cv.batch_size))
    start = time.perf_counter()
    run()
    return n_models * n_images / (time.perf_counter() - start)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--images", type=int, default=9600, help="images per model per timed epoch")
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--speed", help=argparse.SUPPRESS)
    from bench import matmul_flops_per_second, parse_args, training_flops_per_image

    args = parse_args(parser, "strong_results.json")
    if args.tiny:
        args.rounds, args.images = 1, 256
    if args.speed:
        print(speed(args.speed, args.images))
        return

    from mnist_pipeline import models

    runs = {setup: [] for setup in SETUPS}
    for _ in range(args.rounds):
        for setup in SETUPS:
            command = [sys.executable, __file__, "--speed", setup, "--images", str(args.images)]
            result = subprocess.run(command, capture_output=True, text=True)
            if result.returncode:
                raise SystemExit(f"measuring {setup} failed:\n{result.stderr[-3000:]}")
            runs[setup].append(float(result.stdout.strip().splitlines()[-1]))
            print(f"  {setup}: {runs[setup][-1]:,.0f} images/s", file=sys.stderr)
    mean = {setup: float(np.mean(values)) for setup, values in runs.items()}
    flops = training_flops_per_image(models.build(strong_params().model))
    roof = matmul_flops_per_second(256 if args.tiny else 2048)
    results = {
        "machine": machine.describe(),
        "images_per_model": args.images,
        "runs": runs,
        "images_per_s": mean,
        "training_flops_per_image": flops,
        "matmul_flops_per_s": roof,
    }
    args.out.write_text(json.dumps(results, indent=2) + "\n")
    print(
        f"Machine: {results['machine']}; roof {roof / 1e9:,.0f} GFLOP/s / {flops / 1e6:.1f} MFLOP per training image "
        f"= {roof / flops:,.0f} images/s\n"
    )
    print("| strong recipe, batch 128 | images/s | fraction of roof |\n|---|---|---|")
    for setup, rate in mean.items():
        print(f"| {setup} | {rate:,.0f} | {rate * flops / roof:.0%} |")
    for n in ("one model", "crossvalidate (5 folds at once)"):
        ratio = mean[f"pipeline, {n}, augmented"] / mean[f"pipeline, {n}, not augmented"]
        print(f"\nAugmented / not augmented, {n}: {ratio:.0%}", end="")
    print(
        f"\nPipeline (one model, augmented) / plain fit with Keras layers: "
        f"{mean['pipeline, one model, augmented'] / mean['plain fit, Keras augmentation layers, one model']:.2f}x"
    )


if __name__ == "__main__":
    main()
