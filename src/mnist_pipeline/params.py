"""Load and validate ``params.yaml`` into typed, frozen sections.

Every problem is reported at once, one line each, naming the key, the bad value and what is
allowed, before any heavy work starts. ``dvc exp run -S`` edits params.yaml, so it gets the
same checks.
"""

from __future__ import annotations

import difflib
import re
from collections.abc import Callable
from dataclasses import MISSING, dataclass, field, fields
from pathlib import Path
from typing import Any

import yaml

from . import PipelineError

MODELS = ("seed_cnn", "bn_cnn")
OPTIMIZERS = ("adam", "sgd")
SCHEDULES = ("constant", "cosine")
SERVED = ("final", "ensemble")
WEIGHTS = ("int8", "float32")
STRATEGIES = ("none", "mirrored", "multi_worker")
PRECISIONS = ("float32", "mixed_bfloat16", "mixed_float16", "auto")
MNIST_TRAIN_SIZE, MNIST_TEST_SIZE = 60_000, 10_000
# The kinds of digit the detector is validated on: MNIST's own, MNIST's photographed, and those the synthetic package
# makes, named only here (light to import, for the checks below); synthetic's registry gives each made kind its maker
# and share and keeps this order, which is that of the `kind` codes in saved sets (synthetic.KINDS).
MADE_DIGIT_KINDS = ("restroked", "typed", "sketched", "drawn", "low_resolution")
DIGIT_KINDS = ("mnist", "photo", *MADE_DIGIT_KINDS)


class ParamsError(PipelineError):
    exit_code = 2  # bad usage, as argparse does

    def __init__(self, problems: list[str]):
        self.problems = problems
        super().__init__("\n".join(problems))


def _rule(check: Callable[[Any], bool], allowed: str, default: Any = MISSING):
    return field(default=default, metadata={"check": check, "allowed": allowed})


def _int(low: int, high: int | None = None, default: Any = MISSING, optional: bool = False):
    def check(v):
        if v is None:
            return optional
        return isinstance(v, int) and not isinstance(v, bool) and v >= low and (high is None or v <= high)

    allowed = f"an integer >= {low}" if high is None else f"an integer from {low} to {high}"
    return _rule(check, allowed + (" or null" if optional else ""), default)


def _positive_number(default: Any = MISSING):
    return _rule(lambda v: isinstance(v, (int, float)) and not isinstance(v, bool) and v > 0, "a number > 0", default)


def _number(low: float, high: float, default: Any = MISSING):
    return _rule(
        lambda v: isinstance(v, (int, float)) and not isinstance(v, bool) and low <= v <= high, f"a number from {low} to {high}", default
    )


def _rates_per_kind(low: float, high: float, kinds: tuple[str, ...], default: Any = MISSING):
    def rate(v):
        return isinstance(v, (int, float)) and not isinstance(v, bool) and low <= v <= high

    def check(v):
        return rate(v) or (isinstance(v, dict) and set(v) == set(kinds) and all(rate(r) for r in v.values()))

    return _rule(check, f"a number from {low} to {high}, or one such number for each of {', '.join(kinds)}", default)


def _choice(options: tuple[str, ...], default: Any = MISSING):
    return _rule(lambda v: v in options, "one of " + ", ".join(options), default)


@dataclass(frozen=True)
class Data:
    train_limit: int | None = _int(100, MNIST_TRAIN_SIZE, optional=True, default=None)
    test_limit: int | None = _int(10, MNIST_TEST_SIZE, optional=True, default=None)
    seed: int = _int(0, default=0)


@dataclass(frozen=True)
class Model:
    name: str = _choice(MODELS)
    conv_filters: list = _rule(
        lambda v: isinstance(v, list) and len(v) == 3 and all(isinstance(n, int) and n >= 1 for n in v),
        "a list of 3 integers >= 1",
    )
    dense_units: int = _int(1)
    dropout: float = _number(0, 0.9, default=0.0)


