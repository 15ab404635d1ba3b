"""The benchmarks in bench/ still run: each script's --tiny mode, a real process on tiny inputs,
so that a renamed stage, param, output or function breaks a test rather than the next
measurement. Timings are never asserted (machines are shared): only that each script wrote the
results it promises, with plausible values."""

from __future__ import annotations

import ast
import json
import re
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import yaml
from helpers import read_json

from mnist_pipeline import imaging
from mnist_pipeline.testing import ROOT, run

SCRIPTS = [
    "bench.py",
    "detector.py",
    "precision.py",
    "predict_models.py",
    "scaling.py",
    "scans.py",
    "serve.py",
    "stroke_widths.py",
    "strong.py",
    "suite.py",
]


def tiny(script: str, out: Path, *args: str, repo: Path = ROOT) -> dict:
    """Run bench/<script> --tiny in `repo` (its own bench/, src/ and outputs) and read what it wrote to `out`."""
    run(repo, sys.executable, str(repo / "bench" / script), "--tiny", "--out", str(out), *args)
    return read_json(out)


def test_bench_imports_nothing_from_tests():
    """What bench/ shares with the tests is mnist_pipeline.testing: no script puts tests/ on its path."""
    for script in sorted((ROOT / "bench").glob("*.py")):
        tree = ast.parse(script.read_text())
        modules = {alias.name for node in ast.walk(tree) if isinstance(node, ast.Import) for alias in node.names}
        modules |= {node.module for node in ast.walk(tree) if isinstance(node, ast.ImportFrom) and node.module}
        assert not {name.split(".")[0] for name in modules} & {"helpers", "conftest", "tests"}, script.name
        paths = [ast.unparse(node) for node in ast.walk(tree) if isinstance(node, ast.Call) and "sys.path" in ast.unparse(node.func)]
        assert not [path for path in paths if "tests" in path], f"{script.name} puts tests/ on sys.path"


def test_the_shared_tools_load_neither_tensorflow_nor_mlflow():
    probe = "import sys, mnist_pipeline.testing; print(sorted(m for m in ('tensorflow', 'mlflow', 'keras') if m in sys.modules))"
    assert run(ROOT, sys.executable, "-c", probe).stdout.strip() == "[]"


def test_the_performance_page_names_every_script_and_its_results_file():
    """docs/performance.md's table: each script in bench/, what it measures, and its committed results file."""
    table = re.findall(r"^\| `bench/(\w+\.py)` \| .+ \| `(bench/\w+\.json)` \|$", (ROOT / "docs" / "performance.md").read_text(), re.M)
    assert sorted(script for script, _ in table) == sorted(path.name for path in (ROOT / "bench").glob("*.py"))
    assert [results for _, results in table if not (ROOT / results).is_file()] == []


@pytest.mark.parametrize("script", SCRIPTS)
def test_a_tiny_run_never_writes_over_the_committed_results(script, tmp_path):
    shutil.copytree(ROOT / "bench", tmp_path / "bench")  # without the guard, the copy's results would change, not the repo's
    result = subprocess.run([sys.executable, tmp_path / "bench" / script, "--tiny"], capture_output=True, text=True, timeout=120)
    assert result.returncode == 2 and "--tiny needs --out outside bench/" in result.stderr, result.stderr[-2000:]


def test_scans(tiny_model, tmp_path):
    results = tiny("scans.py", tmp_path / "scans.json", "--models", str(tiny_model))
    n = results["n_scans"]
    assert 0 < n < 1797  # a subset of scikit-learn's 1,797 scans
    renderings = results["results"][tiny_model.name]
    assert len(renderings) == 4
    for r in renderings.values():
        assert 0.2 < r["accuracy"] <= 1  # the tiny model reads about 40% of them: well above chance
        assert 0 <= r["flagged"] <= 1 and 0 <= r["wrong_with_90_percent"] <= n


