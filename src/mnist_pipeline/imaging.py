"""Turn people's digit images into what MNIST looks like. No TensorFlow.

MNIST digits are white on black, scaled to fit a 20x20 box with their aspect ratio kept, and
centred by their centre of mass in a 28x28 image. A photo of dark ink on paper needs the same
treatment before a model trained on MNIST can read it.
"""

from __future__ import annotations

import io
import re
from pathlib import Path

import numpy as np
from PIL import Image, ImageFilter, ImageOps, UnidentifiedImageError

from . import PipelineError

MAX_PIXELS = 40_000_000  # ~ a 7,000 x 5,700 photo; larger files are refused (decompression bombs)
WORKING_SIZE = 512  # larger images are shrunk to this first: plenty for a 20 px digit
BOX, SIZE = 20, 28
STROKE_ZOOM = 4
# Stroke widths (stroke_width at STROKE_ZOOM x the box) beyond which a digit is redrawn, and the width it
# gets, set from MNIST's own training digits as bench/stroke_widths.py measures them (it prints their
# percentiles; no results file is committed), so that MNIST's own digits all but never change
MNIST_STROKE = (1.3, 2.7, 5.8)


class ImageError(PipelineError):
    pass


class TooLarge(ImageError):
    """More pixels than MAX_PIXELS."""


def open_image(path: Path | str) -> Image.Image:
    """Open and fully decode an image, with one clear error for anything that is not a usable image."""
    try:
        image = Image.open(path)
    except UnidentifiedImageError:
        raise ImageError("not an image Pillow can read") from None
    except Image.DecompressionBombError as exc:  # Pillow's own guard, at twice its pixel limit: far over ours
        pixels = re.search(r"\((\d+) pixels\)", str(exc))
        size = f"{int(pixels[1]):,} pixels" if pixels else "the image"
        raise TooLarge(f"{size} is over the limit of {MAX_PIXELS:,}") from None
    except OSError as exc:
        raise ImageError(f"cannot open ({exc.strerror or exc})") from None
    if image.width * image.height > MAX_PIXELS:
        raise TooLarge(f"{image.width}x{image.height} pixels is over the limit of {MAX_PIXELS:,}")
    try:
        image.load()
    except (OSError, SyntaxError, ValueError) as exc:
        raise ImageError(f"corrupt or truncated image ({exc})") from None
    ImageOps.exif_transpose(image, in_place=True)  # a phone's rotation tag applied; no copy when there is none
    return image


def grayscale(image: Image.Image) -> np.ndarray:
    """float32 0..255, transparency composited onto white paper, 16-bit scaled down."""
    if image.mode in ("I;16", "I;16B", "I;16L", "I"):
        values = np.asarray(image, dtype=np.float32)
        return values * (255.0 / 65535.0) if values.max() > 255 else values
    if image.mode == "F":
        return np.clip(np.asarray(image, dtype=np.float32), 0, 255)
    if image.mode in ("RGBA", "LA", "PA") or (image.mode == "P" and "transparency" in image.info):
        paper = Image.new("RGBA", image.size, "white")
        image = Image.alpha_composite(paper, image.convert("RGBA"))
    return np.asarray(image if image.mode == "L" else image.convert("L"), dtype=np.float32)


def _otsu_threshold(histogram: np.ndarray) -> int:
    weight = np.cumsum(histogram)
    mean = np.cumsum(histogram * np.arange(256))
    total, total_mean = weight[-1], mean[-1]
    spread = weight * (total - weight)  # 0 where one side is empty, and then so is the numerator
    between = np.divide((total_mean * weight - mean * total) ** 2, spread, out=np.zeros(256), where=spread > 0)
    return int(np.argmax(between))


