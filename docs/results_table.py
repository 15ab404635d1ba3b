"""The README's results and docs/results.md, rendered from the committed run records that the measuring
runs wrote, each with its commit and machine: bench/full_run_results.json (whole runs in a fresh clone:
bench/full_run.py) and bench/suite_results.json (the test suite's times: bench/suite.py).

    python docs/results_table.py            # print the README's section
    python docs/results_table.py --write    # replace the sections in README.md, docs/results.md and docs/pipeline.md
    python docs/results_table.py --check    # exit 1 when they differ from what the records say

Nothing here reads the working tree's metrics/: `dvc repro` on another kind of CPU rewrites those, and
the README still says what the committed runs measured. A record without a commit fails every mode.
tests/test_results_table.py runs --check, so a figure edited by hand, or a record changed without the
README, fails the fast tier.
"""

from __future__ import annotations

import argparse
import json
import re
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
README, RESULTS_PAGE = Path("README.md"), Path("docs/results.md")
RUNS, SUITE = Path("bench/full_run_results.json"), Path("bench/suite_results.json")
START = "<!-- {name}: rendered by docs/results_table.py from bench/*_results.json; edit those, not this -->"
END = "<!-- end of {name} -->"
PRESETS = {"tutorial": "default: `dvc repro`", "strong": "strong preset: `dvc exp run -S recipe=strong`"}
DIGIT_NAMES = {  # reports/eval.json's kinds, as the docs name them
    "restroked": "MNIST redrawn with other strokes",
    "typed": "typed",
    "sketched": "sketched",
    "drawn": "drawn as on the page",
    "low_resolution": "low-resolution (brought down, scaled up)",
}
NON_DIGIT_NAMES = {
    "typed_symbol": "typed letters and symbols",
    "sketched_symbol": "the same sketched by hand",
    "drawn_shape": "drawn letters and doodles",
    "scribble": "scribbles",
    "texture": "textures like crops of photos",
    "digit_overlay": "two digits written over each other",
}


class RecordError(SystemExit):
    def __init__(self, message: str):
        super().__init__(f"error: {message}")


def pct(value: float, digits: int = 2) -> str:
    return f"{value:.{digits}%}"


def minutes(seconds: float) -> str:
    return f"{int(seconds // 60)} min {round(seconds % 60):02d} s"


def load(root: Path = ROOT) -> dict[str, dict]:
    """The run records, each checked to name the commit (40 hex digits) and machine that made it."""
    records = {}
    for path in (RUNS, SUITE):
        records[path.name] = json.loads((root / path).read_text()) if (root / path).exists() else {}
        for name, record in records[path.name].items():
            if not re.fullmatch(r"[0-9a-f]{40}", str(record.get("commit", ""))):
                raise RecordError(f"{path}: {name!r} names no commit (40 hex digits): a figure must say which code made it")
            if not record.get("machine"):
                raise RecordError(f"{path}: {name!r} names no machine")
    return {"runs": records[RUNS.name], "suite": records[SUITE.name]}


def cpu(record: dict) -> str:
    """The machine as a column names it: the CPU and its instruction set."""
    name = re.split(r" \(|, \d+ cores", record["machine"])[0]
    isa = record.get("instruction_set")
    return f"{name} ({isa})" if isa else record["machine"].split(", ")[0]


def figures(run: dict) -> dict[str, str]:
    metrics, each = run["metrics"], run["test_accuracy"]
    folds = [v for k, v in each.items() if k.startswith("fold_")]
    served = run.get("served", "ensemble")
    ece_raw = run["calibration"][served]["ece_raw"] if "calibration" in run else metrics["ece_raw"]
    photo_acc = (run.get("photos") or {}).get("accuracy", metrics.get("photo_acc"))
    figures = {
        "run": f"commit {run['commit'][:7]}, {cpu(run)}, {run.get('precision', 'float32')}",
        "served": pct(metrics["test_acc"]),
        "members": f"{pct(each['final'])} / {pct(min(folds))}–{pct(max(folds))}" if folds else pct(each["final"]),
        "cv": f"{pct(metrics['cv_acc'])} ± {pct(metrics['cv_std'])}",
        "mnist_flag": pct(metrics["flag_mnist"]),
        "non_digits": f"{pct(metrics['flag_nondigit'], 1)} / {pct(metrics['nondigit_sure'], 1)}",
        "ece": f"{pct(metrics['ece'])} ({pct(ece_raw)})",
    }
    if "wall_s" in run:
        figures["time"] = f"{minutes(run['wall_s'])}, {run['peak_rss_gib']:.1f} GiB"
    if photo_acc is not None:  # evaluate.photos: 0 measures none
        figures["photos"] = f"{pct(metrics['photo_read'], 1)} / {pct(photo_acc, 1)} / {pct(metrics['photo_flag'], 1)}"
    return figures


