"""How a set is made: each made image as the model would see it (to_mnist, some photographed, some
non-digits at low resolution), kept only if it is clearly what its label says, made in chunks of
CHUNK images over a process pool, each chunk from its own seed."""

from __future__ import annotations

import multiprocessing
import os
from collections.abc import Sequence

import numpy as np
import threadpoolctl
from PIL import Image

from .. import imaging
from .kinds import DIGIT_KINDS, KINDS, LOW_RESOLUTION_NON_DIGITS, NON_DIGIT_KINDS
from .render import low_resolution, photographed


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
    1% of them more than 1.8), unless a part of its own holds a twentieth of its ink: a "!" or a
    broken bar is no 1."""
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
    if np.sqrt(max(np.linalg.eigvalsh(covariance)[0], 0.0)) >= 1.6:
        return True
    parts, n = ndimage.label(seen > 64, structure=np.ones((3, 3)))
    return bool(n > 1 and np.sort(ndimage.sum(ink, parts, range(1, n + 1)))[-2] >= ink.sum() / 20)


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
