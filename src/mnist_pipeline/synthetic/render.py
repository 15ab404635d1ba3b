"""The renderers: each makes one image from a numpy Generator, white ink on black, any size, as a
person's image would arrive before `imaging.to_mnist`. Digits and non-digits go through the same ones
(typed in a font, drawn with a round pen, sketched, brought to low resolution), so that how an image
was made never tells the two apart."""

from __future__ import annotations

import functools
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw, ImageFilter, ImageFont

from .. import imaging
from .glyphs import TEXT_FONTS

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


# -- MNIST digits, remade -------------------------------------------------------------------------


def restroked(digit: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """An MNIST digit scaled up and written with a thinner or thicker pen."""
    size = 84
    alpha = np.asarray(Image.fromarray(digit.reshape(28, 28)).resize((size, size), Image.Resampling.BICUBIC), np.float32)
    ink = Image.fromarray((alpha > 110).astype(np.uint8) * 255)
    change = int(rng.integers(-1, 5))  # thinner by more breaks MNIST's thin strokes apart: no longer a digit
    for _ in range(abs(change)):
        ink = ink.filter(ImageFilter.MaxFilter(3) if change > 0 else ImageFilter.MinFilter(3))
    return np.asarray(ink.filter(ImageFilter.GaussianBlur(rng.uniform(0.5, 1.5))), np.float32)


def photographed(digit: np.ndarray, rng: np.random.Generator) -> np.ndarray | None:
    """An MNIST digit as a phone photo of it, thin pens among them, as to_mnist reads it back."""
    try:
        return imaging.to_mnist(imaging.photo_like(digit, rng))
    except imaging.ImageError:
        return None


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
