"""The digit-or-not detector's training: a reader that drops the made digits which no longer read
as their digit, members that learn digits from non-digits and then from the hard negatives each
mines, and the threshold on their averaged log-odds that each kind of digit's budget allows.

Made digits that no longer read as their digit are label noise (a restroked, sketched, or
photographed digit can smear into a blob): a reader, the tutorial's CNN trained READER_EPOCHS
epochs on MNIST's training digits (not train's model, so that an experiment on train's params
does not retrain the detector), reads each, and those it misreads leave the positives. Typed and
drawn digits are digits by construction and stay, as MNIST's own do, and so do low-resolution
ones (READ_TO_KEEP says why)."""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Collection
from pathlib import Path

import numpy as np

from . import datasets, evaluation, mnist, models, synthetic, training
from .params import Detector, Model

READER = Model("seed_cnn", [32, 64, 64], 100, 0.0)  # the tutorial's CNN
READER_EPOCHS = 2
# Made digits kept only when the reader reads them right. Not low-resolution ones: the reader, trained
# on MNIST alone, misreads coarse digits that are plainly digits, and dropping them taught the
# detector to flag real coarse scans (bench/detector_results.json: UCI scans flagged).
READ_TO_KEEP = ("photo", "restroked", "sketched")


def log_odds(two_class: np.ndarray) -> np.ndarray:
    """log(p(digit) / p(not a digit)) from the detector's two-class probabilities."""
    p = np.clip(two_class.astype(np.float64), 1e-30, 1)
    return np.log(p[:, 1]) - np.log(p[:, 0])


def digit_threshold(
    logits: np.ndarray,
    is_digit: np.ndarray,
    kind: np.ndarray,
    kinds: tuple[str, ...],
    budgets: dict[str, float],
    holders: Collection[str],
) -> tuple[float, dict]:
    """The highest threshold on the log-odds that calls at most `budgets[name]` of the digits of
    each kind among `holders` "not a digit"; and, at that threshold, the share flagged of every
    kind, which kind's budget set it, and each kind of digit's share against its budget
    (evaluation.within_budgets: the held-out kinds not among the holders are checked, not obeyed)."""
    digit_kinds = sorted(set(kind[is_digit].tolist()))
    limits = {
        kinds[k]: float(np.quantile(logits[is_digit & (kind == k)], budgets[kinds[k]], method="lower"))
        for k in digit_kinds
        if kinds[k] in holders
    }
    held_by = min(limits, key=limits.get)
    flagged = {kinds[k]: float((logits[kind == k] < limits[held_by]).mean()) for k in sorted(set(kind.tolist()))}
    n = {kinds[k]: int((kind == k).sum()) for k in sorted(set(kind.tolist()))}
    return limits[held_by], {
        "flagged": flagged,
        "n": n,
        "held_by": held_by,
        "threshold_kinds": sorted(limits),
        "budgets": evaluation.within_budgets({kinds[k]: flagged[kinds[k]] for k in digit_kinds}, n, budgets),
    }


def train_reader(prepared: mnist.Dataset, seed: int):
    job = training.prepare(
        READER,
        datasets.to_tensors(prepared.images, prepared.labels),
        np.arange(len(prepared.labels)),
        batch_size=200,
        optimizer="adam",
        learning_rate=0.001,
        epochs=READER_EPOCHS,
        seed=seed,
    )
    training.train(job, READER_EPOCHS, label="reader")
    return job.model


def readable(sets: dict[str, dict[str, np.ndarray]], reader) -> dict[str, dict[str, np.ndarray]]:
    """Each set without the made digits of READ_TO_KEEP's kinds that the reader misreads."""
    checked = [synthetic.KINDS.index(kind) for kind in READ_TO_KEEP]
    kept = {}
    for name, arrays in sets.items():
        misread = reader.predict(arrays["images"], batch_size=1000, verbose=0).argmax(axis=1) != arrays["labels"]
        drop = misread & (arrays["labels"] >= 0) & np.isin(arrays["kind"], checked)
        kept[name] = {key: array[~drop] for key, array in arrays.items()}
        print(
            f"{name}: {drop.sum()} made digits the reader misreads left out ("
            + ", ".join(f"{synthetic.KINDS[k]} {(drop & (arrays['kind'] == k)).sum()}" for k in checked)
            + ")",
            flush=True,
        )
    return kept


def train_member(
    number: int,
    params: Detector,
    train: dict[str, np.ndarray],
    pool: np.ndarray | None,
    cache: Path,
    on_epoch_end: training.EpochCallback,
    on_hard_negatives: Callable[[np.ndarray], None] | None = None,
):
    """Detector `number` (1, 2, ...), of seed params.seed + number - 1, in float32: params.epochs
    on the training set, then, with a `pool`, params.hard_epochs more with the params.hard_negatives
    pooled non-digits it takes most for digits (shown to `on_hard_negatives`, most digit-like
    first). `on_epoch_end` gets the member's epochs counted on from its predecessors'."""
    is_digit = (train["labels"] >= 0).astype(np.uint8)
    name = f"detector {number}/{params.members}"
    print(f"{name}: training on {is_digit.sum()} digits and {(1 - is_digit).sum()} non-digits for {params.epochs} epochs", flush=True)
    job = training.prepare(
        models.detector,
        datasets.to_tensors(train["images"], is_digit),
        np.arange(len(is_digit)),
        batch_size=params.batch_size,
        optimizer="adam",
        learning_rate=params.learning_rate,
        epochs=params.epochs,
        seed=params.seed + number - 1,
    )
    first_epoch = (number - 1) * (params.epochs + (params.hard_epochs if pool is not None else 0))
    training.train(job, params.epochs, lambda epoch, logs: on_epoch_end(first_epoch + epoch, logs), name, checkpoint=cache)
    if pool is not None:
        pool_logits = log_odds(job.model.predict(pool, batch_size=1000, verbose=0))
        hard = np.argsort(-pool_logits, kind="stable")[: params.hard_negatives]  # the most digit-like first
        print(
            f"{name}: hard negatives, the {len(hard)} of {len(pool)} pooled non-digits most like a digit "
            f"(log-odds {pool_logits[hard[-1]]:.2f} to {pool_logits[hard[0]]:.2f}); {params.hard_epochs} more epochs with them",
            flush=True,
        )
        if on_hard_negatives is not None:
            on_hard_negatives(pool[hard])
        job = dataclasses.replace(
            job,
            examples=datasets.to_tensors(
                np.concatenate([train["images"], pool[hard]]), np.concatenate([is_digit, np.zeros(len(hard), np.uint8)])
            ),
            index=np.arange(len(is_digit) + len(hard)),
        )
        training.train(
            job,
            params.hard_epochs,
            lambda epoch, logs: on_epoch_end(first_epoch + params.epochs + epoch, logs),
            f"{name} with hard negatives",
            checkpoint=cache / "hard",
        )
    return models.in_float32(job.model)  # the threshold is set on the model that is served
