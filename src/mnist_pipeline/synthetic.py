"""Seeded, procedural images that teach what is and is not a digit. No TensorFlow, no downloads.

Each maker draws one image from a numpy Generator, as a person's image would arrive: white ink
on black, any size, before `imaging.to_mnist`. Digits and non-digits come from the same
renderers (typed in a font, drawn with a round pen, photographed), so that how an image was made
never tells the two apart; only what it shows does.

    digits:      MNIST digits with thicker or thinner strokes, typed digits, typed digits sketched
                 by hand (skeleton, warped, redrawn), pen-drawn digits, low-resolution digits (any
                 of those brought down to 6-12 pixels and scaled back up, as a coarse scan is)
    non-digits:  typed and sketched letters and symbols, pen-drawn letters and doodles, scribbles,
                 textures (what a crop of a photo holds), two MNIST digits written over each other;
                 some of each at low resolution too, so that resolution never tells the two apart
"""

from __future__ import annotations

import functools
import multiprocessing
import os
from collections.abc import Callable, Sequence
from pathlib import Path

import matplotlib
import numpy as np
import threadpoolctl
from PIL import Image, ImageDraw, ImageFilter, ImageFont

from . import imaging

FONTS = sorted((Path(matplotlib.get_data_path()) / "fonts" / "ttf").glob("*.ttf"))
TEXT_FONTS = [f for f in FONTS if f.stem.startswith(("DejaVu", "cm", "STIXGeneral")) and f.stem not in ("cmex10", "cmsy10")]
DIGITS = "0123456789"
# Letters and symbols that no one would call a digit: O, I, l, S, Z, B, G, b, g, q, /, (, !, ... are
# left out on purpose, since written by hand they are often how a 0, 1, 5, 2, 8, 6 or 9 looks.
# Nor a mark that to_mnist, which scales any ink up to MNIST's box, would make into one: ' , ° | become 1s and
# 0s; nor Ø, ß, Ξ, ?: a slashed zero, a B-like 8, a 3, a 2.
NOT_DIGITS = (
    "ACDEFHJKLMNPRTUVWXYacdefhkmnprtuvwxy#$%&@+=<>*~^{};€£¥§¶©®ΩπΣλμ∞√∫≈≠♥★☺✓✗→←↑↓▲■●◆♪"
    '-_.:"…•×÷±¬‰¤ÆæÐÞŒœ' + "ДЖИЛФЦШЩЫЮЯжилфцшщыюяΓΔΛΠΦΨγηκξφψω" + "♣♠♦☀☂☯✿✚⌘♞☎✈⚑"
)
CANVAS = 64  # strokes are drawn at this size; to_mnist brings every image to MNIST's 20x20 box


# -- renderers shared by digits and non-digits ----------------------------------------------------


def _pen(strokes: list[np.ndarray], width: float, size: int = CANVAS) -> np.ndarray:
    """Polylines in the unit square drawn with a round pen `width` pixels wide (anti-aliased by
    drawing at four times the size and averaging down)."""
    scale = 4
    image = Image.new("L", (size * scale, size * scale))
    draw = ImageDraw.Draw(image)
    w, r = max(1, round(width * scale)), width * scale / 2
    for points in strokes:
        points = np.asarray(points, np.float32) * (size * scale * 0.7) + size * scale * 0.15
        xy = [tuple(p) for p in points]
        if len(xy) > 1:
            draw.line(xy, fill=255, width=w, joint="curve")
        for x, y in (xy[0], xy[-1]):  # round caps
            draw.ellipse((x - r, y - r, x + r, y + r), fill=255)
    return np.asarray(image.resize((size, size), Image.Resampling.BOX), np.float32)


def _arc(cx, cy, rx, ry, start, end, n=24) -> np.ndarray:
    """Points on an ellipse from angle `start` to `end` in degrees (0 = right, 90 = down)."""
    angle = np.deg2rad(np.linspace(start, end, n))
    return np.stack([cx + rx * np.cos(angle), cy + ry * np.sin(angle)], 1)


def _line(*points) -> np.ndarray:
    return np.array(points, np.float32)


