"""Benchmark: training speed against plain `model.fit` and the machine's roof, the pipeline's stages,
a no-op `dvc repro`, and `mnist-pipeline predict`. Writes bench/results.json and prints Markdown.

    python bench/bench.py           # small pipeline params (says so in the output), ~10 min
    python bench/bench.py --full    # the full default protocol for the stage timings, ~25 min
    python bench/bench.py --tiny --out F.json   # the tests' tiny params, fewer epochs: checks this script

Everything is measured side by side in one run on the current machine; compare ratios, not
absolute numbers from other machines.
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

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "src"))

import numpy as np  # noqa: E402

from mnist_pipeline import datasets, distribute, machine, training  # noqa: E402

SMALL = {"data": {"train_limit": 6000, "test_limit": 2000}, "cv": {"folds": 2, "epochs": 2}, "train": {"epochs": 2}}
STAGES = ["download", "preprocess", "crossvalidate", "train", "synthesize", "detector", "export", "evaluate"]  # dvc.yaml's, in its order


def parse_args(parser: argparse.ArgumentParser, results: str | None = None) -> argparse.Namespace:
    """The parser's arguments plus --out (where the results go: by default bench/<results>, or none)
    and --tiny: the same code on tiny inputs, to check a script (tests/test_bench.py) rather than to
    measure anything, so that a renamed stage, param or function breaks a test rather than a user's
    run. It measures nothing worth keeping, so it needs an --out outside bench/, where the committed
    results are."""
    parser.add_argument("--tiny", action="store_true", help="run on tiny inputs, to check the script; needs --out outside bench/")
    parser.add_argument(
        "--out",
        type=Path,
        default=ROOT / "bench" / results if results else None,
        help=f"results file (default: {f'bench/{results}' if results else 'none'})",
    )
    args = parser.parse_args()
    if args.tiny and (args.out is None or args.out.resolve().parent == ROOT / "bench"):
        parser.error("--tiny needs --out outside bench/ (its results are no measurement)")
    return args


def forward_flops(layer) -> float:
    """Multiply-adds x 2 of a Conv2D or Dense layer's forward pass for one image; 0 for other layers."""
    import keras

    if isinstance(layer, keras.layers.Conv2D):
        _, h, w, c_out = layer.output.shape
        kh, kw = layer.kernel_size
        return 2.0 * h * w * c_out * kh * kw * layer.input.shape[-1]
    if isinstance(layer, keras.layers.Dense):
        return 2.0 * layer.input.shape[-1] * layer.units
    return 0.0


def training_flops_per_image(model) -> float:
    """Training ~ 3x forward (forward + 2 backward)."""
    return 3.0 * sum(forward_flops(layer) for layer in model.layers)


def matmul_flops_per_second(size: int = 2048) -> float:
    import tensorflow as tf

    a = tf.random.normal((size, size))
    b = tf.random.normal((size, size))
    tf.matmul(a, b).numpy()
    best = 0.0
    for _ in range(5):
        start = time.perf_counter()
        for _ in range(10):
            c = tf.matmul(a, b)
        c.numpy()
        best = max(best, 10 * 2 * size**3 / (time.perf_counter() - start))
    return best


