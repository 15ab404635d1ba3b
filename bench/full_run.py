"""README command 1 as a user runs it, measured: a fresh clone of this repository's HEAD, its
install (`uv sync --locked` into a new .venv, as the README says), then `dvc repro` (the default
params) or `dvc exp run -S recipe=<name>` (a preset), each timed, the run with the peak memory of
its whole process tree. Writes the times, peak memory, machine and headline results into
bench/full_run_results.json under the recipe's name: the README's results table
(docs/results_table.py) reads them from there.

    python bench/full_run.py                         # install + the default protocol
    python bench/full_run.py --recipe strong         # install + the strong preset
    python bench/full_run.py --install pip --install-only   # the install alone, as `pip install -e .` (before uv.lock)
    python bench/full_run.py --keep /tmp/run         # keep the clone (its dvc.lock, metrics/, reports/)
    python bench/full_run.py --tiny --install none --out F.json   # tiny params in this environment: checks this script
    python bench/full_run.py --source ../other-checkout          # a clone of another repository's HEAD

Each install starts with empty package caches of its own (downloads included in its time).
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import psutil

from mnist_pipeline import machine

ROOT = Path(__file__).resolve().parents[1]
RESULTS = ROOT / "bench" / "full_run_results.json"


def peak_tree_rss(process: subprocess.Popen, peak: list[int]) -> None:
    """Sample the summed RSS of the process and its descendants every 0.2 s until it ends."""
    root = psutil.Process(process.pid)
    while process.poll() is None:
        try:
            tree = [root, *root.children(recursive=True)]
            peak[0] = max(peak[0], sum(p.memory_info().rss for p in tree if p.is_running()))
        except psutil.Error:
            pass
        time.sleep(0.2)


INSTALLS = {  # README command 1's install, and the one it replaced
    "uv": "python3 -m venv .venv && .venv/bin/pip install -q uv==0.13.9 && .venv/bin/uv sync -q --locked",
    "pip": "python3 -m venv .venv && .venv/bin/pip install -q -e .",
}


def install(repo: Path, installer: str, caches: Path) -> float:
    env = os.environ | {"UV_CACHE_DIR": str(caches / "uv"), "PIP_CACHE_DIR": str(caches / "pip")}
    start = time.monotonic()
    subprocess.run(["bash", "-c", INSTALLS[installer]], cwd=repo, env=env, check=True)
    return round(time.monotonic() - start, 1)


def measure(repo: Path, command: list[str], log: Path, bin_dir: Path) -> dict:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("MLFLOW_", "DVC_"))}
    env["PATH"] = f"{bin_dir}{os.pathsep}{env['PATH']}"
    peak = [0]
    start = time.monotonic()
    with log.open("w") as out:
        process = subprocess.Popen(command, cwd=repo, env=env, stdout=out, stderr=subprocess.STDOUT)
        sampler = threading.Thread(target=peak_tree_rss, args=(process, peak), daemon=True)
        sampler.start()
        process.wait()
        sampler.join()
    wall = time.monotonic() - start
    if process.returncode:
        raise SystemExit(f"error: {' '.join(command)} exited {process.returncode}; its output: {log}")
    return {"wall_s": round(wall, 1), "peak_rss_gib": round(peak[0] / 2**30, 2)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--recipe", default="tutorial", help="tutorial (the default params.yaml, `dvc repro`) or a file in conf/recipe/")
    parser.add_argument("--tiny", action="store_true", help="the tests' tiny params: checks the script, measures nothing worth quoting")
    parser.add_argument("--out", type=Path, default=RESULTS, help=f"results file (default {RESULTS.relative_to(ROOT)})")
    parser.add_argument("--keep", type=Path, help="make the clone here and keep it")
    parser.add_argument("--source", type=Path, default=ROOT, help="the repository to clone (default: this one)")
    parser.add_argument("--install", choices=[*INSTALLS, "none"], default="uv", help="none: run in this interpreter's environment")
    parser.add_argument("--install-only", action="store_true", help="time the install alone, under the key install-<installer>")
    args = parser.parse_args()
    if args.tiny and args.out.resolve() == RESULTS:
        parser.error("--tiny needs --out outside bench/: its figures are not the committed ones")
    if not (ROOT / "conf" / "recipe" / f"{args.recipe}.yaml").is_file():
        raise SystemExit(f"error: no recipe {args.recipe!r}: expected conf/recipe/{args.recipe}.yaml")
    commit = subprocess.run(["git", "rev-parse", "HEAD"], cwd=args.source, capture_output=True, text=True, check=True).stdout.strip()
    with tempfile.TemporaryDirectory() as scratch:
        repo = args.keep or Path(scratch) / "clone"
        subprocess.run(["git", "clone", "-q", str(args.source), str(repo)], check=True)
        installed = (
            {}
            if args.install == "none"
            else {"install_s": install(repo, args.install, Path(scratch) / "caches"), "install": INSTALLS[args.install]}
        )
        if args.install_only:
            record(args.out, f"install-{args.install}", installed | {"commit": commit, "machine": machine.describe()})
            return
        bin_dir = Path(sys.executable).parent if args.install == "none" else repo / ".venv" / "bin"
        overrides = [] if args.recipe == "tutorial" else [f"recipe={args.recipe}"]
        if args.tiny:
            from mnist_pipeline.testing import TINY

            overrides += [f"{section}.{key}={value}" for section, values in TINY.items() for key, value in values.items()]
        command = ["dvc", "exp", "run", "-n", args.recipe] + [a for o in overrides for a in ("-S", o)] if overrides else ["dvc", "repro"]
        log = Path(tempfile.gettempdir()) / f"full_run-{args.recipe}.log"
        print(f"{' '.join(command)} in a fresh clone of {commit[:7]} ({repo}); its output: {log}", flush=True)
        measured = installed | measure(repo, command, log, bin_dir)
        read = {
            name: json.loads((repo / name).read_text())
            for name in ("metrics/eval.json", "metrics/cv.json", "reports/eval.json", "reports/detector.json", "reports/train.json")
        }
    result = measured | {
        "command": " ".join(command),
        "commit": commit,
        "machine": machine.describe(),
        "instruction_set": machine.instruction_set(),
        "precision": read["reports/train.json"]["precision"],
        "tiny": args.tiny,
        "metrics": read["metrics/eval.json"] | read["metrics/cv.json"],
        "test_accuracy": read["reports/eval.json"]["test_accuracy"],
        "served": read["reports/eval.json"]["served"],
        "calibration": read["reports/eval.json"]["calibration"],
        "photos": {
            key: read["reports/eval.json"][f"{key}_photos"]
            for key in ("accuracy", "flagged", "read_right")
            if f"{key}_photos" in read["reports/eval.json"]
        },
        "by_kind": {key: read["reports/eval.json"].get(key) for key in BY_KIND},
        "detector_validation": read["reports/detector.json"],
    }
    record(args.out, args.recipe, result)


BY_KIND = ("flagged_digits", "read_right_digits", "flagged_non_digits", "non_digits_answered_sure")  # reports/eval.json's


def record(out: Path, key: str, result: dict) -> None:
    """Under `key`; the run it replaces stays, as `key@<its commit>` (docs/results.md lists them all)."""
    results = json.loads(out.read_text()) if out.exists() else {}
    if key in results and results[key].get("commit") != result["commit"]:
        results[f"{key}@{results[key]['commit'][:7]}"] = results[key]
    results[key] = result
    out.write_text(json.dumps(results, indent=2, sort_keys=True) + "\n")
    print(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
