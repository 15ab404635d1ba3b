"""The README's results, rendered from the committed files that the measuring runs wrote:
metrics/*.json and reports/eval.json (the default run's outputs, `dvc repro`),
bench/full_run_results.json (whole runs timed in a fresh clone, the strong preset's figures:
bench/full_run.py), bench/predict_models_results.json (bench/predict_models.py) and
bench/suite_results.json (the test suite's times: bench/suite.py).

    python docs/results_table.py            # print the section
    python docs/results_table.py --write    # replace it in README.md, between the two markers
    python docs/results_table.py --check    # exit 1 when README.md differs from what the files say

tests/test_results_table.py runs --check, so a figure edited by hand, or a file changed without
the README, fails the fast tier.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
README = ROOT / "README.md"
START, END = "<!-- results: rendered by docs/results_table.py from committed files; edit them, not this -->", "<!-- end of results -->"
NON_DIGIT_NAMES = {  # reports/eval.json's kinds, as the README names them
    "typed_symbol": "typed letters and symbols",
    "sketched_symbol": "the same sketched by hand",
    "drawn_shape": "drawn letters and doodles",
    "scribble": "scribbles",
    "texture": "textures like crops of photos",
    "digit_overlay": "two digits written over each other",
}


def pct(value: float, digits: int = 2) -> str:
    return f"{value:.{digits}%}"


def minutes(seconds: float) -> str:
    return f"{int(seconds // 60)} min {round(seconds % 60):02d} s"


def load(root: Path = ROOT) -> dict:
    def read(name: str) -> dict:
        path = root / name
        return json.loads(path.read_text()) if path.exists() else {}

    return {
        "eval": read("metrics/eval.json"),
        "cv": read("metrics/cv.json"),
        "report": read("reports/eval.json"),
        "export": read("reports/export.json"),
        "runs": read("bench/full_run_results.json"),
        "predict": read("bench/predict_models_results.json"),
        "suite": read("bench/suite_results.json"),
    }


def column(metrics: dict, test_accuracy: dict) -> dict[str, str]:
    folds = [v for k, v in test_accuracy.items() if k.startswith("fold_")]
    figures = {
        "served": pct(metrics["test_acc"]),
        "members": f"{pct(test_accuracy['final'])} / {pct(min(folds))}–{pct(max(folds))}",
        "cv": f"{pct(metrics['cv_acc'])} ± {pct(metrics['cv_std'])}",
        "photos": f"{pct(metrics['photo_acc'], 1)} / {pct(metrics['photo_flag'], 1)}",
        "mnist_flag": pct(metrics["flag_mnist"]),
        "non_digits": pct(metrics["flag_nondigit"], 1),
        "ece": f"{pct(metrics['ece'])} ({pct(metrics['ece_raw'])})",
    }
    if "nondigit_sure" in metrics:  # evaluate reports it since issue 31
        figures["non_digits_sure"] = pct(metrics["nondigit_sure"], 1)
    return figures


ROWS = {
    "served": "served model (`models/export/model.tflite`, `export.serve`), test set",
    "members": "final model / each fold model, test set",
    "cv": "cross-validation, 5 folds",
    "photos": '1,000 photo-like digits, served model: right / called "not a digit"',
    "mnist_flag": 'MNIST test digits called "not a digit"',
    "non_digits": 'the project\'s own 2,000 non-digits called "not a digit"',
    "non_digits_sure": "the same answered as a digit with 90% confidence or more",
    "ece": "calibration error of the served confidence (ECE, 15 bins; without the temperature)",
    "predict": "`mnist-pipeline predict`, whole process, served model: 1,000 PNGs / one image ([bench](docs/performance.md#predict))",
}


COLUMNS = {  # bench/full_run_results.json's runs shown beside the committed default, as the table names them
    "tutorial@8eee366": "default before the detector of issue 31",
    "tutorial": "default, today's code",
    "strong": "strong preset",
}
DIGIT_NAMES = {  # reports/eval.json's digit kinds, as the README names them
    "restroked": "MNIST redrawn with other strokes",
    "typed": "typed",
    "sketched": "sketched",
    "drawn": "drawn as on the page",
    "low_resolution": "low-resolution (brought down, scaled up)",
}


def timing(name: str, run: dict) -> str:
    if "wall_s" not in run:
        return f"{name}: not timed"
    return (
        f"{name}: `{run['command']}`, {minutes(run['wall_s'])}, peak memory {run['peak_rss_gib']:.1f} GiB "
        f"(commit {run['commit'][:7]}, {run['machine']})"
    )


def by_kind_table(run: dict) -> list[str]:
    """Each kind of digit and non-digit that evaluate makes, from a recorded run's reports/eval.json."""
    kinds = run.get("by_kind") or {}
    if not kinds.get("flagged_digits"):
        return []
    lines = ['| digits made from MNIST\'s test set | called "not a digit" | read right |', "|---|---|---|"]
    lines += [
        f"| {DIGIT_NAMES.get(kind, kind)} | {pct(share, 1)} | {pct(kinds['read_right_digits'][kind], 1)} |"
        for kind, share in kinds["flagged_digits"].items()
    ]
    lines += ["", '| non-digits | called "not a digit" | answered as a digit, 90% sure or more |', "|---|---|---|"]
    lines += [
        f"| {NON_DIGIT_NAMES.get(kind, kind)} | {pct(share, 1)} | {pct(kinds['non_digits_answered_sure'][kind], 1)} |"
        for kind, share in kinds["flagged_non_digits"].items()
    ]
    return [f'Each kind that `evaluate` makes, in the run of {run["commit"][:7]} (column "{COLUMNS["tutorial"]}"):', "", *lines, ""]


