"""The kinds of made image: for each, its maker (which renderer, on what) and its share of a set.
A kind's code in a set's `kind` array is its index in KINDS."""

from __future__ import annotations

import numpy as np

from .. import params
from .glyphs import DIGITS, DRAWN_DIGITS, DRAWN_MARKS, DRAWN_SHAPES, NOT_DIGITS, UPRIGHT_MARKS
from .render import digit_overlay, drawn, low_resolution, restroked, scribble, sketched, texture, typed


def _typed_symbol(digits, labels, rng):
    text = NOT_DIGITS[rng.integers(len(NOT_DIGITS))]
    if rng.random() < 0.15:  # two side by side
        text += NOT_DIGITS[rng.integers(len(NOT_DIGITS))]
    return typed(text, rng), -1


def _sketched_symbol(digits, labels, rng):
    return sketched(typed(NOT_DIGITS[rng.integers(len(NOT_DIGITS))], rng), rng), -1


def _upright_mark(digits, labels, rng):
    if rng.random() < 0.6:
        return typed(UPRIGHT_MARKS[rng.integers(len(UPRIGHT_MARKS))], rng), -1
    return drawn(DRAWN_MARKS[rng.integers(len(DRAWN_MARKS))](), rng), -1


def _sketched_digit(digits, labels, rng):
    label = int(rng.integers(10))
    return sketched(typed(DIGITS[label], rng), rng), label


def _restroked_digit(digits, labels, rng):
    i = rng.integers(len(digits))
    return restroked(digits[i], rng), int(labels[i])


def _typed_digit(digits, labels, rng):
    label = int(rng.integers(10))
    return typed(DIGITS[label], rng), label


def _drawn_digit(digits, labels, rng):
    label = int(rng.integers(10))
    variants = DRAWN_DIGITS[str(label)]
    return drawn(variants[rng.integers(len(variants))](), rng), label


def _low_resolution_digit(digits, labels, rng):
    source = rng.random()
    if source < 0.5:
        i = rng.integers(len(digits))
        image, label = digits[i].reshape(28, 28).astype(np.float32), int(labels[i])
    else:
        image, label = (_typed_digit if source < 0.75 else _drawn_digit)(digits, labels, rng)
    return low_resolution(image, rng), label


# kind -> (maker, share of its set); a maker returns an image before to_mnist and its label (-1: not a digit).
# The made digits' kinds are named once, in params.MADE_DIGIT_KINDS (params checks the detector's budgets against
# them without importing this package); here each gets its maker and share, in that order.
DIGIT_KINDS = dict(
    zip(
        params.MADE_DIGIT_KINDS,
        [(_restroked_digit, 0.25), (_typed_digit, 0.15), (_sketched_digit, 0.15), (_drawn_digit, 0.2), (_low_resolution_digit, 0.25)],
        strict=True,
    )
)
NON_DIGIT_KINDS = {
    "typed_symbol": (_typed_symbol, 0.15),
    "sketched_symbol": (_sketched_symbol, 0.15),
    "drawn_shape": (lambda digit, label, rng: (drawn(DRAWN_SHAPES[rng.integers(len(DRAWN_SHAPES))](), rng), -1), 0.2),
    "scribble": (lambda digit, label, rng: (scribble(rng), -1), 0.15),
    "texture": (lambda digit, label, rng: (texture(rng), -1), 0.15),
    "digit_overlay": (lambda digit, label, rng: (digit_overlay(digit, label, rng), -1), 0.1),
    "upright_mark": (_upright_mark, 0.1),  # typed or drawn: the confident "1"s of punctuation and brackets
}
KINDS = (*params.DIGIT_KINDS, *NON_DIGIT_KINDS)  # codes in a set's `kind` array: "mnist", "photo", the made digits, the non-digits
# What the detector mines its hard negatives from: not overlaid digits, since one digit over another
# can read as a third (a 3 over a 0 as an 8), nor scribbles, whose one wandering stroke is now and
# then an S, a 2 or a 6: the most digit-like of those are digits, and would teach the detector to
# flag digits.
POOL_KINDS = {kind: made for kind, made in NON_DIGIT_KINDS.items() if kind not in ("digit_overlay", "scribble")}
LOW_RESOLUTION_NON_DIGITS = 0.15  # of each kind of non-digit, brought to low resolution as the low_resolution digits are