# Pen strokes of each shape, in a unit square (x right, y down), a variant or two where people differ.
DRAWN_DIGITS: dict[str, list[Callable[[], list[np.ndarray]]]] = {
    "0": [lambda: [_arc(0.5, 0.5, 0.3, 0.48, -90, 270)]],
    "1": [
        lambda: [_line((0.5, 0.02), (0.5, 0.98))],
        lambda: [_line((0.3, 0.2), (0.55, 0.02), (0.55, 0.98))],
        lambda: [_line((0.3, 0.2), (0.55, 0.02), (0.55, 0.98)), _line((0.3, 0.98), (0.8, 0.98))],
    ],
    "2": [lambda: [np.concatenate([_arc(0.5, 0.3, 0.3, 0.28, 180, 360 + 30), _line((0.2, 0.98), (0.85, 0.98))])]],
    "3": [lambda: [np.concatenate([_arc(0.5, 0.27, 0.28, 0.25, 200, 450), _arc(0.5, 0.74, 0.32, 0.24, 270, 520)])]],
    "4": [
        lambda: [_line((0.6, 0.02), (0.1, 0.65), (0.9, 0.65)), _line((0.65, 0.3), (0.65, 0.98))],
        lambda: [_line((0.2, 0.02), (0.15, 0.55), (0.85, 0.55)), _line((0.7, 0.02), (0.7, 0.98))],
    ],
    "5": [lambda: [_line((0.8, 0.02), (0.25, 0.02), (0.22, 0.42)), _arc(0.5, 0.68, 0.33, 0.3, 230, 500)]],
    "6": [lambda: [np.concatenate([_arc(0.7, 0.55, 0.5, 0.53, 260, 180), _arc(0.5, 0.72, 0.3, 0.26, 180, 540)])]],
    "7": [
        lambda: [_line((0.1, 0.02), (0.9, 0.02), (0.4, 0.98))],
        lambda: [_line((0.1, 0.02), (0.9, 0.02), (0.4, 0.98)), _line((0.35, 0.5), (0.8, 0.5))],
    ],
    "8": [lambda: [_arc(0.5, 0.26, 0.24, 0.24, 90, 450), _arc(0.5, 0.74, 0.3, 0.25, -90, 270)]],
    "9": [
        lambda: [_arc(0.5, 0.3, 0.3, 0.28, 0, 360), _line((0.8, 0.3), (0.75, 0.98))],
        lambda: [np.concatenate([_arc(0.5, 0.3, 0.3, 0.28, 0, 360), _arc(0.3, 0.3, 0.5, 0.68, 0, 100)])],
    ],
}

