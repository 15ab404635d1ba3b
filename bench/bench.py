"""Benchmark: training speed against plain `model.fit` and the machine's roof, the pipeline's stages,
a no-op `dvc repro`, and `mnist-pipeline predict`. Writes bench/results.json and prints Markdown.

    python bench/bench.py           # small pipeline params (says so in the output)
    python bench/bench.py --full    # the full default protocol for the stage timings (~15 min)

Everything is measured side by side in one run on the current machine; compare ratios, not
absolute numbers from other machines.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Callable

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "src"))
sys.path.insert(0, str(ROOT / "tests"))

import numpy as np  # noqa: E402

SMALL = {"data": {"train_limit": 6000, "test_limit": 2000}, "cv": {"folds": 2, "epochs": 2}, "train": {"epochs": 2}}
STAGES = ["download", "preprocess", "crossvalidate", "train", "export", "evaluate"]


def training_flops_per_image(model) -> float:
    """Multiply-adds of the forward pass from the layers' shapes; training ~ 3x forward (forward + 2 backward)."""
    import keras

    forward = 0
    for layer in model.layers:
        if isinstance(layer, keras.layers.Conv2D):
            _, h, w, c_out = layer.output.shape
            kh, kw = layer.kernel_size
            forward += 2 * h * w * c_out * kh * kw * layer.input.shape[-1]
        elif isinstance(layer, keras.layers.Dense):
            forward += 2 * layer.input.shape[-1] * layer.units
    return 3.0 * forward


def matmul_flops_per_second() -> float:
    import tensorflow as tf

    a = tf.random.normal((2048, 2048))
    b = tf.random.normal((2048, 2048))
    tf.matmul(a, b).numpy()
    best = 0.0
    for _ in range(5):
        start = time.perf_counter()
        for _ in range(10):
            c = tf.matmul(a, b)
        c.numpy()
        best = max(best, 10 * 2 * 2048**3 / (time.perf_counter() - start))
    return best


def alternate(fits: dict[str, tuple[Callable[[], object], int]], rounds: int = 2) -> dict[str, float]:
    """Images/s of each (one-epoch fit, images it trains), timed in alternation so all see the same machine."""
    for fit_one_epoch, _ in fits.values():
        fit_one_epoch()  # the first epoch traces and warms up
    seconds = dict.fromkeys(fits, 0.0)
    for _ in range(rounds):
        for name, (fit_one_epoch, _) in fits.items():
            start = time.perf_counter()
            fit_one_epoch()
            seconds[name] += time.perf_counter() - start
    return {name: rounds * n_images / seconds[name] for name, (_, n_images) in fits.items()}


