"""The README's results table is what the committed files say (docs/results_table.py)."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys

from helpers import ROOT

FILES = ["README.md", "docs/results_table.py", "metrics/eval.json", "metrics/cv.json", "reports/eval.json",
         "bench/full_run_results.json", "bench/predict_models_results.json"]


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
    (repo / "metrics" / "eval.json").write_text(json.dumps(metrics | {"ece": metrics["ece"] + 0.01}))
    assert check(repo).returncode == 1
    subprocess.run([sys.executable, "docs/results_table.py", "--write"], cwd=repo, check=True)
    assert check(repo).returncode == 0
    assert f"{metrics['ece'] / 2:.2%}" in (repo / "README.md").read_text()
