"""The digit-or-not detector's parts that need no training: its operating point (a false-flag
budget per kind of digit), the params that state it, and the examples it learns from."""

from __future__ import annotations

import itertools

import numpy as np
import pytest
import yaml

from mnist_pipeline import detection, mnist, params, synthetic
from mnist_pipeline.testing import MIRROR, ROOT


def test_the_threshold_keeps_every_kind_within_its_own_budget():
    rng = np.random.default_rng(0)
    kinds = ("mnist", "sketched", "scribble")
    kind = np.repeat([0, 1, 2], 1000)
    logits = np.concatenate([rng.normal(4, 1, 1000), rng.normal(2, 2, 1000), rng.normal(-3, 2, 1000)])
    is_digit = kind < 2
    both = ("mnist", "sketched")
    tight, at_tight = detection.digit_threshold(logits, is_digit, kind, kinds, {"mnist": 0.01, "sketched": 0.01}, both)
    assert at_tight["held_by"] == "sketched" and at_tight["flagged"]["sketched"] <= 0.01
    loose, at_loose = detection.digit_threshold(logits, is_digit, kind, kinds, {"mnist": 0.01, "sketched": 0.05}, both)
    assert loose > tight, "a looser budget for the hardest kind moves the threshold up"
    assert at_loose["flagged"]["mnist"] <= 0.01 and at_loose["flagged"]["sketched"] <= 0.05
    assert at_loose["flagged"]["scribble"] > at_tight["flagged"]["scribble"] + 0.1
    assert all(check["within"] for check in at_loose["budgets"].values()) and set(at_loose["budgets"]) == set(both)


def test_a_kind_outside_threshold_kinds_is_checked_against_its_budget_not_obeyed():
    """Made digits harder than any real ones (here "sketched") must not hold the threshold down:
    the real kinds set it, and the made kind's share is reported against its budget, with the
    sampling noise of its count."""
    rng = np.random.default_rng(0)
    kinds = ("mnist", "sketched", "scribble")
    kind = np.repeat([0, 1, 2], 1000)
    logits = np.concatenate([rng.normal(4, 1, 1000), rng.normal(2, 2, 1000), rng.normal(-3, 2, 1000)])
    budgets = {"mnist": 0.01, "sketched": 0.01}
    held, by_mnist = detection.digit_threshold(logits, kind < 2, kind, kinds, budgets, ["mnist"])
    both, _ = detection.digit_threshold(logits, kind < 2, kind, kinds, budgets, ["mnist", "sketched"])
    assert by_mnist["held_by"] == "mnist" and by_mnist["threshold_kinds"] == ["mnist"] and held > both
    assert by_mnist["flagged"]["mnist"] <= 0.01 and by_mnist["budgets"]["mnist"]["within"]
    sketched = by_mnist["budgets"]["sketched"]
    assert sketched["flagged"] == by_mnist["flagged"]["sketched"] > 0.01 + sketched["noise"] and not sketched["within"]
    assert sketched["noise"] == pytest.approx(2 * np.sqrt(0.01 * 0.99 / 1000))


def test_false_flag_rate_is_one_number_or_one_per_kind():
    raw = yaml.safe_load((ROOT / "params.yaml").read_text())
    budgets = params.parse(raw).detector.flag_budgets()
    assert set(budgets) == set(params.DIGIT_KINDS) == {"mnist", "photo", *synthetic.DIGIT_KINDS}
    assert all(budgets[kind] <= 0.01 for kind in ("mnist", "photo", "typed", "drawn", "low_resolution")), "real-world kinds: 1% at most"
    raw["detector"]["false_flag_rate"] = 0.02
    assert set(params.parse(raw).detector.flag_budgets().values()) == {0.02}
    raw["detector"]["false_flag_rate"] = {"mnist": 0.01}
    with pytest.raises(params.ParamsError) as info:
        params.parse(raw)
    assert info.value.problems == [
        "detector.false_flag_rate: {'mnist': 0.01} is not allowed; expected a number from 0.0001 to 0.5, "
        "or one such number for each of " + ", ".join(params.DIGIT_KINDS)
    ]


@pytest.fixture(scope="module")
def made():
    from mnist_pipeline.testing import MIRROR

    test = mnist.load_split(MIRROR, "t10k")
    images, labels = test.images.reshape(-1, 28, 28)[:500], test.labels[:500]
    counts = {"low_resolution": 60, "typed": 40, "typed_symbol": 60, "scribble": 60, "drawn_shape": 60}
    return synthetic.make_set(images, labels, counts, seed=(7, 0), processes=1)