def test_serve(tiny_model, tmp_path):
    results = tiny("serve.py", tmp_path / "serve.json", "--model", str(tiny_model))
    assert 0 < results["start_to_first_answer_s"]["1"] < 60
    assert {(r["workers"], r["image"], r["clients"]) for r in results["rows"]} == {
        (1, image, clients) for image in ("28x28 PNG", "1-megapixel JPEG") for clients in (1, 16)
    }
    for r in results["rows"]:
        assert r["requests"] >= 1 and r["requests_per_s"] > 0 and 0 < r["p50_ms"] <= r["p99_ms"]


def test_suite(tmp_path):
    results = tiny("suite.py", tmp_path / "suite.json", "--tier", "fast")["fast"]
    assert results["command"] == "python -m pytest -m 'not slow' " + " ".join(
        f"tests/test_project.py::{name}" for name in ("test_the_lock_matches_pyproject", "test_ruff_finds_nothing_to_fix")
    )
    assert results["tests"] == len(results["slowest"]) == 2
    assert 0 < max(results["slowest"].values()) < results["wall_s"]


@pytest.mark.slow
def test_scaling(tmp_path):
    best = tiny("scaling.py", tmp_path / "scaling.json")["best"]
    assert best["input_batch_32"] > 0 and best["input_batch_200"] > 0 and best["startup_s"] > 0
    one, mirrored = best["train_none"], best["train_mirrored_2_cpus"]
    assert (one["replicas"], mirrored["replicas"]) == (1, 2)
    assert one["images_per_s"] > 0 and mirrored["images_per_s"] > 0
    assert one["gradient_bytes"] == mirrored["gradient_bytes"] > 100_000  # the same model's weights, float32


@pytest.mark.slow
def test_strong(tmp_path):
    results = tiny("strong.py", tmp_path / "strong.json")
    assert len(results["images_per_s"]) == 5 and all(rate > 0 for rate in results["images_per_s"].values())
    assert results["training_flops_per_image"] > 1e6 and results["matmul_flops_per_s"] > 1e8


@pytest.mark.slow  # bfloat16 emulated where the CPU lacks it: a minute or two
def test_precision(tmp_path):
    results = tiny("precision.py", tmp_path / "precision.json")
    [(model, runs)] = results["runs"].items()
    assert model.startswith("tutorial CNN") and set(runs) >= {"float32", "mixed_bfloat16"}
    assert all(len(values) == results["rounds"] == 1 and values[0] > 0 for values in runs.values())
    speedup = results["speedup_over_float32"][model]["mixed_bfloat16"]
    assert speedup == pytest.approx(runs["mixed_bfloat16"][0] / runs["float32"][0])
    assert results["machine"] and isinstance(results["cpu_flags"], list)


def test_predict_models(pipeline, tmp_path):
    results = tiny("predict_models.py", tmp_path / "predict_models.json", repo=pipeline)
    assert set(results["median_s"]) == {"bare_final.tflite", "final.tflite", "ensemble_float32.tflite", "ensemble.tflite"}
    for name, median in results["median_s"].items():
        assert set(median) == {"directory", "one_image"}
        assert all(0 < results["best_s"][name][kind] <= median[kind] for kind in median)


def test_detector(pipeline, tiny_model, tmp_path):
    """Two served models side by side (the pipeline's and the committed tiny one), on every set."""
    served = pipeline / "models" / "export" / "model.tflite"
    args = ("--models", str(served), str(tiny_model), "--names", "served", "committed")
    results = tiny("detector.py", tmp_path / "detector.json", *args, repo=pipeline)["results"]
    assert set(results) == {"served", "committed"}
    for sets in results.values():
        assert {"mnist test", "low_resolution", "drawn", "typed_symbol", "drawn_shape", "UCI scans, 32 px, nearest"} <= set(sets)
        assert all(0 <= r["flagged"] <= 1 and r["n"] > 0 for r in sets.values())
        digits = {name: r for name, r in sets.items() if "read_right" in r}
        non_digits = {name: r for name, r in sets.items() if "answered_sure" in r}
        assert len(digits) + len(non_digits) == len(sets) and non_digits
        assert sets["mnist test"]["read_right"] > 0.6  # tiny models read about 80% of MNIST's test digits
        assert np.mean([r["flagged"] for r in non_digits.values()]) > sets["mnist test"]["flagged"]