def _median(values: np.ndarray) -> float:
    """np.median without its overhead, which costs more than the sort on a small image."""
    ordered = np.sort(values)
    return (float(ordered[(len(ordered) - 1) // 2]) + float(ordered[len(ordered) // 2])) / 2


def _quantile(histogram: np.ndarray, q: float) -> int:
    """The grey level below which a fraction q of the histogram's pixels lie."""
    return int(np.searchsorted(np.cumsum(histogram), q * histogram.sum()))


def to_mnist(image: Image.Image) -> np.ndarray:
    """A (28, 28) uint8 array, white digit on black, as MNIST's preprocessing would have made it."""
    if max(image.size) > WORKING_SIZE:
        image = image.copy()
        image.thumbnail((WORKING_SIZE, WORKING_SIZE), Image.Resampling.BOX)  # area average: fast, no aliasing
    gray = grayscale(image)
    border = np.concatenate([gray[0], gray[-1], gray[:, 0], gray[:, -1]])
    if _median(border) > 127:  # dark ink on light paper
        gray = 255.0 - gray
    if gray.max() - gray.min() < 16:
        raise ImageError("no digit found (the image is blank)")
    gray = _without_shading(gray)
    # one histogram of grey levels gives the ink/paper split and the statistics of each
    histogram = np.bincount(np.clip(gray, 0, 255).astype(np.uint8).ravel(), minlength=256).astype(np.float64)
    threshold = _otsu_threshold(histogram)
    # The paper's level and noise from all pixels (ink is a minority, and a thin stroke so few
    # pixels that Otsu's split falls inside the paper's noise), the ink's level from what lies above both.
    median = _quantile(histogram, 0.5)
    deviations = np.bincount(np.abs(np.arange(256) - median), weights=histogram)
    floor = median + 4 * 1.4826 * _quantile(deviations, 0.5)  # noise above the paper
    above = int(max(threshold, floor)) + 1
    peak = above + _quantile(histogram[above:], 0.9)
    if peak - floor < 16:
        raise ImageError("no digit found (too little contrast)")
    cleaned = np.clip((gray - floor) / (peak - floor), 0, 1)
    rows, cols = np.nonzero(_without_specks((gray > threshold) & (cleaned > 0)))
    if rows.size == 0:
        raise ImageError("no digit found")
    cleaned = cleaned[rows.min() : rows.max() + 1, cols.min() : cols.max() + 1]

    height, width = cleaned.shape
    scale = BOX / max(height, width)
    size = (max(1, round(width * scale)), max(1, round(height * scale)))
    digit = _with_mnist_stroke(cleaned, size)
    if digit is None:  # a stroke as wide as MNIST's: scaled as MNIST's own preprocessing would
        digit = np.asarray(Image.fromarray(cleaned * 255).resize(size, Image.Resampling.LANCZOS), dtype=np.float32)
    canvas = np.zeros((SIZE, SIZE), np.float32)
    (height, width), top, left = digit.shape, (SIZE - digit.shape[0]) // 2, (SIZE - digit.shape[1]) // 2
    canvas[top : top + height, left : left + width] = np.clip(digit, 0, 255)
    return _centre_by_mass(canvas).round().astype(np.uint8)


def stroke_width(ink: np.ndarray) -> float:
    """The pen's width in pixels of an ink mask: twice its area over its boundary, which is exact
    for long strokes of three pixels and more (it reads 1- and 2-pixel strokes as 2)."""
    from scipy import ndimage

    boundary = ink & ~ndimage.binary_erosion(ink)
    return 2 * float(ink.sum()) / max(1, int(boundary.sum()))


def _zoomed(crop: np.ndarray, size: tuple[int, int]) -> tuple[np.ndarray, float]:
    """A digit cropped to its ink (0..1), scaled to STROKE_ZOOM times `size`, its fit in the 20x20
    box; and its stroke width in pixels of that box."""
    big = np.asarray(
        Image.fromarray(crop * 255).resize((size[0] * STROKE_ZOOM, size[1] * STROKE_ZOOM), Image.Resampling.BILINEAR), dtype=np.float32
    )
    return big, stroke_width(big > 0.5 * big.max()) / STROKE_ZOOM


def box_stroke_width(digit: np.ndarray) -> float:
    """The stroke width of a 28x28 digit in pixels of MNIST's 20x20 box, as to_mnist measures it."""
    rows, cols = np.nonzero(digit)
    crop = digit[rows.min() : rows.max() + 1, cols.min() : cols.max() + 1].astype(np.float32) / 255
    scale = BOX / max(crop.shape)
    return _zoomed(crop, (max(1, round(crop.shape[1] * scale)), max(1, round(crop.shape[0] * scale))))[1]


def _with_mnist_stroke(cleaned: np.ndarray, size: tuple[int, int]) -> np.ndarray | None:
    """The digit (0..1, cropped to its ink, `size` its fit in the box) fitted to the 20x20 box with
    its strokes thickened or thinned to MNIST's typical width, when they are far thinner or
    thicker than MNIST's own (MNIST_STROKE); None when they are not. The pen that changes them
    is round, at STROKE_ZOOM times the box, which is then scaled down."""
    from scipy import ndimage

    big, width = _zoomed(cleaned, size)
    low, typical, high = MNIST_STROKE
    if low <= width <= high:
        return None
    radius = round(abs(typical - width) * STROKE_ZOOM / 2)
    yy, xx = np.mgrid[-radius : radius + 1, -radius : radius + 1]
    pen = xx * xx + yy * yy <= radius * radius
    thicken = width < low
    big = ndimage.grey_dilation(np.pad(big, radius), footprint=pen) if thicken else ndimage.grey_erosion(big, footprint=pen)
    rows, cols = np.nonzero(big > 0)
    if rows.size == 0:
        return None
    # at full strength: a hairline scaled down to the zoomed box is faint grey, and so is its thickening
    big = Image.fromarray(big[rows.min() : rows.max() + 1, cols.min() : cols.max() + 1] * (255 / big.max()))
    scale = BOX / max(big.size)
    return np.asarray(
        big.resize((max(1, round(big.width * scale)), max(1, round(big.height * scale))), Image.Resampling.BOX), dtype=np.float32
    )


def _without_shading(gray: np.ndarray) -> np.ndarray:
    """The image with the paper made even. Light that falls off across a photo spreads the paper
    over many grey levels, and a thin stroke's few pixels drown in them. The paper's brightness is
    a smooth surface (a quadratic in x and y) fitted to the image's outer band, which is paper but
    for a little ink that a few refits leave out; it is replaced by its median level."""
    height, width = gray.shape
    step = max(1, max(height, width) // 64)
    near = 0.15 * min(height, width)
    row_grid, col_grid = np.arange(0, height, step), np.arange(0, width, step)
    band = (np.minimum(row_grid, height - 1 - row_grid) < near)[:, None] | (np.minimum(col_grid, width - 1 - col_grid) < near)
    values = gray[::step, ::step][band]
    if np.ptp(values) < 2:  # the whole band is one grey (MNIST's black, a drawing): no percentiles needed
        return gray
    rows, cols = np.nonzero(band)
    rows, cols = rows * step, cols * step
    # the 5th and 75th percentiles (np.percentile's linear interpolation, without its overhead)
    low, high = np.interp(np.array([0.05, 0.75]) * (len(values) - 1), np.arange(len(values)), np.sort(values))
    if high - low < 2:  # most of the band is one grey: even already (a clean scan)
        return gray
    terms = _quadratic_terms(rows / height, cols / width)
    keep = np.ones(len(values), bool)
    for _ in range(3):  # ink lies far above the paper: fit, leave out what lies far above, fit again
        coefficients = np.linalg.lstsq(terms[keep], values[keep], rcond=None)[0]
        residuals = values - terms @ coefficients
        spread = 1.4826 * np.median(np.abs(residuals[keep] - np.median(residuals[keep])))
        settled, keep = keep, residuals < 2.5 * spread + 1
        if np.array_equal(settled, keep):
            break
    y, x = np.arange(height)[:, None] / height, np.arange(width)[None, :] / width
    c, cx, cy, cxx, cxy, cyy = coefficients
    paper = c + cx * x + cy * y + cxx * x * x + cxy * x * y + cyy * y * y
    return gray - paper + np.median(paper)


def _quadratic_terms(y: np.ndarray, x: np.ndarray) -> np.ndarray:
    return np.stack([np.ones_like(x), x, y, x * x, x * y, y * y], axis=-1)


def _without_specks(mask: np.ndarray) -> np.ndarray:
    """Drop connected blobs far smaller than the largest stroke: noise, dust, paper texture."""
    from scipy import ndimage  # here, not at the top: its import would delay `serve --workers N` starting up

    labels, count = ndimage.label(mask, structure=np.ones((3, 3)))
    if count <= 1:
        return mask
    sizes = np.bincount(labels.ravel())
    sizes[0] = 0  # the background
    return (sizes >= max(2, 0.05 * sizes.max()))[labels]


def _centre_by_mass(canvas: np.ndarray) -> np.ndarray:
    total = canvas.sum()
    grid = np.arange(SIZE)
    row = (canvas.sum(axis=1) @ grid) / total
    col = (canvas.sum(axis=0) @ grid) / total
    shift_rows, shift_cols = round(SIZE / 2 - row), round(SIZE / 2 - col)  # MNIST's mass sits at (14, 14)
    rows, cols = np.flatnonzero(canvas.any(axis=1)), np.flatnonzero(canvas.any(axis=0))
    # never push ink off the canvas
    down = min(max(shift_rows, -int(rows[0])), SIZE - 1 - int(rows[-1]))
    right = min(max(shift_cols, -int(cols[0])), SIZE - 1 - int(cols[-1]))
    shifted = np.zeros_like(canvas)
    shifted[max(0, down) : SIZE + min(0, down), max(0, right) : SIZE + min(0, right)] = canvas[
        max(0, -down) : SIZE - max(0, down), max(0, -right) : SIZE - max(0, right)
    ]
    return shifted


def naive(image: Image.Image) -> np.ndarray:
    """The tutorial's preprocessing, for comparison: grayscale and squash to 28x28, nothing else."""
    return np.asarray(image.convert("L").resize((SIZE, SIZE)), dtype=np.uint8)


def photo_like(digit: np.ndarray, rng: np.random.Generator, thin_pen: bool | None = None) -> Image.Image:
    """An MNIST digit as a phone photo of it might look: dark ink on tinted, noisy paper,
    scaled up, off-centre in a larger frame, slightly rotated, JPEG-compressed. One in five is
    written with a thin pen, small in a large frame, under light that falls off across the page
    (`thin_pen` chooses for this one)."""
    drawn = rng.random() < 0.2
    thin_pen = drawn if thin_pen is None else thin_pen
    size = int(rng.integers(40, 91) if thin_pen else rng.integers(56, 161))
    alpha = np.asarray(Image.fromarray(digit.reshape(SIZE, SIZE)).resize((size, size), Image.Resampling.BICUBIC), np.float32) / 255
    if thin_pen:
        alpha = _thinned(alpha > 0.5, pen=int(rng.integers(1, 4)))
    canvas_size = int(size * (rng.uniform(2.5, 4.5) if thin_pen else rng.uniform(1.3, 2.2)))
    mask = np.zeros((canvas_size, canvas_size), np.float32)
    top, left = rng.integers(0, canvas_size - size + 1, size=2)
    mask[top : top + size, left : left + size] = np.clip(alpha, 0, 1)
    mask = np.asarray(Image.fromarray(mask).rotate(rng.uniform(-12, 12), resample=Image.Resampling.BILINEAR))
    paper = rng.uniform(170, 245) + rng.uniform(-20, 10, size=3)
    if thin_pen:  # brighter on one side of the page than the other
        direction = rng.uniform(0, 2 * np.pi)
        rows, cols = np.mgrid[0:canvas_size, 0:canvas_size] / canvas_size
        across = np.cos(direction) * cols + np.sin(direction) * rows
        paper = paper + (rng.uniform(40, 90) * (across - across.mean()))[..., None]
    ink = rng.uniform(0, 80) + rng.uniform(-10, 10, size=3)
    rgb = paper * (1 - mask[..., None]) + ink * mask[..., None]
    rgb += rng.normal(0, rng.uniform(0, 12), size=rgb.shape)
    image = Image.fromarray(np.clip(rgb, 0, 255).astype(np.uint8), "RGB")
    if not thin_pen and rng.random() < 0.5:
        image = image.filter(ImageFilter.GaussianBlur(rng.uniform(0.3, 1.2)))
    buffer = io.BytesIO()
    image.save(buffer, "JPEG", quality=int(rng.integers(40, 91)))
    return Image.open(buffer)


def _thinned(ink: np.ndarray, pen: int) -> np.ndarray:
    """The strokes of an ink mask redrawn with a pen `pen` pixels wide along their skeleton, so
    that they stay whole however thin, softly edged."""
    from scipy import ndimage
    from skimage.morphology import skeletonize

    strokes = skeletonize(ink)
    if pen > 1:
        strokes = ndimage.binary_dilation(strokes, iterations=pen // 2)
    return np.clip(1.5 * ndimage.gaussian_filter(strokes.astype(np.float32), 0.6), 0, 1)