def warmup_steps(n_images: int, batch_size: int) -> int:
    """Steps that trace the training step and warm the caches before a timed run: two executions'
    worth (training.STEPS_PER_EXECUTION steps each), or one epoch of `n_images` if that is fewer."""

    return min(2 * training.STEPS_PER_EXECUTION, -(-n_images // batch_size))


def training_speed(kind: str, section: str, epochs: int = 2, images: int | None = None) -> float:
    """Run in a fresh process: images/s of `kind` ("plain", "one model" or "crossvalidate") with the
    batch size and optimizer of params.yaml's `section` ("cv" or "train"), over two epochs (the
    pipeline's `training.train`, or one plain `fit` of two epochs) after a few steps that trace
    and warm up. Epochs as the protocol runs them: a CV fold's share of the 60,000 images, or all
    of them for train (or the first `images`). Two epochs, not one, because what happens between
    epochs (tf.data's stalls in a plain `fit`) is part of the cost."""
    import keras

    from mnist_pipeline import mnist, models, params
    from mnist_pipeline.testing import MIRROR

    if kind == "crossvalidate":
        distribute.one_thread_per_op()
    p = params.load(ROOT / "params.yaml")
    setup = getattr(p, section)
    data = mnist.load_split(MIRROR, "train")
    n_images = images or (len(data.labels) * (p.cv.folds - 1) // p.cv.folds if section == "cv" else len(data.labels))
    if kind == "plain":
        keras.utils.set_random_seed(0)
        model = models.build(p.model)
        optimizer = training.make_optimizer(setup.optimizer, setup.learning_rate)
        model.compile(optimizer, "sparse_categorical_crossentropy", metrics=["accuracy"])
        x_float, y = data.images[:n_images].astype("float32"), data.labels[:n_images]  # the tutorial's way: a float copy
        n_models = 1

        def run(epochs: int, steps: int | None = None) -> None:
            model.fit(x_float, y, batch_size=setup.batch_size, epochs=epochs, steps_per_epoch=steps, verbose=0)
    else:
        n_models = p.cv.folds if kind == "crossvalidate" else 1
        shared = datasets.to_tensors(data.images, data.labels)
        jobs = {
            k: training.prepare(
                p.model,
                shared,
                np.arange(n_images),
                batch_size=setup.batch_size,
                optimizer=setup.optimizer,
                learning_rate=setup.learning_rate,
                seed=k,
            )
            for k in range(n_models)
        }

        def run(epochs: int, steps: int | None = None) -> None:
            if steps:
                training.train_together(jobs, lambda _, job: job.model.fit(job.epoch(0), steps_per_epoch=steps, verbose=0))
            else:
                training.train_together(jobs, lambda key, job: training.train(job, epochs, label=f"model {key}"))

    run(1, steps=warmup_steps(n_images, setup.batch_size))
    start = time.perf_counter()
    run(epochs)
    return epochs * n_models * n_images / (time.perf_counter() - start)


def bench_training(rounds: int = 2, images: int | None = None, matmul_size: int = 2048) -> dict:
    """Each setup in its own process (thread settings are per process), in alternation, so all see the same machine."""
    from mnist_pipeline import models, params

    p = params.load(ROOT / "params.yaml")
    rows = {  # setup: (plain kind, pipeline kind, params section)
        f"batch {p.cv.batch_size}, one model": ("plain", "one model", "cv"),
        f"batch {p.cv.batch_size}, crossvalidate ({p.cv.folds} folds at once)": ("plain", "crossvalidate", "cv"),
        f"batch {p.train.batch_size}, train": ("plain", "one model", "train"),
    }
    runs = list(dict.fromkeys((kind, section) for plain, ours, section in rows.values() for kind in (plain, ours)))
    speeds = {run: [] for run in runs}
    for _ in range(rounds):
        for kind, section in runs:
            sizes = ["--images", str(images)] if images else []
            result = subprocess.run([sys.executable, __file__, "--training-speed", kind, section, *sizes], capture_output=True, text=True)
            if result.returncode:
                raise SystemExit(f"measuring {kind} ({section}) failed:\n{result.stderr[-3000:]}")
            speeds[(kind, section)].append(float(result.stdout.strip().splitlines()[-1]))
            print(f"  {kind}, {section} params: {speeds[(kind, section)][-1]:,.0f} images/s", file=sys.stderr)
    mean = {run: float(np.mean(values)) for run, values in speeds.items()}
    flops = training_flops_per_image(models.build(p.model))
    roof_flops = matmul_flops_per_second(matmul_size)
    table = [
        {
            "setup": setup,
            "plain_fit_images_per_s": mean[(plain, section)],
            "pipeline_images_per_s": mean[(ours, section)],
            "ratio": mean[(ours, section)] / mean[(plain, section)],
            "fraction_of_roof": mean[(ours, section)] * flops / roof_flops,
        }
        for setup, (plain, ours, section) in rows.items()
    ]
    return {
        "rows": table,
        "runs": {f"{kind}, {section}": values for (kind, section), values in speeds.items()},
        "training_flops_per_image": flops,
        "matmul_flops_per_s": roof_flops,
        "roof_images_per_s": roof_flops / flops,
    }


def _timed(cmd: list[str], cwd: Path, env: dict) -> tuple[float, float]:
    """Wall seconds and peak RSS (MiB) of the largest process the command ran."""
    probe = (
        "import resource, subprocess, sys; r = subprocess.run(sys.argv[1:]); "
        "print(resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss); sys.exit(r.returncode)"
    )
    start = time.perf_counter()
    result = subprocess.run([sys.executable, "-c", probe, *cmd], cwd=cwd, env=env, capture_output=True, text=True)
    wall = time.perf_counter() - start
    if result.returncode:
        raise SystemExit(f"{' '.join(cmd)} failed:\n{result.stdout[-2000:]}\n{result.stderr[-3000:]}")
    return wall, int(result.stdout.strip().splitlines()[-1]) / 1024


def bench_pipeline(params: dict | None, workdir: Path) -> dict:
    """The stages one by one in a copy of the repo with `params` (None: the default ones)."""
    from mnist_pipeline.testing import copy_repo, env_for

    repo = copy_repo(workdir / "repo", params=params)
    env = env_for(repo)
    stages = {}
    for stage in STAGES:
        wall, peak = _timed(["dvc", "repro", "--single-item", stage], repo, env)
        stages[stage] = {"wall_s": wall, "peak_rss_mib": peak}
        print(f"  {stage}: {wall:.1f} s, {peak:.0f} MiB", file=sys.stderr)
    noop, _ = _timed(["dvc", "repro"], repo, env)
    return {
        "params": "default (full protocol)" if params is None else f"small: {json.dumps(params)}",
        "stages": stages,
        "total_wall_s": sum(s["wall_s"] for s in stages.values()),
        "noop_repro_s": noop,
        "repo": repo,
    }


def bench_predict(repo: Path, workdir: Path, n_images: int = 1000, repeats: int = 5) -> dict:
    from PIL import Image

    from mnist_pipeline import cli, mnist

    model = repo / "models" / "export" / "model.tflite"
    images = workdir / "pngs"
    images.mkdir()
    test = mnist.load_prepared(repo / "data" / "prepared", "test")
    for i in range(n_images):
        Image.fromarray(test.images[i % len(test.images), ..., 0]).save(images / f"{i:04d}.png")
    one = ["mnist-pipeline", "predict", "--model", str(model), str(images / "0000.png")]
    env = dict(os.environ, PATH=f"{Path(sys.executable).parent}{os.pathsep}{os.environ['PATH']}")
    subprocess.run(one, env=env, capture_output=True, check=True)  # warm the page cache
    walls = []
    for _ in range(repeats):
        start = time.perf_counter()
        subprocess.run(one, env=env, capture_output=True, check=True)
        walls.append(time.perf_counter() - start)
    paths = cli.find_images([str(images)])
    start = time.perf_counter()
    prepared = cli.preprocess(paths)
    loaded = cli.load_model(model)
    cli.predict(paths, prepared, loaded)
    rate = len(paths) / (time.perf_counter() - start)
    return {"one_image_process_s": float(np.median(walls)), "directory_images_per_s": rate, "n_images": len(paths)}


def markdown(results: dict) -> str:
    t, p, q = results["training"], results["pipeline"], results["predict"]
    lines = [
        f"Machine: {results['machine']}",
        "",
        "| training (images/s) | plain `model.fit` | pipeline | ratio | fraction of roof |",
        "|---|---|---|---|---|",
    ]
    lines += [
        f"| {r['setup']} | {r['plain_fit_images_per_s']:,.0f} | {r['pipeline_images_per_s']:,.0f} | "
        f"{r['ratio']:.2f}x | {r['fraction_of_roof']:.0%} |"
        for r in t["rows"]
    ]
    lines += [
        "",
        f"Roof: {t['matmul_flops_per_s'] / 1e9:,.0f} GFLOP/s float32 matmul / {t['training_flops_per_image'] / 1e6:.1f} MFLOP "
        f"per training image = {t['roof_images_per_s']:,.0f} images/s.",
        "",
        f"| stage ({p['params']}) | wall (s) | peak memory (MiB) |",
        "|---|---|---|",
    ]
    lines += [f"| {name} | {s['wall_s']:.1f} | {s['peak_rss_mib']:.0f} |" for name, s in p["stages"].items()]
    lines += [
        f"| **total** | {p['total_wall_s']:.1f} | |",
        f"| `dvc repro`, nothing changed | {p['noop_repro_s']:.1f} | |",
        "",
        f"`mnist-pipeline predict one.png`: {q['one_image_process_s']:.2f} s as a whole process; "
        f"a directory of {q['n_images']} PNGs: {q['directory_images_per_s']:,.0f} images/s (excluding process start).",
    ]
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--full", action="store_true", help="time the stages with the full default params")
    parser.add_argument("--skip-training", action="store_true", help="skip the training-loop comparison")
    parser.add_argument("--training-speed", nargs=2, metavar=("KIND", "SECTION"), help=argparse.SUPPRESS)
    parser.add_argument("--images", type=int, help=argparse.SUPPRESS)
    args = parse_args(parser, "results.json")
    if args.training_speed:
        print(training_speed(*args.training_speed, images=args.images))
        return
    from mnist_pipeline.testing import TINY

    results = {"machine": machine.describe()}
    with tempfile.TemporaryDirectory() as tmp:
        workdir = Path(tmp)
        print("pipeline stages...", file=sys.stderr)
        # --tiny: the tests' tiny params with fewer models and epochs still, every stage's code all the same
        tiny = TINY | {"cv": {"folds": 2, "epochs": 1}, "train": {"epochs": 1}, "detector": TINY["detector"] | {"epochs": 1, "members": 1}}
        pipeline = bench_pipeline(None if args.full else tiny if args.tiny else SMALL, workdir)
        print("predict...", file=sys.stderr)
        sizes = {"n_images": 20, "repeats": 1} if args.tiny else {}
        results["predict"] = bench_predict(pipeline.pop("repo"), workdir, **sizes)
        results["pipeline"] = pipeline
        if not args.skip_training:
            print("training loop vs plain model.fit...", file=sys.stderr)
            results["training"] = bench_training(rounds=1, images=512, matmul_size=256) if args.tiny else bench_training()
    args.out.write_text(json.dumps(results, indent=2) + "\n")
    if "training" in results:
        print(markdown(results))


if __name__ == "__main__":
    main()
