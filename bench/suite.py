"""The test suite's wall time as README command 2 runs it (`python -m pytest`: two pytest-xdist
workers), and the fast tier's (`-m "not slow"`), with the slowest tests of each. Writes them into
bench/suite_results.json under the tier's name, with the commit and the machine.

    python bench/suite.py                        # the whole suite, some 17 min on 2 cores
    python bench/suite.py --tier fast            # the fast tier, a few minutes
    python bench/suite.py --tiny --out F.json    # one quick test file: checks this script

A failing run records nothing: its times would not be the suite's.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
import time
import xml.etree.ElementTree as ET
from pathlib import Path

from bench import parse_args
from mnist_pipeline import machine

ROOT = Path(__file__).resolve().parents[1]
TIERS = {"full": [], "fast": ["-m", "not slow"]}
TINY_TESTS = [  # two quick tests, neither imports TensorFlow
    "tests/test_project.py::test_the_lock_matches_pyproject",
    "tests/test_project.py::test_ruff_finds_nothing_to_fix",
]


def run_suite(args: list[str], scratch: Path) -> dict:
    """pytest with `args`, timed; the outcome and time of each test from its JUnit XML report."""
    report = scratch / "junit.xml"
    # a basetemp of its own: pytest prunes old ones in the default place, which may be a running suite's
    command = [sys.executable, "-m", "pytest", *args, "-q", f"--junitxml={report}", f"--basetemp={scratch / 'basetemp'}"]
    start = time.monotonic()
    result = subprocess.run(command, cwd=ROOT, capture_output=True, text=True)
    wall = time.monotonic() - start
    if result.returncode:
        summary = result.stdout[-3000:]
        raise SystemExit(f"error: python -m pytest {' '.join(args)} exited {result.returncode}; no times recorded:\n{summary}")
    cases = ET.parse(report).getroot().iter("testcase")
    seconds = {f"{case.get('classname')}::{case.get('name')}": float(case.get("time")) for case in cases}
    return {"wall_s": round(wall, 1), "tests": len(seconds), "slowest": dict(sorted(seconds.items(), key=lambda kv: -kv[1])[:10])}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--tier", choices=TIERS, default="full", help="full (README command 2) or fast (-m 'not slow')")
    args = parse_args(parser, "suite_results.json")
    pytest_args = TIERS[args.tier] + (TINY_TESTS if args.tiny else [])
    print(f"python -m pytest {' '.join(pytest_args)} ...", file=sys.stderr, flush=True)
    with tempfile.TemporaryDirectory() as scratch:
        measured = run_suite(pytest_args, Path(scratch))
    commit = subprocess.run(["git", "rev-parse", "HEAD"], cwd=ROOT, capture_output=True, text=True).stdout.strip()
    dirty = bool(subprocess.run(["git", "status", "--porcelain"], cwd=ROOT, capture_output=True, text=True).stdout.strip())
    results = json.loads(args.out.read_text()) if args.out.exists() else {}
    results[args.tier] = measured | {
        "command": " ".join(["python -m pytest", *(f"'{a}'" if " " in a else a for a in pytest_args)]),
        "commit": commit + ("+uncommitted changes" if dirty else ""),
        "machine": machine.describe(),
    }
    args.out.write_text(json.dumps(results, indent=2) + "\n")
    print(json.dumps(results[args.tier], indent=2))


if __name__ == "__main__":
    main()