DRAWN_SHAPES: list[Callable[[], list[np.ndarray]]] = [
    lambda: [_line((0.1, 0.98), (0.5, 0.02), (0.9, 0.98)), _line((0.27, 0.6), (0.73, 0.6))],  # A
    lambda: [_line((0.15, 0.02), (0.15, 0.98)), _line((0.85, 0.02), (0.85, 0.98)), _line((0.15, 0.5), (0.85, 0.5))],  # H
    lambda: [_line((0.85, 0.02), (0.15, 0.02), (0.15, 0.98), (0.85, 0.98)), _line((0.15, 0.5), (0.7, 0.5))],  # E
    lambda: [_line((0.85, 0.02), (0.15, 0.02), (0.15, 0.98)), _line((0.15, 0.5), (0.7, 0.5))],  # F
    lambda: [_line((0.15, 0.02), (0.15, 0.98)), _line((0.85, 0.02), (0.15, 0.55), (0.85, 0.98))],  # K
    lambda: [_line((0.1, 0.98), (0.1, 0.02), (0.5, 0.6), (0.9, 0.02), (0.9, 0.98))],  # M
    lambda: [_line((0.15, 0.98), (0.15, 0.02), (0.85, 0.98), (0.85, 0.02))],  # N
    lambda: [_line((0.05, 0.02), (0.95, 0.02)), _line((0.5, 0.02), (0.5, 0.98))],  # T
    lambda: [_line((0.1, 0.02), (0.5, 0.98), (0.9, 0.02))],  # V
    lambda: [_line((0.02, 0.02), (0.25, 0.98), (0.5, 0.3), (0.75, 0.98), (0.98, 0.02))],  # W
    lambda: [_line((0.1, 0.02), (0.9, 0.98)), _line((0.9, 0.02), (0.1, 0.98))],  # X
    lambda: [_line((0.1, 0.02), (0.5, 0.5), (0.9, 0.02)), _line((0.5, 0.5), (0.5, 0.98))],  # Y
    lambda: [_line((0.15, 0.98), (0.15, 0.02)), _arc(0.15, 0.28, 0.6, 0.26, -90, 90)],  # P
    lambda: [_line((0.15, 0.98), (0.15, 0.02)), _arc(0.15, 0.5, 0.7, 0.48, -90, 90)],  # D
    lambda: [_arc(0.55, 0.5, 0.4, 0.48, 45, 315)],  # C
    lambda: [_line((0.15, 0.02), (0.15, 0.98), (0.85, 0.98))],  # L
    lambda: [_line((0.15, 0.02), (0.15, 0.7)), _arc(0.5, 0.7, 0.35, 0.28, 180, 0), _line((0.85, 0.7), (0.85, 0.02))],  # U
    lambda: [
        _arc(0.5, 0.5, 0.48, 0.48, 0, 360),
        _line((0.33, 0.35), (0.33, 0.38)),
        _line((0.67, 0.35), (0.67, 0.38)),
        _arc(0.5, 0.55, 0.25, 0.2, 20, 160),
    ],  # smiley
    lambda: [_arc(0.5, 0.5, 0.48, 0.48, 0, 360), _line((0.2, 0.2), (0.8, 0.8)), _line((0.8, 0.2), (0.2, 0.8))],  # circled x
    lambda: [_line((0.5, 0.02), (0.5, 0.98)), _line((0.02, 0.5), (0.98, 0.5))],  # plus
    lambda: [
        _line((0.3, 0.02), (0.2, 0.98)),
        _line((0.75, 0.02), (0.65, 0.98)),
        _line((0.05, 0.33), (0.95, 0.33)),
        _line((0.02, 0.67), (0.92, 0.67)),
    ],  # hash
    lambda: [_line((0.02, 0.55), (0.35, 0.95), (0.98, 0.05))],  # tick
    lambda: [_line((0.02, 0.5), (0.98, 0.5), (0.7, 0.2)), _line((0.98, 0.5), (0.7, 0.8))],  # arrow
    lambda: [_line((0.5, 0.02), (0.98, 0.98), (0.02, 0.98), (0.5, 0.02))],  # triangle
    lambda: [_line((0.02, 0.02), (0.98, 0.02), (0.98, 0.98), (0.02, 0.98), (0.02, 0.02))],  # square
    lambda: [_line(*[(0.5 + 0.48 * np.sin(a), 0.5 - 0.48 * np.cos(a)) for a in np.deg2rad(np.arange(0, 721, 144))])],  # star
    lambda: [
        np.concatenate(
            [_arc(0.3, 0.3, 0.22, 0.22, 140, 360), _line((0.98, 0.45), (0.5, 0.98), (0.02, 0.45)), _arc(0.7, 0.3, 0.22, 0.22, 180, 40)]
        )
    ],  # heart
    lambda: [_line((0.1, 0.98), (0.1, 0.4), (0.5, 0.02), (0.9, 0.4), (0.9, 0.98), (0.1, 0.98))],  # house
    lambda: [np.stack([np.linspace(0.02, 0.98, 40), 0.5 + 0.3 * np.sin(np.linspace(0, 4 * np.pi, 40))], 1)],  # wave
    lambda: [_line((0.02, 0.8), (0.25, 0.2), (0.5, 0.8), (0.75, 0.2), (0.98, 0.8))],  # zigzag
    lambda: [
        np.stack(
            [
                0.5 + np.linspace(0, 0.48, 80) * np.cos(np.linspace(0, 6 * np.pi, 80)),
                0.5 + np.linspace(0, 0.48, 80) * np.sin(np.linspace(0, 6 * np.pi, 80)),
            ],
            1,
        )
    ],  # spiral
    lambda: [_arc(0.5, 0.5, 0.48, 0.48, 0, 360), _arc(0.5, 0.5, 0.2, 0.2, 0, 360)],  # rings
    lambda: [_line((0.15, 0.98), (0.15, 0.02)), _arc(0.15, 0.28, 0.6, 0.26, -90, 90), _line((0.3, 0.54), (0.85, 0.98))],  # R
    lambda: [_line((0.2, 0.02), (0.2, 0.98)), np.concatenate([_arc(0.5, 0.6, 0.3, 0.22, 180, 360), _line((0.8, 0.6), (0.8, 0.98))])],  # h
    lambda: [_line((0.2, 0.3), (0.2, 0.98)), np.concatenate([_arc(0.5, 0.52, 0.3, 0.22, 180, 360), _line((0.8, 0.52), (0.8, 0.98))])],  # n
    lambda: [
        _line((0.05, 0.3), (0.05, 0.98)),
        np.concatenate([_arc(0.27, 0.5, 0.22, 0.2, 180, 360), _line((0.49, 0.5), (0.49, 0.98))]),
        np.concatenate([_arc(0.72, 0.5, 0.23, 0.2, 180, 360), _line((0.95, 0.5), (0.95, 0.98))]),
    ],  # m
    lambda: [np.concatenate([_line((0.15, 0.55), (0.85, 0.55)), _arc(0.5, 0.55, 0.35, 0.43, 360, 60)])],  # e
    lambda: [_line((0.3, 0.25), (0.3, 0.98)), _arc(0.6, 0.55, 0.3, 0.25, 180, 300)],  # r
    lambda: [_line((0.2, 0.02), (0.2, 0.98)), _line((0.75, 0.4), (0.2, 0.72), (0.8, 0.98))],  # k
    lambda: [
        _arc(0.5, 0.5, 0.22, 0.22, 0, 360),
        *[
            _line((0.5 + 0.3 * np.cos(a), 0.5 + 0.3 * np.sin(a)), (0.5 + 0.48 * np.cos(a), 0.5 + 0.48 * np.sin(a)))
            for a in np.arange(8) * np.pi / 4
        ],
    ],  # sun
    lambda: [*[_arc(0.5 + 0.25 * np.cos(a), 0.5 + 0.25 * np.sin(a), 0.2, 0.2, 0, 360) for a in np.arange(5) * 2 * np.pi / 5]],  # flower
    lambda: [
        _line((0.5, 0.02), (0.1, 0.7), (0.9, 0.7), (0.5, 0.02)),
        _line((0.45, 0.7), (0.45, 0.98)),
        _line((0.55, 0.7), (0.55, 0.98)),
    ],  # tree
    lambda: [np.concatenate([_arc(0.45, 0.5, 0.4, 0.25, -150, 150), _line((0.98, 0.25), (0.98, 0.75), (0.1, 0.375))])],  # fish
    lambda: [_line((0.6, 0.02), (0.25, 0.55), (0.7, 0.45), (0.35, 0.98))],  # lightning
    lambda: [
        np.concatenate([_arc(0.25, 0.6, 0.2, 0.2, 90, 270), _arc(0.5, 0.4, 0.22, 0.25, 180, 360), _arc(0.75, 0.6, 0.2, 0.2, 270, 450)]),
        _line((0.25, 0.8), (0.75, 0.8)),
    ],  # cloud
    lambda: [np.concatenate([_arc(0.27, 0.5, 0.24, 0.2, 0, 360), _arc(0.73, 0.5, 0.24, 0.2, 180, -180)])],  # infinity: an 8 lying down
    lambda: [_arc(0.5, 0.5, 0.48, 0.25, 0, 360), _arc(0.5, 0.5, 0.12, 0.12, 0, 360)],  # eye
    lambda: [_line((0.02, 0.2), (0.98, 0.2), (0.98, 0.8), (0.02, 0.8), (0.02, 0.2), (0.5, 0.55), (0.98, 0.2))],  # envelope
    lambda: [_line((0.02, 0.02), (0.98, 0.98)), _line((0.02, 0.98), (0.98, 0.02)), _line((0.5, 0.02), (0.5, 0.98))],  # asterisk
]