ROWS = {
    "run": "run: commit, CPU (instruction set), precision",
    "time": "wall time, peak memory",
    "served": "served model (`models/export/model.tflite`), MNIST test set",
    "members": "final model / each fold model, test set",
    "cv": "cross-validation, 5 folds",
    "photos": '1,000 photo-like digits: read right / right ignoring the verdict / called "not a digit"',
    "mnist_flag": 'MNIST test digits called "not a digit"',
    "non_digits": 'the project\'s own 2,000 non-digits: called "not a digit" / answered a digit, 90% sure',
    "ece": "calibration error of the served confidence, ECE (without the temperature, same file)",
}


def readme_section(records: dict) -> str:
    runs, suite = records["runs"], records["suite"]
    columns = {name: figures(runs[name]) for name in PRESETS if name in runs}
    if "tutorial" in runs and "strong" in runs and runs["tutorial"]["machine"] == runs["strong"]["machine"]:
        ratio = runs["strong"]["wall_s"] / runs["tutorial"]["wall_s"]
        columns["strong"]["time"] += f" ({ratio:.2f}× the default, same machine)"
    lines = [
        "Each column is one whole run in a fresh clone, CPU only, recorded by `python bench/full_run.py [--recipe strong]` in "
        "`bench/full_run_results.json`. The same params on the same kind of CPU give the same numbers; another kind gives "
        "other figures ([what and why](docs/pipeline.md#determinism)). Each kind of made digit and non-digit, and "
        "earlier runs: [docs/results.md](docs/results.md).",
        "",
        "| | " + " | ".join(PRESETS.values()) + " |",
        "|---|---|---|",
        *(
            f"| {label} | " + " | ".join(columns.get(name, {}).get(key, "not measured") for name in PRESETS) + " |"
            for key, label in ROWS.items()
        ),
    ]
    tiers = {"full": "the whole suite (README command 2)", "fast": 'the fast tier (`-m "not slow"`)'}
    times = [f"{tiers[t]} {minutes(suite[t]['wall_s'])} (commit {suite[t]['commit'][:7]}, {cpu(suite[t])})" for t in tiers if t in suite]
    if times:
        lines += ["", "The tests, two pytest-xdist workers (`python bench/suite.py [--tier fast]`): " + "; ".join(times) + "."]
    if "install-uv" in runs and "install-pip" in runs:
        uv, pip = runs["install-uv"], runs["install-pip"]
        lines += [
            "",
            f"README command 1's install, fresh clone, empty package caches: {uv['install_s']:.0f} s (`uv sync --locked`) against "
            f"{pip['install_s']:.0f} s for `pip install -e .` (commit {uv['commit'][:7]}, {cpu(uv)}).",
        ]
    return "\n".join(lines)


def cpu_section(records: dict) -> str:
    """Beside README command 1: which CPU made the committed outputs, and what another kind changes."""
    runs = records["runs"]
    if "tutorial" not in runs:
        return "No default run is recorded yet: `python bench/full_run.py` records one."
    committed = runs["tutorial"]
    others = [  # default runs on other kinds of CPU
        run
        for run in runs.values()
        if run.get("command", "dvc repro") == "dvc repro" and run.get("instruction_set") not in (None, committed.get("instruction_set"))
    ]

    def said(run: dict) -> str:
        m = run["metrics"]
        return f"cross-validation {pct(m['cv_acc'], 3)}, final model {pct(run['test_accuracy']['final'])}, served {pct(m['test_acc'])}"

    text = (
        f"The committed `dvc.lock`, `metrics/` and `reports/` are the default run of commit {committed['commit'][:7]} on "
        f"{cpu(committed)}: {said(committed)}. On the same kind of CPU `dvc repro` reproduces them byte for byte; on another "
        "kind (AVX2, AVX-512, AVX-512 with bf16, AMX) rounding differs, training drifts apart and the figures differ"
    )
    alike: dict[tuple[str, str], list[str]] = {}  # runs of one kind with the same figures, said once
    for run in others:
        alike.setdefault((cpu(run), said(run)), []).append(run["commit"][:7])
    if alike:
        text += ": " + "; ".join(f"{kind}, commit {', '.join(commits)}: {figures}" for (kind, figures), commits in alike.items())
    return text + ". The README's results below stay what the recorded runs measured."


