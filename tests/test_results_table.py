"""The README's results table is what the committed files say (docs/results_table.py)."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys

import pytest
from helpers import read_json, without_run_ids

from mnist_pipeline.testing import ROOT, copy_repo, env_for

FILES = [
    "README.md",
    "docs/results.md",
    "docs/pipeline.md",
    "docs/results_table.py",
    "bench/full_run_results.json",
    "bench/suite_results.json",
]


def check(repo) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "docs/results_table.py", "--check"], cwd=repo, capture_output=True, text=True)


def copy_of_the_files(tmp_path):
    for name in FILES:
        (tmp_path / name).parent.mkdir(parents=True, exist_ok=True)
        shutil.copy(ROOT / name, tmp_path / name)
    return tmp_path


def committed(name: str, repo=ROOT) -> dict:
    """A file as the last commit has it, whatever `dvc repro` has since written in the working tree."""
    return json.loads(subprocess.run(["git", "show", f"HEAD:{name}"], cwd=repo, capture_output=True, text=True, check=True).stdout)


def test_the_readme_table_is_what_the_committed_files_say():
    result = check(ROOT)
    assert result.returncode == 0, result.stderr
    readme = (ROOT / "README.md").read_text()
    results = readme[readme.index("<!-- results:") : readme.index("<!-- end of results -->")]
    assert len(results.splitlines()) <= 25, "the front page's results fit one screen"
    assert "issue" not in results.lower() and "today" not in results.lower(), "no tracker numbers, no 'today'"


def test_the_committed_outputs_are_the_default_column_s_run():
    """metrics/ as committed (git show HEAD:, not the working tree, which `dvc repro` on another CPU rewrites)
    are the figures of the run the README's default column and CPU sentence name."""
    run = committed("bench/full_run_results.json")["tutorial"]
    assert committed("metrics/eval.json") | committed("metrics/cv.json") == run["metrics"]
    assert committed("reports/eval.json")["test_accuracy"] == run["test_accuracy"]
    assert f"default run of commit {run['commit'][:7]} on {run['machine'].split(',')[0]}" in (ROOT / "README.md").read_text()


def test_a_figure_edited_by_hand_fails_the_check(tmp_path):
    repo = copy_of_the_files(tmp_path)
    served = f"| {json.loads((repo / 'bench' / 'full_run_results.json').read_text())['tutorial']['metrics']['test_acc']:.2%} |"
    readme = (repo / "README.md").read_text()
    assert served in readme
    (repo / "README.md").write_text(readme.replace(served, "| 99.99% |", 1))
    result = check(repo)
    assert result.returncode == 1 and "README.md (results) differ from the run records" in result.stderr


def test_a_new_result_without_the_readme_fails_the_check(tmp_path):
    repo = copy_of_the_files(tmp_path)
    runs = json.loads((repo / "bench" / "full_run_results.json").read_text())
    worse = runs["tutorial"]["metrics"]["ece"] + 0.01
    runs["tutorial"]["metrics"]["ece"] = worse
    (repo / "bench" / "full_run_results.json").write_text(json.dumps(runs))
    assert check(repo).returncode == 1
    subprocess.run([sys.executable, "docs/results_table.py", "--write"], cwd=repo, check=True)
    assert check(repo).returncode == 0
    assert f"| {worse:.2%} (" in (repo / "README.md").read_text()


@pytest.mark.parametrize("commit", [None, "d847aeb", "not a commit"])
def test_a_record_without_its_commit_fails_the_check(tmp_path, commit):
    repo = copy_of_the_files(tmp_path)
    runs = json.loads((repo / "bench" / "full_run_results.json").read_text())
    runs["strong"] = runs["tutorial"] | {"commit": commit}
    if commit is None:
        del runs["strong"]["commit"]
    (repo / "bench" / "full_run_results.json").write_text(json.dumps(runs))
    for mode in ("--check", "--write"):
        result = subprocess.run([sys.executable, "docs/results_table.py", mode], cwd=repo, capture_output=True, text=True)
        assert result.returncode == 1 and result.stderr.strip() == (
            "error: bench/full_run_results.json: 'strong' names no commit (40 hex digits): a figure must say which code made it"
        )
    assert (repo / "README.md").read_text() == (ROOT / "README.md").read_text(), "nothing written"


def test_readme_command_1_then_command_2_in_one_checkout(pipeline):
    """`dvc repro` (here with the tiny params: every metric differs from the committed ones, as another CPU's
    would), then the results-table tests in that same checkout: they read committed files only."""
    assert json.loads((pipeline / "metrics" / "eval.json").read_text()) != committed("metrics/eval.json", pipeline)
    result = subprocess.run(
        [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "-n0", "-m", "not slow", "tests/test_results_table.py"],
        cwd=pipeline,
        env=env_for(pipeline, PYTHONDONTWRITEBYTECODE="1"),  # writes nothing in the session's pipeline
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert result.returncode == 0, result.stdout[-3000:]
    assert " passed" in result.stdout.splitlines()[-1] and "failed" not in result.stdout.splitlines()[-1]


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
    assert set(run["metrics"]) >= {"test_acc", "cv_acc", "ece"} and 0.5 < run["metrics"]["test_acc"] <= 1
    assert run["instruction_set"] in run["machine"] and run["precision"] == "float32" and "ece_raw" in run["calibration"]["ensemble"]
    assert set(run["test_accuracy"]) >= {"final", "ensemble", "fold_1"}
    assert run["metrics"] == read_json(pipeline / "metrics" / "eval.json") | read_json(pipeline / "metrics" / "cv.json")
    for path in [*(pipeline / "metrics").glob("*.json"), *(pipeline / "reports").glob("*.json")]:
        name = path.relative_to(pipeline)
        assert without_run_ids(read_json(clone / name)) == without_run_ids(read_json(path)), name
    assert (clone / "plots" / "confusion.csv").read_text() == (pipeline / "plots" / "confusion.csv").read_text()