def _jittered(strokes: list[np.ndarray], rng: np.random.Generator) -> list[np.ndarray]:
    """A hand's version of the strokes: slanted, squashed, wobbling, each point a little off."""
    slant, squash, turn = rng.uniform(-0.35, 0.2), rng.uniform(0.65, 1.15), rng.uniform(-0.2, 0.2)
    out = []
    for points in strokes:
        points = np.array(points, np.float32) - 0.5
        points[:, 0] = points[:, 0] * squash - slant * points[:, 1]
        c, s = np.cos(turn), np.sin(turn)
        points = points @ np.array([[c, -s], [s, c]], np.float32)
        wobble = np.cumsum(rng.normal(0, 0.012, points.shape), 0)
        out.append(points + wobble + rng.normal(0, 0.02, points.shape) + 0.5)
    return out


def drawn(strokes: list[np.ndarray], rng: np.random.Generator) -> np.ndarray:
    """Strokes drawn with a round pen of any width a person might use."""
    return _pen(_jittered(strokes, rng), width=rng.uniform(2.5, 11))


@functools.cache
def _characters(font: Path) -> frozenset[int]:
    from matplotlib.ft2font import FT2Font

    return frozenset(FT2Font(str(font)).get_charmap())


def typed(text: str, rng: np.random.Generator, font: Path | None = None) -> np.ndarray:
    """`text` in one of the fonts that come with matplotlib and have its characters (not the
    empty box a font draws for one it lacks), turned a little, bold or light."""
    if font is None:
        fonts = [f for f in TEXT_FONTS if {ord(c) for c in text} <= _characters(f)]
        font = fonts[rng.integers(len(fonts))]
    face = ImageFont.truetype(str(font), 48)
    image = Image.new("L", (96, 96))
    ImageDraw.Draw(image).text((48, 48), text, fill=255, font=face, anchor="mm")
    image = image.rotate(rng.uniform(-15, 15), resample=Image.Resampling.BILINEAR, translate=tuple(rng.uniform(-6, 6, 2)))
    weight = rng.integers(-1, 3)
    if weight > 0:
        image = image.filter(ImageFilter.MaxFilter(2 * weight + 1))
    elif weight < 0:
        image = image.filter(ImageFilter.MinFilter(3))
    return np.asarray(image, np.float32)