def results_page(records: dict) -> str:
    """docs/results.md: each kind for each recorded preset, and every recorded run."""
    runs = records["runs"]
    lines = []
    for name, label in PRESETS.items():
        kinds = runs.get(name, {}).get("by_kind") or {}
        if not kinds.get("flagged_digits"):
            continue
        run = runs[name]
        lines += [f"### {label} (commit {run['commit'][:7]}, {cpu(run)})", ""]
        lines += ['| digits made from MNIST\'s test set | called "not a digit" | read right |', "|---|---|---|"]
        lines += [
            f"| {DIGIT_NAMES.get(kind, kind)} | {pct(share, 1)} | {pct(kinds['read_right_digits'][kind], 1)} |"
            for kind, share in kinds["flagged_digits"].items()
        ]
        lines += ["", '| non-digits | called "not a digit" | answered as a digit, 90% sure or more |', "|---|---|---|"]
        lines += [
            f"| {NON_DIGIT_NAMES.get(kind, kind)} | {pct(share, 1)} | {pct(kinds['non_digits_answered_sure'][kind], 1)} |"
            for kind, share in kinds["flagged_non_digits"].items()
        ]
        lines.append("")
    lines += [
        "### Every recorded run",
        "",
        "| record | command | commit | CPU | precision | wall time | peak memory | CV | final | served |",
        "|---|---|---|---|---|---|---|---|---|---|",
    ]
    for name, run in sorted(runs.items(), key=lambda item: item[0]):
        if "metrics" not in run:
            continue
        m = run["metrics"]
        command = f"`{run['command']}`" if "command" in run else run.get("what", "")
        time = f"{minutes(run['wall_s'])} | {run['peak_rss_gib']:.1f} GiB" if "wall_s" in run else "not timed | not measured"
        lines.append(
            f"| {name} | {command} | {run['commit'][:7]} | {cpu(run)} | {run.get('precision', 'float32')} | {time} | "
            f"{pct(m['cv_acc'], 3)} | {pct(run['test_accuracy']['final'])} | {pct(m['test_acc'])} |"
        )
    return "\n".join(lines)


SECTIONS = {  # file, section name: what renders it
    (README, "cpu"): cpu_section,
    (README, "results"): readme_section,
    (Path("docs/pipeline.md"), "cpu"): cpu_section,
    (RESULTS_PAGE, "runs"): results_page,
}


def section(text: str, name: str, path: Path) -> str:
    start, end = text.find(START.format(name=name)), text.find(END.format(name=name))
    if start < 0 or end < 0:
        raise SystemExit(
            f"error: {path} lacks the markers of its {name} section ({START.format(name=name)!r} ... {END.format(name=name)!r})"
        )
    return text[start : end + len(END.format(name=name))]


def rendered(name: str, body: str) -> str:
    return "\n".join([START.format(name=name), "", body, "", END.format(name=name)])


def main() -> None:
    parser = argparse.ArgumentParser(description="The README's results and docs/results.md, from the committed run records.")
    mode = parser.add_mutually_exclusive_group()
    mode.add_argument("--write", action="store_true", help="replace the sections in README.md and docs/results.md")
    mode.add_argument("--check", action="store_true", help="exit 1 when a section differs from what the records say")
    args = parser.parse_args()
    records = load()
    if not (args.write or args.check):
        print(rendered("results", readme_section(records)))
        return
    stale = []
    for (path, name), render in SECTIONS.items():
        text = (ROOT / path).read_text()
        current, fresh = section(text, name, path), rendered(name, render(records))
        if current != fresh:
            stale.append(f"{path} ({name})")
            if args.write:
                (ROOT / path).write_text(text.replace(current, fresh))
    if stale and args.check:
        print(f"error: {', '.join(stale)} differ from the run records: run `python docs/results_table.py --write`", file=sys.stderr)
        sys.exit(1)


if __name__ == "__main__":
    main()