@dataclass(frozen=True)
class Augment:
    """Random distortions of each training image, drawn afresh every epoch; 0 turns one off."""

    rotation: float = _number(0, 45, default=0)  # degrees, either way
    shift: float = _number(0, 0.3, default=0)  # fraction of the image size, each axis, either way
    zoom: float = _number(0, 0.3, default=0)  # fraction of the size, in or out

    @property
    def active(self) -> bool:
        return bool(self.rotation or self.shift or self.zoom)


@dataclass(frozen=True)
class CV:
    folds: int = _int(2)
    random_state: int = _int(0)
    epochs: int = _int(1)
    batch_size: int = _int(1)
    optimizer: str = _choice(OPTIMIZERS)
    learning_rate: float = _positive_number()
    schedule: str = _choice(SCHEDULES, default="constant")
    label_smoothing: float = _number(0, 0.5, default=0.0)  # 0 = the one-hot targets


@dataclass(frozen=True)
class Train:
    epochs: int = _int(1)
    batch_size: int = _int(1)
    optimizer: str = _choice(OPTIMIZERS)
    learning_rate: float = _positive_number()
    seed: int = _int(0)
    schedule: str = _choice(SCHEDULES, default="constant")
    label_smoothing: float = _number(0, 0.5, default=0.0)


@dataclass(frozen=True)
class Distribute:
    """How crossvalidate and train spread over devices (tf.distribute); docs/team-and-scaling.md: Several devices and machines.
    `precision` (crossvalidate, train and detector): Keras's dtype policy while training (distribute.set_precision)."""

    strategy: str = _choice(STRATEGIES, default="none")
    devices: list = _rule(
        lambda v: isinstance(v, list) and all(isinstance(d, str) and re.fullmatch(r"/?(device:)?(cpu|gpu):\d+", d, re.I) for d in v),
        "a list of devices such as /gpu:0 or /cpu:1",
        default=(),
    )
    precision: str = _choice(PRECISIONS, default="float32")


@dataclass(frozen=True)
class Synthetic:
    """The digit-or-not detector's examples: seeded, procedural, made by the synthesize stage."""

    mnist: int = _int(0, MNIST_TRAIN_SIZE, default=10000)  # MNIST training digits, as they are
    photos: int = _int(0, default=2000)  # MNIST digits photographed (imaging.photo_like)
    digits: int = _int(0, default=9000)  # digits restroked, typed in a font or drawn with a pen
    non_digits: int = _int(1, default=13500)  # letters, symbols, shapes, scribbles, textures, overlaid digits
    pool: int = _int(0, default=13500)  # more non-digits, for the detector to mine the most digit-like of (its hard_negatives)
    validation: float = _number(0.01, 0.5, default=0.2)  # share of each held out to set the threshold
    seed: int = _int(0, default=0)


@dataclass(frozen=True)
class Detector:
    epochs: int = _int(1, default=12)
    batch_size: int = _int(1, default=256)
    learning_rate: float = _positive_number(default=0.001)
    hard_negatives: int = _int(0, default=3000)  # the pool's most digit-like non-digits, added to its training set; 0: none
    hard_epochs: int = _int(0, default=4)  # more epochs on the training set and the hard negatives
    # the most of each kind's held-out validation digits called "not a digit": one number for all, or one per kind
    false_flag_rate: float | dict[str, float] = _rates_per_kind(0.0001, 0.5, DIGIT_KINDS, default=0.01)
    # the kinds whose budgets set the threshold: those that stand for what people send; the others' shares are reported
    threshold_kinds: list = _rule(
        lambda v: isinstance(v, list) and len(v) > 0 and len(set(v)) == len(v) and set(v) <= set(DIGIT_KINDS),
        "a list of distinct kinds of digit from " + ", ".join(DIGIT_KINDS),
        default=("mnist", "photo", "typed", "drawn"),
    )
    members: int = _int(1, 9, default=3)  # detectors of seeds seed, seed + 1, ...; the served one averages their log-odds
    seed: int = _int(0, default=0)

    def flag_budgets(self) -> dict[str, float]:
        rate = self.false_flag_rate
        return dict(rate) if isinstance(rate, dict) else dict.fromkeys(DIGIT_KINDS, rate)