def test_stroke_widths(pipeline, tmp_path):
    results = tiny("stroke_widths.py", tmp_path / "stroke_widths.json", repo=pipeline)
    low, median, high = (results["percentiles"][p] for p in ("1", "50", "99"))
    assert low <= median <= high and imaging.MNIST_STROKE[0] < median < imaging.MNIST_STROKE[2]
    assert results["outside"] < 0.05  # the range imaging.MNIST_STROKE says holds MNIST's strokes


@pytest.mark.slow
def test_bench(tmp_path):
    """Its own tiny pipeline, stage by stage (it times each), then predict and the training loops."""
    results = tiny("bench.py", tmp_path / "results.json")
    stages = results["pipeline"]["stages"]
    assert set(stages) == set(yaml.safe_load((ROOT / "dvc.yaml").read_text())["stages"])  # every stage, each timed on its own
    assert all(s["wall_s"] > 0 and s["peak_rss_mib"] > 10 for s in stages.values())
    assert 0 < results["pipeline"]["noop_repro_s"] < results["pipeline"]["total_wall_s"]
    predict = results["predict"]
    assert predict["n_images"] == 20 and predict["directory_images_per_s"] > 0 and predict["one_image_process_s"] > 0
    training = results["training"]
    assert len(training["rows"]) == 3 and training["roof_images_per_s"] > 0
    assert all(r["plain_fit_images_per_s"] > 0 and r["pipeline_images_per_s"] > 0 and r["fraction_of_roof"] > 0 for r in training["rows"])


@pytest.mark.parametrize("script", ["detector.py", "predict_models.py"])
def test_a_script_run_before_the_pipeline_says_so_in_one_line(script, tiny_model, tmp_path):
    shutil.copytree(ROOT / "bench", tmp_path / "bench")  # a checkout without data/ and models/
    out = tmp_path / "results.json"
    command = [sys.executable, tmp_path / "bench" / script, "--tiny", "--out", out, "--models", tiny_model]
    result = subprocess.run(command, capture_output=True, text=True, timeout=120)
    assert result.returncode == 1 and not out.exists()
    assert result.stderr.splitlines() == [result.stderr.strip()] and "run `dvc repro" in result.stderr, result.stderr[-2000:]


@pytest.mark.slow
def test_same_results_tells_a_run_from_a_changed_one(pipeline, tmp_path):
    """The session's pipeline against itself: all the same; against a copy whose first fold model
    is the second's and whose CV accuracy moved: those two, and only those, differ."""
    same = tmp_path / "same.json"
    run(ROOT, sys.executable, str(ROOT / "bench" / "same_results.py"), str(pipeline), str(pipeline), "--out", str(same))
    assert read_json(same)["all_same"] and len(read_json(same)["compared"]) >= 9
    changed = tmp_path / "changed"
    for part in ("models", "metrics", "reports", ".git"):
        shutil.copytree(pipeline / part, changed / part)
    shutil.copy(changed / "models" / "folds" / "fold-2.keras", changed / "models" / "folds" / "fold-1.keras")
    cv = read_json(changed / "metrics" / "cv.json")
    (changed / "metrics" / "cv.json").write_text(json.dumps(cv | {"cv_acc": cv["cv_acc"] + 0.001}))
    out = tmp_path / "changed.json"
    run(ROOT, sys.executable, str(ROOT / "bench" / "same_results.py"), str(pipeline), str(changed), "--out", str(out))
    compared = read_json(out)["compared"]
    assert not read_json(out)["all_same"]
    differing = {name for name, check in compared.items() if next(iter(check.values())) is not True}
    assert differing == {"models/folds/fold-1.keras", "metrics/cv.json"}