def test_made_images_are_clearly_what_their_label_says(made):
    """No digit that fell apart into a dot, no non-digit as thin as a 1, upright or slanted: both
    would teach the detector a wrong boundary."""
    y, x = np.mgrid[0:28, 0:28]
    for image, label in zip(made["images"], made["labels"], strict=True):
        if label >= 0:
            rows = np.flatnonzero((image > 64).any(axis=1))
            assert rows[-1] - rows[0] + 1 >= 10
        else:
            spread = np.cov(np.stack([y.ravel(), x.ravel()]), aweights=image.ravel().astype(float), bias=True)
            assert np.sqrt(np.linalg.eigvalsh(spread)[0]) >= 1.6


def test_a_stroke_is_a_one_not_a_non_digit_but_a_stroke_and_a_dot_is_no_one():
    stroke = np.zeros((28, 28), np.uint8)
    for i in range(4, 24):
        stroke[i, 10 + i // 3 : 12 + i // 3] = 255  # a slanted line, as many of MNIST's 1s are
    assert not synthetic.clearly_labelled(stroke, -1) and synthetic.clearly_labelled(stroke, 1)
    exclamation = np.zeros((28, 28), np.uint8)
    exclamation[4:19, 13:15] = exclamation[21:24, 13:15] = 255
    assert synthetic.clearly_labelled(exclamation, -1)


def test_thin_marks_are_made_as_non_digits_and_ones_and_sevens_in_all_their_forms_as_digits():
    test = mnist.load_split(MIRROR, "t10k")
    made = synthetic.make_set(test.images.reshape(-1, 28, 28)[:100], test.labels[:100], {"upright_mark": 80}, seed=(7, 1), processes=1)
    assert len(made["labels"]) == 80 and (made["labels"] == -1).all()
    assert {"!", "[", "]", "{", "}"} <= set(synthetic.UPRIGHT_MARKS) and not {"|", "(", ")"} & set(synthetic.UPRIGHT_MARKS)
    assert len(synthetic.DRAWN_DIGITS["1"]) >= 5 and len(synthetic.DRAWN_DIGITS["7"]) >= 3
    assert not set(synthetic.DIGITS) & set(synthetic.NOT_DIGITS + synthetic.UPRIGHT_MARKS)


def test_low_resolution_digits_are_coarse_and_non_digits_are_made_coarse_too(made):
    rng = np.random.default_rng(3)
    glyph = synthetic.typed("7", rng)
    coarse = synthetic.low_resolution(glyph, rng)
    # scaled back up from 6-12 pixels: far fewer distinct rows than the glyph had
    assert len({row.tobytes() for row in coarse.astype(np.uint8)}) < len({row.tobytes() for row in glyph.astype(np.uint8)})
    low = made["kind"] == synthetic.KINDS.index("low_resolution")
    assert low.sum() == 60 and (made["labels"][low] >= 0).all()
    assert synthetic.LOW_RESOLUTION_NON_DIGITS > 0 and not {"digit_overlay", "scribble"} & set(synthetic.POOL_KINDS)


def test_low_resolution_brings_the_ink_to_6_to_12_pixels_as_coarse_scans_have_it():
    """Scaled back up with nearest-neighbour and not blurred (the images whose rows repeat), a
    low-resolution digit shows its coarse grid: 6 to 12 lines of ink along its longer side."""

    def inked_lines(image: np.ndarray) -> int:
        lines = [row.tobytes() for row in image]
        return sum(1 for line, before in zip(lines, [b"", *lines[:-1]], strict=True) if line != before and any(line))

    grids = []
    for seed in range(120):
        rng = np.random.default_rng(seed)
        coarse = synthetic.low_resolution(synthetic.typed(str(seed % 10), rng), rng).astype(np.uint8)
        if np.mean([a == b for a, b in itertools.pairwise(coarse.tolist())]) > 0.5:
            grids.append(max(inked_lines(coarse), inked_lines(coarse.T)))
    assert len(grids) >= 20 and min(grids) >= 6 and max(grids) <= 12, sorted(grids)


def test_typed_symbols_are_drawn_in_a_font_that_has_them():
    """A font without a glyph draws an empty box; every symbol is typed in one that has it."""
    from matplotlib.ft2font import FT2Font

    for text in synthetic.NOT_DIGITS:
        covering = [f for f in synthetic.TEXT_FONTS if ord(text) in FT2Font(str(f)).get_charmap()]
        assert covering, f"no font has {text!r}"


def test_threshold_kinds_are_named_kinds_of_digit():
    raw = yaml.safe_load((ROOT / "params.yaml").read_text())
    assert params.parse(raw).detector.threshold_kinds == ["mnist", "photo", "typed", "drawn"], "the kinds that stand for real inputs"
    for bad in (["mnist", "scribble"], [], ["mnist", "mnist"], "mnist"):
        raw["detector"]["threshold_kinds"] = bad
        with pytest.raises(params.ParamsError) as info:
            params.parse(raw)
        assert info.value.problems == [
            f"detector.threshold_kinds: {bad!r} is not allowed; expected a list of distinct kinds of digit from "
            + ", ".join(params.DIGIT_KINDS)
        ]