def render(files: dict) -> str:
    runs, report = files["runs"], files["report"]
    default = column(files["eval"] | files["cv"], report["test_accuracy"])
    served = files["predict"].get("median_s", {}).get(f"{report['served']}.tflite")
    default["predict"] = f"{served['directory']:.2f} s / {served['one_image']:.2f} s" if served else "not measured"
    recorded = {name: column(run["metrics"], run["test_accuracy"]) for name, run in runs.items() if name in COLUMNS}
    columns = [("default (committed `metrics/`)", default)] + [(label, recorded.get(name, {})) for name, label in COLUMNS.items()]
    lines = ["| | " + " | ".join(label for label, _ in columns) + " |", "|---" * (len(columns) + 1) + "|"]
    lines += [f"| {label} | " + " | ".join(c.get(key, "not measured") for _, c in columns) + " |" for key, label in ROWS.items()]

    installs = {name: runs[f"install-{name}"] for name in ("uv", "pip") if f"install-{name}" in runs}
    if len(installs) == 2:
        intro_install = (
            f" README command 1's install from a fresh clone, empty package caches: {installs['uv']['install_s']:.0f} s "
            f"(`uv sync --locked`) against {installs['pip']['install_s']:.0f} s for the `pip install -e .` it replaced, "
            f"one after the other on {installs['uv']['machine']}."
        )
    else:
        intro_install = ""
    tiers = {"full": "the whole suite (README command 2)", "fast": 'the fast tier (`-m "not slow"`)'}
    suite = {tier: files["suite"][tier] for tier in tiers if tier in files["suite"]}
    intro_suite = ""
    if suite:
        intro_suite = (
            " The tests, two pytest-xdist workers (`python bench/suite.py [--tier fast]`, recorded in `bench/suite_results.json`): "
            + "; ".join(f"{tiers[tier]}, {minutes(t['wall_s'])} (commit {t['commit'][:7]}, {t['machine']})" for tier, t in suite.items())
            + "."
        )
    flagged = report["flagged_non_digits"]
    kinds = ", ".join(f"{NON_DIGIT_NAMES.get(kind, kind)} ({pct(share, 0)})" for kind, share in flagged.items())
    intro = (
        "Each run in a fresh clone, CPU only (`python bench/full_run.py [--recipe strong]`, recorded in "
        "`bench/full_run_results.json` with its commit and machine): "
        + "; ".join(timing(label, runs[name]) if name in runs else f"{label}: not measured" for name, label in COLUMNS.items())
        + ". The committed default's figures are `metrics/*.json` and `reports/eval.json`"
        + (
            ""
            if "calibration" in files["export"]
            else " (written by a run before the calibration of 811ea8e and the detector of issue 31: `dvc repro` reruns "
            "synthesize, detector, export and evaluate)"
        )
        + "."
        + intro_install
        + intro_suite
    )
    outro = (
        f'The committed run\'s non-digits, of each kind, called "not a digit": {kinds}. '
        "Each run's non-digits are made by `synthesize` with other seeds than its detector learnt from; since 3fc947e "
        "15% of them are coarse (low-resolution), so the columns before and after the detector of issue 31 count "
        "non-digits of different sets."
    )
    return "\n".join([START, "", intro, "", *lines, "", *by_kind_table(runs.get("tutorial", {})), outro, "", END])


def readme_section(text: str) -> str:
    start, end = text.find(START), text.find(END)
    if start < 0 or end < 0:
        raise SystemExit(f"error: README.md lacks the markers of the results section ({START!r} ... {END!r})")
    return text[start : end + len(END)]


def main() -> None:
    parser = argparse.ArgumentParser(description="The README's results table, from committed files.")
    mode = parser.add_mutually_exclusive_group()
    mode.add_argument("--write", action="store_true", help="replace the section in README.md")
    mode.add_argument("--check", action="store_true", help="exit 1 when README.md's section differs")
    args = parser.parse_args()
    rendered = render(load())
    text = README.read_text()
    current = readme_section(text)
    if args.write:
        README.write_text(text.replace(current, rendered))
    elif args.check:
        if current != rendered:
            print("error: README.md's results differ from the committed files: run `python docs/results_table.py --write`", file=sys.stderr)
            sys.exit(1)
    else:
        print(rendered)


if __name__ == "__main__":
    main()
