"""The README's results table is what the committed files say (docs/results_table.py)."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys

import pytest
from helpers import ROOT, copy_repo, env_for, read_json, without_run_ids

FILES = [
    "README.md",
    "docs/results_table.py",
    "metrics/eval.json",
    "metrics/cv.json",
    "reports/eval.json",
    "reports/export.json",
    "bench/full_run_results.json",
    "bench/predict_models_results.json",
    "bench/suite_results.json",
]


def check(repo) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "docs/results_table.py", "--check"], cwd=repo, capture_output=True, text=True)


def copy_of_the_files(tmp_path):
    for name in FILES:
        if (ROOT / name).exists():
            (tmp_path / name).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy(ROOT / name, tmp_path / name)
    return tmp_path


def test_the_readme_table_is_what_the_committed_files_say():
    result = check(ROOT)
    assert result.returncode == 0, result.stderr


def test_a_figure_edited_by_hand_fails_the_check(tmp_path):
    repo = copy_of_the_files(tmp_path)
    served = f"| {json.loads((repo / 'metrics' / 'eval.json').read_text())['test_acc']:.2%} |"
    readme = (repo / "README.md").read_text()
    assert served in readme
    (repo / "README.md").write_text(readme.replace(served, "| 99.99% |", 1))
    result = check(repo)
    assert result.returncode == 1 and "README.md's results differ from the committed files" in result.stderr


def test_a_new_result_without_the_readme_fails_the_check(tmp_path):
    repo = copy_of_the_files(tmp_path)
    metrics = json.loads((repo / "metrics" / "eval.json").read_text())
    worse = metrics["ece"] + 0.01
    (repo / "metrics" / "eval.json").write_text(json.dumps(metrics | {"ece": worse}))
    assert check(repo).returncode == 1
    subprocess.run([sys.executable, "docs/results_table.py", "--write"], cwd=repo, check=True)
    assert check(repo).returncode == 0
    assert f"| {worse:.2%} ({metrics['ece_raw']:.2%}) |" in (repo / "README.md").read_text()


@pytest.mark.slow  # a tiny `dvc exp run` in a fresh clone
def test_a_full_run_is_measured_from_a_fresh_clone_and_reproduces_every_figure(tmp_path, pipeline):
    """bench/full_run.py on a clone of this working tree: what it records, and (the same params on the same
    machine give the same metrics) every metrics and reports file of the session's `pipeline`, figure for figure."""
    source = copy_repo(tmp_path / "source")
    out, clone = tmp_path / "runs.json", tmp_path / "clone"
    subprocess.run(
        [
            sys.executable,
            "bench/full_run.py",
            "--tiny",
            "--install",
            "none",
            "--source",
            str(source),
            "--keep",
            str(clone),
            "--out",
            str(out),
        ],
        cwd=ROOT,
        env=env_for(ROOT),  # the MNIST mirror, as every test's pipeline has it
        check=True,
        capture_output=True,
        timeout=900,
    )
    run = json.loads(out.read_text())["tutorial"]
    head = subprocess.run(["git", "rev-parse", "HEAD"], cwd=source, capture_output=True, text=True, check=True).stdout.strip()
    assert run["commit"] == head and run["tiny"] and run["command"].startswith("dvc exp run -n tutorial -S data.train_limit=1200")
    assert run["wall_s"] > 0 and 0.1 < run["peak_rss_gib"] < 24
    assert set(run["metrics"]) >= {"test_acc", "cv_acc", "ece", "ece_raw"} and 0.5 < run["metrics"]["test_acc"] <= 1
    assert set(run["test_accuracy"]) >= {"final", "ensemble", "fold_1"}
    assert run["metrics"] == read_json(pipeline / "metrics" / "eval.json") | read_json(pipeline / "metrics" / "cv.json")
    for path in [*(pipeline / "metrics").glob("*.json"), *(pipeline / "reports").glob("*.json")]:
        name = path.relative_to(pipeline)
        assert without_run_ids(read_json(clone / name)) == without_run_ids(read_json(path)), name
    assert (clone / "plots" / "confusion.csv").read_text() == (pipeline / "plots" / "confusion.csv").read_text()
