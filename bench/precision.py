"""Benchmark distribute.precision: images/s of the pipeline's training loop under float32 against
mixed_bfloat16 (and mixed_float16 where a GPU is), for the tutorial's CNN (cv's batch 32 and
train's 200) and the strong preset's (batch 128), each in its own process, in alternation, so all
see the same machine; the median over --rounds. Writes bench/precision_results.json, with the
CPU's flags that decide whether bfloat16 is native (distribute.native_bfloat16), and prints Markdown.

    python bench/precision.py [--images 6400] [--rounds 3]
    python bench/precision.py --tiny --out F.json      # a few hundred images, one round: checks this script

The timing does not go through distribute.set_precision: where bfloat16 is not native it measures
the emulation that the stages refuse to run.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "src"))

MODELS = {  # name: (recipe, section whose batch size it trains at)
    "tutorial CNN, batch 32 (cv)": ("tutorial", "cv"),
    "tutorial CNN, batch 200 (train)": ("tutorial", "train"),
    "strong preset's CNN, batch 128": ("strong", "cv"),
}
FLAGS = ("avx2", "avx512f", "avx512_bf16", "amx_bf16", "amx_tile", "bf16")


def speed(model_name: str, policy: str, n_images: int) -> float:
    """In a fresh process: images/s of one epoch of one model under `policy`, after a warm-up."""
    import keras
    import yaml

    from bench import warmup_steps
    from mnist_pipeline import datasets, mnist, params, training
    from mnist_pipeline.testing import MIRROR, compose

    recipe, section = MODELS[model_name]
    p = params.parse(yaml.safe_load(compose(f"recipe={recipe}")))
    hyper = getattr(p, section)
    keras.config.set_dtype_policy(policy)
    data = mnist.load_split(MIRROR, "train")
    job = training.prepare(
        p.model,
        datasets.to_tensors(data.images, data.labels),
        np.arange(n_images),
        batch_size=hyper.batch_size,
        optimizer=hyper.optimizer,
        learning_rate=hyper.learning_rate,
        schedule=hyper.schedule,
        epochs=1,
        augment=p.augment,
        label_smoothing=hyper.label_smoothing,
        seed=0,
    )
    job.model.fit(job.epoch(0), steps_per_epoch=warmup_steps(n_images, hyper.batch_size), verbose=0)  # tracing
    start = time.perf_counter()
    job.model.fit(job.epoch(1), verbose=0)
    return n_images / (time.perf_counter() - start)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--images", type=int, default=6400, help="images per timed epoch")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--speed", nargs=2, metavar=("MODEL", "POLICY"), help=argparse.SUPPRESS)
    from bench import parse_args
    from mnist_pipeline import distribute, machine

    args = parse_args(parser, "precision_results.json")
    if args.tiny:
        args.rounds, args.images = 1, 320
    if args.speed:
        print(speed(*args.speed, args.images))
        return

    native = distribute.native_bfloat16()
    policies = ["float32", "mixed_bfloat16"] + (["mixed_float16"] if native == "a GPU" else [])
    models = list(MODELS)[:1] if args.tiny else list(MODELS)
    runs = {m: {policy: [] for policy in policies} for m in models}
    for _ in range(args.rounds):
        for m in models:
            for policy in policies:
                command = [sys.executable, __file__, "--speed", m, policy, "--images", str(args.images)]
                result = subprocess.run(command, capture_output=True, text=True)
                if result.returncode:
                    raise SystemExit(f"measuring {m} in {policy} failed:\n{result.stderr[-3000:]}")
                runs[m][policy].append(float(result.stdout.strip().splitlines()[-1]))
                print(f"  {m}, {policy}: {runs[m][policy][-1]:,.0f} images/s", file=sys.stderr)
    cpu_flags = machine.cpu_flags()
    median = {m: {policy: float(np.median(values)) for policy, values in by.items()} for m, by in runs.items()}
    results = {
        "machine": machine.describe(),
        "cpu_flags": [flag for flag in FLAGS if flag in cpu_flags],
        "native_bfloat16": native,
        "images_per_epoch": args.images,
        "rounds": args.rounds,
        "runs": runs,
        "median_images_per_s": median,
        "speedup_over_float32": {m: {policy: rate / by["float32"] for policy, rate in by.items()} for m, by in median.items()},
    }
    args.out.write_text(json.dumps(results, indent=2) + "\n")
    print(f"Machine: {results['machine']}; flags: {', '.join(results['cpu_flags'])}; native bfloat16: {native or 'none'}\n")
    print(f"| images/s, median of {args.rounds} | " + " | ".join(policies) + " |")
    print("|---" * (len(policies) + 1) + "|")
    for m, by in median.items():
        cells = [f"{by['float32']:,.0f}"] + [f"{by[policy]:,.0f} ({by[policy] / by['float32']:.2f}x)" for policy in policies[1:]]
        print(f"| {m} | " + " | ".join(cells) + " |")


if __name__ == "__main__":
    main()