def sketched(glyph: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """A typed glyph as a hand would draw it: its skeleton, warped a little, redrawn with a pen."""
    from scipy import ndimage
    from skimage.morphology import skeletonize

    size = glyph.shape[0]
    lines = skeletonize(glyph > 128).astype(np.float32)
    warp = [
        np.asarray(
            Image.fromarray(rng.normal(0, rng.uniform(1, 4), (4, 4)).astype(np.float32)).resize((size, size), Image.Resampling.BICUBIC)
        )
        for _ in range(2)
    ]
    rows, cols = np.mgrid[0:size, 0:size].astype(np.float32)
    lines = ndimage.map_coordinates(lines, [rows + warp[0], cols + warp[1]], order=1) > 0.2
    lines = ndimage.binary_dilation(lines, iterations=int(rng.integers(1, 5)))
    return ndimage.gaussian_filter(lines.astype(np.float32) * 255, 0.8)


def restroked(digit: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """An MNIST digit scaled up and written with a thinner or thicker pen."""
    size = 84
    alpha = np.asarray(Image.fromarray(digit.reshape(28, 28)).resize((size, size), Image.Resampling.BICUBIC), np.float32)
    ink = Image.fromarray((alpha > 110).astype(np.uint8) * 255)
    change = int(rng.integers(-1, 5))  # thinner by more breaks MNIST's thin strokes apart: no longer a digit
    for _ in range(abs(change)):
        ink = ink.filter(ImageFilter.MaxFilter(3) if change > 0 else ImageFilter.MinFilter(3))
    return np.asarray(ink.filter(ImageFilter.GaussianBlur(rng.uniform(0.5, 1.5))), np.float32)


def low_resolution(image: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """The image as a coarse scanner or a phone far away records it: its ink brought down to 6-12
    pixels (area averaged, half the time to a few grey levels; UCI's 8x8 scans are this coarse),
    then scaled back up by any factor as a viewer would (nearest half the time, else bilinear or
    bicubic), sometimes blurred."""
    rows, cols = np.nonzero(image > 0.25 * image.max())
    crop = image[rows.min() : rows.max() + 1, cols.min() : cols.max() + 1] if rows.size else image
    height, width = crop.shape
    factor = rng.integers(6, 13) / max(height, width)
    small = Image.fromarray(np.clip(crop, 0, 255).astype(np.uint8))
    small = np.asarray(small.resize((max(1, round(width * factor)), max(1, round(height * factor))), Image.Resampling.BOX), np.float32)
    if rng.random() < 0.5:
        levels = rng.integers(4, 17)
        small = np.round(small / 255 * levels) / levels * 255
    small = np.pad(small, int(rng.integers(1, 4)))
    up = rng.uniform(2.5, 12)  # not only whole factors: nearest-neighbour blocks of uneven widths, as a viewer draws them
    resample = (Image.Resampling.NEAREST, Image.Resampling.BILINEAR, Image.Resampling.BICUBIC)[rng.choice(3, p=[0.5, 0.25, 0.25])]
    big = Image.fromarray(small.astype(np.uint8)).resize((round(small.shape[1] * up), round(small.shape[0] * up)), resample)
    if rng.random() < 0.4:
        big = big.filter(ImageFilter.GaussianBlur(rng.uniform(0.3, 0.6) * up))
    return np.asarray(big, np.float32)


# -- non-digits -----------------------------------------------------------------------------------


def scribble(rng: np.random.Generator) -> np.ndarray:
    """One to four random strokes: a hand moving with momentum, wandering and turning."""
    strokes = []
    for _ in range(rng.integers(1, 5)):
        n = int(rng.integers(15, 60))
        heading = rng.uniform(0, 2 * np.pi) + np.cumsum(rng.normal(0, rng.uniform(0.3, 0.9), n))
        steps = np.stack([np.cos(heading), np.sin(heading)], 1) * rng.uniform(0.02, 0.08)
        strokes.append(rng.uniform(0.2, 0.8, 2) + np.cumsum(steps, 0))
    return _pen(strokes, width=rng.uniform(2, 10))


def texture(rng: np.random.Generator) -> np.ndarray:
    """What a crop of an ordinary photo might hold: blobs, stripes, grain, edges, gradients."""
    from scipy import ndimage

    size = int(rng.integers(48, 113))
    kind = rng.integers(5)
    yy, xx = np.mgrid[0:size, 0:size] / size
    if kind == 0:  # smooth blobs at one or several scales: coarse noise, scaled up
        field = sum(
            np.asarray(Image.fromarray(rng.normal(size=(cells, cells)).astype(np.float32)).resize((size, size), Image.Resampling.BICUBIC))
            / cells
            for cells in rng.integers(2, 24, rng.integers(1, 4))
        )
    elif kind == 1:  # stripes or a grid
        angle = rng.uniform(0, np.pi)
        field = np.sin((np.cos(angle) * xx + np.sin(angle) * yy) * rng.uniform(16, 50))  # 3 to 8 stripes: one bar is a 1
        if rng.random() < 0.5:
            field = field * np.sin((np.cos(angle + np.pi / 2) * xx + np.sin(angle + np.pi / 2) * yy) * rng.uniform(16, 50))
    elif kind == 2:  # grain
        field = ndimage.gaussian_filter(rng.normal(size=(size, size)), rng.uniform(0.5, 2.5))
    elif kind == 3:  # a few edges: objects against a background
        field = np.zeros((size, size))
        for _ in range(rng.integers(1, 5)):
            angle, offset = rng.uniform(0, 2 * np.pi), rng.uniform(-0.4, 0.4)
            field += rng.uniform(-1, 1) * ((np.cos(angle) * (xx - 0.5) + np.sin(angle) * (yy - 0.5)) > offset)
    else:  # a gradient with a bright or dark patch
        field = rng.uniform(-1, 1) * xx + rng.uniform(-1, 1) * yy
        cy, cx, r = rng.uniform(0.2, 0.8, 3)
        field = field + rng.uniform(-2, 2) * (((yy - cy) ** 2 + (xx - cx) ** 2) < (r / 2) ** 2)
    field = (field - field.min()) / max(np.ptp(field), 1e-6)
    if rng.random() < 0.4:  # hard-edged, as a thresholded photo looks
        field = (field > rng.uniform(0.3, 0.7)).astype(np.float64)
    field = field * rng.uniform(0.3, 1) + rng.normal(0, rng.uniform(0, 0.08), field.shape)
    return np.clip(field * 255, 0, 255).astype(np.float32)


def digit_overlay(digits: np.ndarray, labels: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """Two different MNIST digits written over each other, a few pixels apart: ink in digit strokes
    that is no digit. Not a 1 (a 1 over a 7 may still read as a 7), and never half a digit, which
    as often as not is still a digit (the top of a 9 is a 0, its bottom a 1)."""
    while True:
        i, j = rng.integers(len(digits), size=2)
        if labels[i] != labels[j] and 1 not in (labels[i], labels[j]):
            break
    a, b = (digits[k].reshape(28, 28).astype(np.float32) for k in (i, j))
    shift = rng.integers(-6, 7, 2)
    while np.abs(shift).max() < 3:
        shift = rng.integers(-6, 7, 2)
    return np.maximum(a, np.roll(b, tuple(shift), axis=(0, 1)))


# -- the two sets ---------------------------------------------------------------------------------


def _typed_symbol(digits, labels, rng):
    text = NOT_DIGITS[rng.integers(len(NOT_DIGITS))]
    if rng.random() < 0.15:  # two side by side
        text += NOT_DIGITS[rng.integers(len(NOT_DIGITS))]
    return typed(text, rng), -1


def _sketched_symbol(digits, labels, rng):
    return sketched(typed(NOT_DIGITS[rng.integers(len(NOT_DIGITS))], rng), rng), -1


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


# kind -> (maker, share of its set); a maker returns an image before to_mnist and its label (-1: not a digit)
DIGIT_KINDS = {
    "restroked": (_restroked_digit, 0.25),
    "typed": (_typed_digit, 0.15),
    "sketched": (_sketched_digit, 0.15),
    "drawn": (_drawn_digit, 0.2),
    "low_resolution": (_low_resolution_digit, 0.25),
}
NON_DIGIT_KINDS = {
    "typed_symbol": (_typed_symbol, 0.2),
    "sketched_symbol": (_sketched_symbol, 0.2),
    "drawn_shape": (lambda digit, label, rng: (drawn(DRAWN_SHAPES[rng.integers(len(DRAWN_SHAPES))](), rng), -1), 0.2),
    "scribble": (lambda digit, label, rng: (scribble(rng), -1), 0.15),
    "texture": (lambda digit, label, rng: (texture(rng), -1), 0.15),
    "digit_overlay": (lambda digit, label, rng: (digit_overlay(digit, label, rng), -1), 0.1),
}
KINDS = ("mnist", "photo", *DIGIT_KINDS, *NON_DIGIT_KINDS)  # codes in a set's `kind` array
# What the detector mines its hard negatives from: not overlaid digits, since one digit over another
# can read as a third (a 3 over a 0 as an 8), nor scribbles, whose one wandering stroke is now and
# then an S, a 2 or a 6: the most digit-like of those are digits, and would teach the detector to
# flag digits.
POOL_KINDS = {kind: made for kind, made in NON_DIGIT_KINDS.items() if kind not in ("digit_overlay", "scribble")}
LOW_RESOLUTION_NON_DIGITS = 0.15  # of each kind of non-digit, brought to low resolution as the low_resolution digits are


def as_seen(image: np.ndarray, rng: np.random.Generator, photo: float = 0.25, low: float = 0.0) -> np.ndarray | None:
    """The 28x28 image the model would see: through to_mnist, with probability `low` first at low
    resolution, and with probability `photo` photographed on paper (imaging.photo_like, with a
    pen of the image's own width). None if to_mnist refuses it, as it would a user's."""
    if low and rng.random() < low:
        image = low_resolution(image, rng)
    try:
        seen = imaging.to_mnist(Image.fromarray(np.clip(image, 0, 255).astype(np.uint8)))
        if rng.random() < photo:
            seen = imaging.to_mnist(imaging.photo_like(seen, rng, thin_pen=False))
        return seen
    except imaging.ImageError:
        return None


def clearly_labelled(seen: np.ndarray, label: int) -> bool:
    """Whether a made image, as the model sees it, is clearly what its label says. A digit's ink
    must be at least 10 of MNIST's 20 rows tall (every MNIST training digit but 1 in 6,000 is),
    with 80% of it in one connected stroke (all but 0.4% of MNIST's): one whose strokes fell apart
    on the way (a lone dot, two arcs of a 0) is no longer a digit. A non-digit's ink must
    spread at least 1.6 pixels (its standard deviation) across its main direction: a thinner mark,
    upright or slanted, is a 1 to anyone (MNIST's 1s spread 0.97 pixels, its other digits all but
    1% of them more than 1.8)."""
    from scipy import ndimage

    ink = seen.astype(np.float64)
    if ink.sum() == 0:
        return False
    if label >= 0:
        rows = np.flatnonzero((seen > 64).any(axis=1))
        parts, n = ndimage.label(seen > 64, structure=np.ones((3, 3)))
        largest = ndimage.sum(ink, parts, range(1, n + 1)).max(initial=0) / ink.sum()
        return bool(rows.size and rows[-1] - rows[0] + 1 >= 10 and largest >= 0.8)
    y, x = np.mgrid[0 : seen.shape[0], 0 : seen.shape[1]]
    weights = ink / ink.sum()
    coordinates = np.stack([(y * weights).sum() - y, (x * weights).sum() - x]).reshape(2, -1)
    covariance = (coordinates * weights.ravel()) @ coordinates.T
    return bool(np.sqrt(max(np.linalg.eigvalsh(covariance)[0], 0.0)) >= 1.6)


def photographed(digit: np.ndarray, rng: np.random.Generator) -> np.ndarray | None:
    """An MNIST digit as a phone photo of it, thin pens among them, as to_mnist reads it back."""
    try:
        return imaging.to_mnist(imaging.photo_like(digit, rng))
    except imaging.ImageError:
        return None


CHUNK = 250
_source: tuple[np.ndarray, np.ndarray] = (np.zeros((0, 28, 28), np.uint8), np.zeros(0, np.uint8))  # make_set's digits, shared by fork


def _chunk(job: tuple) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """`n` seen images of one kind from the seed (seed, chunk): the same whichever process makes it."""
    kind, n, seed = job
    digits, labels = _source
    rng = np.random.default_rng(list(seed))
    images, out_labels = [], []
    while len(images) < n:
        if kind == "photo":
            i = rng.integers(len(digits))
            seen, label = photographed(digits[i], rng), int(labels[i])
        else:
            maker = (DIGIT_KINDS | NON_DIGIT_KINDS)[kind][0]
            image, label = maker(digits, labels, rng)
            seen = as_seen(image, rng, low=LOW_RESOLUTION_NON_DIGITS if kind in NON_DIGIT_KINDS else 0.0)
            if seen is not None and not clearly_labelled(seen, label):
                seen = None
        if seen is not None:
            images.append(seen)
            out_labels.append(label)
    return np.stack(images), np.array(out_labels, np.int8), np.full(n, KINDS.index(kind), np.uint8)


def make_set(
    digits: np.ndarray, labels: np.ndarray, counts: dict[str, int], seed: Sequence[int], processes: int | None = None
) -> dict[str, np.ndarray]:
    """Images as the model sees them (N, 28, 28) uint8, their digit (-1: not a digit) and kind
    code (KINDS), `counts[kind]` of each kind, all drawn from `seed` and `digits` alone. Kinds
    are those of DIGIT_KINDS and NON_DIGIT_KINDS, and "photo" (an MNIST digit photographed).
    Made in a process pool (call it before TensorFlow starts its threads); the result does not
    depend on the number of processes."""
    global _source
    _source = (digits, labels)
    jobs = [
        (kind, min(CHUNK, n - start), (*seed, KINDS.index(kind), start // CHUNK))
        for kind, n in counts.items()
        for start in range(0, n, CHUNK)
    ]
    processes = processes or os.cpu_count() or 1
    if processes > 1 and len(jobs) > 1:
        # one BLAS thread a process: to_mnist's small least-squares fits, spread over every core
        # by OpenBLAS in each process at once, were three times slower than on one
        with multiprocessing.get_context("fork").Pool(processes, initializer=threadpoolctl.threadpool_limits, initargs=(1,)) as pool:
            parts = pool.map(_chunk, jobs, chunksize=1)
    else:
        parts = [_chunk(job) for job in jobs]
    if not parts:
        return {"images": np.zeros((0, 28, 28), np.uint8), "labels": np.zeros(0, np.int8), "kind": np.zeros(0, np.uint8)}
    images, out_labels, kinds = (np.concatenate(column) for column in zip(*parts, strict=False))
    return {"images": images, "labels": out_labels, "kind": kinds}


def shares(total: int, kinds: dict[str, tuple]) -> dict[str, int]:
    """`total` split over the kinds by their shares."""
    names = list(kinds)
    counts = [int(total * kinds[k][1]) for k in names]
    counts[0] += total - sum(counts)
    return dict(zip(names, counts, strict=False))