@dataclass(frozen=True)
class Export:
    serve: str = _choice(SERVED, default="ensemble")
    weights: str = _choice(WEIGHTS, default="int8")  # of the served .tflite files
    tta: int = _int(0, 3, default=0)  # pixels: each served model also reads the image shifted this far 4 ways; 0 = off


@dataclass(frozen=True)
class Evaluate:
    gate: float = _rule(lambda v: isinstance(v, (int, float)) and 0 <= v <= 1, "a number from 0 to 1")
    photos: int = _int(0, default=1000)
    photos_seed: int = _int(0, default=0)
    non_digits: int = _int(0, default=2000)  # the project's own non-digit set, for the flagged share
    non_digits_seed: int = _int(0, default=1000)  # other seeds than synthetic.seed's (of the made digits too)
    digits: int = _int(0, default=2000)  # digits made from test digits, shared among synthetic's kinds: the flagged share of each


SECTIONS = {
    "data": Data,
    "model": Model,
    "augment": Augment,
    "cv": CV,
    "train": Train,
    "distribute": Distribute,
    "synthetic": Synthetic,
    "detector": Detector,
    "export": Export,
    "evaluate": Evaluate,
}


@dataclass(frozen=True)
class Params:
    data: Data
    model: Model
    augment: Augment
    cv: CV
    train: Train
    distribute: Distribute
    synthetic: Synthetic
    detector: Detector
    export: Export
    evaluate: Evaluate


def _unknown(key: str, known: list[str]) -> str:
    close = difflib.get_close_matches(key.rsplit(".", 1)[-1], known, n=1)
    prefix = key.rsplit(".", 1)[0] + "." if "." in key else ""
    hint = f"did you mean {prefix}{close[0]}?" if close else "allowed: " + ", ".join(prefix + k for k in known)
    return f"{key}: unknown key; {hint}"


def parse(raw: Any) -> Params:
    if not isinstance(raw, dict):
        raise ParamsError([f"params.yaml must be a mapping of sections ({', '.join(SECTIONS)}), got {type(raw).__name__}"])
    problems: list[str] = []
    problems += [_unknown(str(k), list(SECTIONS)) for k in raw if k not in SECTIONS]
    sections = {}
    for name, cls in SECTIONS.items():
        values = raw.get(name)
        if values is None:
            values = {}
        if not isinstance(values, dict):
            problems.append(f"{name}: must be a mapping, got {values!r}")
            continue
        known = [f.name for f in fields(cls)]
        problems_before = len(problems)
        problems += [_unknown(f"{name}.{k}", known) for k in values if k not in known]
        clean = {}
        for f in fields(cls):
            if f.name not in values:
                if f.default is MISSING:
                    problems.append(f"{name}.{f.name}: missing; expected {f.metadata['allowed']}")
                continue
            value = values[f.name]
            if f.metadata["check"](value):
                clean[f.name] = value
            else:
                problems.append(f"{name}.{f.name}: {value!r} is not allowed; expected {f.metadata['allowed']}")
        if len(problems) == problems_before:
            sections[name] = cls(**clean)
    if problems:
        raise ParamsError(problems)
    return Params(**sections)


def load(path: Path | str = "params.yaml") -> Params:
    path = Path(path)
    try:
        raw = yaml.safe_load(path.read_text())
    except FileNotFoundError:
        raise ParamsError([f"{path}: file not found (run from the repository root)"]) from None
    except yaml.YAMLError as exc:
        raise ParamsError([f"{path}: not valid YAML ({str(exc).splitlines()[0]})"]) from None
    return parse(raw)