def bench_training(mirror: Path) -> dict:
    """Epochs as params.yaml's protocol runs them: a CV fold's share of the 60,000 images at the CV
    batch size (one fold, and as many at once as crossvalidate trains), all 60,000 at the train batch size."""
    import keras

    from mnist_pipeline import mnist, models, params, training

    p = params.load(ROOT / "params.yaml")
    train = mnist.load_split(mirror, "train")
    at_once = training.concurrent_jobs(p.cv.folds)
    rows = []
    for batch, n_images, setup, n_jobs in (
        (p.cv.batch_size, len(train.labels) * (p.cv.folds - 1) // p.cv.folds, p.cv, at_once),
        (p.train.batch_size, len(train.labels), p.train, 1),
    ):
        x, y = train.images[:n_images], train.labels[:n_images]
        keras.utils.set_random_seed(0)
        plain = models.build(p.model)
        plain.compile(training.make_optimizer(setup.optimizer, setup.learning_rate), "sparse_categorical_crossentropy", metrics=["accuracy"])
        x_float = x.astype("float32")  # the tutorial's way: a float copy in NumPy
        jobs = {k: training.prepare(p.model, x, y, batch_size=batch, optimizer=setup.optimizer,
                                    learning_rate=setup.learning_rate, seed=k) for k in range(n_jobs)}

        def one_epoch(_, job: training.Job) -> None:
            job.model.fit(job.data, epochs=1, shuffle=False, verbose=0)

        fits = {f"batch {batch}, plain": (lambda: plain.fit(x_float, y, batch_size=batch, epochs=1, verbose=0), n_images),
                f"batch {batch}": (lambda: one_epoch(0, jobs[0]), n_images)}
        if n_jobs > 1:
            fits[f"batch {batch}, {n_jobs} folds at once (crossvalidate)"] = (lambda: training.train_together(jobs, one_epoch), n_jobs * n_images)
        speed = alternate(fits)
        print("  " + ", ".join(f"{k}: {v:,.0f}" for k, v in speed.items()) + " images/s", file=sys.stderr)
        plain_speed = speed.pop(f"batch {batch}, plain")
        rows += [{"setup": name, "epoch_images": n_images, "plain_fit_images_per_s": plain_speed,
                  "pipeline_images_per_s": ours, "ratio": ours / plain_speed} for name, ours in speed.items()]
    flops = training_flops_per_image(models.build(p.model))
    roof_flops = matmul_flops_per_second()
    for row in rows:
        row["fraction_of_roof"] = row["pipeline_images_per_s"] * flops / roof_flops
    return {"rows": rows, "training_flops_per_image": flops, "matmul_flops_per_s": roof_flops, "roof_images_per_s": roof_flops / flops}


def _timed(cmd: list[str], cwd: Path, env: dict) -> tuple[float, float]:
    """Wall seconds and peak RSS (MiB) of the largest process the command ran."""
    probe = "import resource, subprocess, sys; r = subprocess.run(sys.argv[1:]); " \
            "print(resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss); sys.exit(r.returncode)"
    start = time.perf_counter()
    result = subprocess.run([sys.executable, "-c", probe, *cmd], cwd=cwd, env=env, capture_output=True, text=True)
    wall = time.perf_counter() - start
    if result.returncode:
        raise SystemExit(f"{' '.join(cmd)} failed:\n{result.stdout[-2000:]}\n{result.stderr[-3000:]}")
    return wall, int(result.stdout.strip().splitlines()[-1]) / 1024


def bench_pipeline(full: bool, workdir: Path) -> dict:
    from conftest import copy_repo, env_for

    repo = copy_repo(workdir / "repo", params=None if full else SMALL)
    env = env_for(repo)
    stages = {}
    for stage in STAGES:
        wall, peak = _timed(["dvc", "repro", "--single-item", stage], repo, env)
        stages[stage] = {"wall_s": wall, "peak_rss_mib": peak}
        print(f"  {stage}: {wall:.1f} s, {peak:.0f} MiB", file=sys.stderr)
    noop, _ = _timed(["dvc", "repro"], repo, env)
    return {"params": "default (full protocol)" if full else f"small: {json.dumps(SMALL)}", "stages": stages,
            "total_wall_s": sum(s["wall_s"] for s in stages.values()), "noop_repro_s": noop, "repo": repo}


def bench_predict(repo: Path, workdir: Path) -> dict:
    from PIL import Image

    from mnist_pipeline import cli, mnist

    model = repo / "models" / "export" / "model.tflite"
    images = workdir / "pngs"
    images.mkdir()
    test = mnist.load_prepared(repo / "data" / "prepared", "test")
    for i in range(1000):
        Image.fromarray(test.images[i % len(test.images), ..., 0]).save(images / f"{i:04d}.png")
    one = ["mnist-pipeline", "predict", "--model", str(model), str(images / "0000.png")]
    env = dict(os.environ, PATH=f"{Path(sys.executable).parent}{os.pathsep}{os.environ['PATH']}")
    subprocess.run(one, env=env, capture_output=True, check=True)  # warm the page cache
    walls = []
    for _ in range(5):
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
    lines += [f"| {r['setup']} | {r['plain_fit_images_per_s']:,.0f} | {r['pipeline_images_per_s']:,.0f} | "
              f"{r['ratio']:.2f}x | {r['fraction_of_roof']:.0%} |" for r in t["rows"]]
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


def _cpu_name() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--full", action="store_true", help="time the stages with the full default params")
    parser.add_argument("--skip-training", action="store_true", help="skip the training-loop comparison")
    args = parser.parse_args()
    from conftest import MIRROR

    results = {"machine": f"{_cpu_name()}, {os.cpu_count()} cores, Python {platform.python_version()}"}
    with tempfile.TemporaryDirectory() as tmp:
        workdir = Path(tmp)
        print("pipeline stages...", file=sys.stderr)
        pipeline = bench_pipeline(args.full, workdir)
        print("predict...", file=sys.stderr)
        results["predict"] = bench_predict(pipeline.pop("repo"), workdir)
        results["pipeline"] = pipeline
        if not args.skip_training:
            print("training loop vs plain model.fit...", file=sys.stderr)
            results["training"] = bench_training(MIRROR)
    out = ROOT / "bench" / "results.json"
    out.write_text(json.dumps(results, indent=2) + "\n")
    if "training" in results:
        print(markdown(results))


if __name__ == "__main__":
    main()
