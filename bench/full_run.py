"""A whole pipeline run as a user makes it, measured: a fresh clone of this repository's HEAD, then
`dvc repro` (the default params) or `dvc exp run -S recipe=<name>` (a preset), timed, with the peak
memory of the whole process tree. Writes the run's wall time, peak memory, machine and headline
results into bench/full_run_results.json under the recipe's name: the README's results table
(docs/results_table.py) reads them from there.

    python bench/full_run.py                       # the default protocol, ~11 min on 2 cores
    python bench/full_run.py --recipe strong       # the strong preset, ~40 min
    python bench/full_run.py --keep /tmp/run       # keep the clone (its dvc.lock, metrics/, reports/)
    python bench/full_run.py --tiny --out F.json   # the tests' tiny params, ~2 min: checks this script

The clone's environment is this one (the interpreter running this script, its `dvc`).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import psutil

ROOT = Path(__file__).resolve().parents[1]
RESULTS = ROOT / "bench" / "full_run_results.json"
sys.path.insert(0, str(ROOT / "tests"))


def cpu_name() -> str:
    for line in Path("/proc/cpuinfo").read_text().splitlines() if Path("/proc/cpuinfo").exists() else []:
        if line.startswith("model name"):
            return line.split(":", 1)[1].strip()
    return platform.processor() or platform.machine()


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


def measure(repo: Path, command: list[str], log: Path) -> dict:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("MLFLOW_", "DVC_"))}
    env["PATH"] = f"{Path(sys.executable).parent}{os.pathsep}{env['PATH']}"
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
    args = parser.parse_args()
    if not (ROOT / "conf" / "recipe" / f"{args.recipe}.yaml").is_file():
        raise SystemExit(f"error: no recipe {args.recipe!r}: expected conf/recipe/{args.recipe}.yaml")
    commit = subprocess.run(["git", "rev-parse", "HEAD"], cwd=ROOT, capture_output=True, text=True, check=True).stdout.strip()
    with tempfile.TemporaryDirectory() as scratch:
        repo = args.keep or Path(scratch) / "clone"
        subprocess.run(["git", "clone", "-q", str(ROOT), str(repo)], check=True)
        overrides = [] if args.recipe == "tutorial" else [f"recipe={args.recipe}"]
        if args.tiny:
            from helpers import TINY

            overrides += [f"{section}.{key}={value}" for section, values in TINY.items() for key, value in values.items()]
        command = ["dvc", "exp", "run", "-n", args.recipe] + [a for o in overrides for a in ("-S", o)] if overrides else ["dvc", "repro"]
        log = Path(tempfile.gettempdir()) / f"full_run-{args.recipe}.log"
        print(f"{' '.join(command)} in a fresh clone of {commit[:7]} ({repo}); its output: {log}", flush=True)
        measured = measure(repo, command, log)
        read = {name: json.loads((repo / name).read_text()) for name in ("metrics/eval.json", "metrics/cv.json", "reports/eval.json")}
    result = measured | {
        "command": " ".join(command),
        "commit": commit,
        "machine": f"{cpu_name()}, {os.cpu_count()} cores, {psutil.virtual_memory().total / 2**30:.0f} GiB, Python {platform.python_version()}",
        "tiny": args.tiny,
        "metrics": read["metrics/eval.json"] | read["metrics/cv.json"],
        "test_accuracy": read["reports/eval.json"]["test_accuracy"],
    }
    results = json.loads(args.out.read_text()) if args.out.exists() else {}
    results[args.recipe] = result
    args.out.write_text(json.dumps(results, indent=2, sort_keys=True) + "\n")
    print(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
