"""Stage: the digit-or-not detector -> models/detector/ (model.keras, threshold.json).

detector.members small CNNs (models.detector), of seeds detector.seed, +1, ..., each learn
digits from non-digits on data/synthetic's training set, with a checkpoint after every epoch
under .cache/detector/<key>/ as train has. Then each mines hard negatives: of synthesize's pool
of further non-digits, the detector.hard_negatives it takes most for digits join its training
set for detector.hard_epochs more epochs (plots/detector_hard_negatives.png shows the first
member's, to check by eye that none is a digit). The served detector averages their log-odds
(models.averaged_detector).

Made digits that no longer read as their digit are label noise (a restroked, sketched,
or photographed digit can smear into a blob): a reader, the tutorial's CNN
trained READER_EPOCHS epochs on MNIST's training digits here (not train's model, so that an
experiment on train's params does not retrain the detector), reads each, and those it misreads
leave the positives of both sets. Typed and drawn digits are digits by construction and stay,
as MNIST's own do, and so do low-resolution ones (READ_TO_KEEP says why).

The threshold is set on the held-out validation set: of each kind of digit there (MNIST's own,
photographed, restroked, typed, sketched, drawn, low-resolution) at most that kind's
detector.false_flag_rate are called "not a digit" (plots/detector_flagged_digits.png shows
those); export folds the detector and its threshold into the served model.
"""

import dataclasses
import shutil
from pathlib import Path

from mnist_pipeline import stage

p = stage.load_params()  # first: a typo in params.yaml answers before TensorFlow and MLflow load

import numpy as np  # noqa: E402

from mnist_pipeline import evaluation, mnist, models, synthetic, tracking, training  # noqa: E402
from mnist_pipeline.params import Model  # noqa: E402

SYNTHETIC = Path("data/synthetic")
PREPARED = Path("data/prepared")
READER = Model("seed_cnn", [32, 64, 64], 100, 0.0)  # the tutorial's CNN
READER_EPOCHS = 2
OUT = Path("models/detector")
CACHE = Path(".cache/detector")
HARD_NEGATIVES_SHEET = Path("plots/detector_hard_negatives.png")
FLAGGED_SHEET = Path("plots/detector_flagged_digits.png")
# Made digits kept only when the reader reads them right. Not low-resolution ones: the reader, trained
# on MNIST alone, misreads coarse digits that are plainly digits, and dropping them taught the
# detector to flag real coarse scans (bench/detector_results.json: UCI scans flagged).
READ_TO_KEEP = ("photo", "restroked", "sketched")


def load(split: str) -> dict[str, np.ndarray]:
    return {key: np.load(SYNTHETIC / f"{split}_{key}.npy") for key in ("images", "labels", "kind")}


def train_reader():
    data = mnist.load_prepared(PREPARED, "train")
    job = training.prepare(
        READER,
        training.to_tensors(data.images, data.labels),
        np.arange(len(data.labels)),
        batch_size=200,
        optimizer="adam",
        learning_rate=0.001,
        epochs=READER_EPOCHS,
        seed=p.detector.seed,
    )
    training.train(job, READER_EPOCHS, label="reader")
    return job.model


def readable(sets: dict[str, dict[str, np.ndarray]]) -> dict[str, dict[str, np.ndarray]]:
    """Each set without the made digits of READ_TO_KEEP's kinds that the reader misreads."""
    reader = train_reader()
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


def train_member(number: int, train: dict[str, np.ndarray], pool: np.ndarray | None, cache: Path):
    """Detector `number` (1, 2, ...), of seed detector.seed + number - 1, in float32."""
    is_digit = (train["labels"] >= 0).astype(np.uint8)
    name = f"detector {number}/{p.detector.members}"
    print(f"{name}: training on {is_digit.sum()} digits and {(1 - is_digit).sum()} non-digits for {p.detector.epochs} epochs", flush=True)
    job = training.prepare(
        models.detector,
        training.to_tensors(train["images"], is_digit),
        np.arange(len(is_digit)),
        batch_size=p.detector.batch_size,
        optimizer="adam",
        learning_rate=p.detector.learning_rate,
        epochs=p.detector.epochs,
        seed=p.detector.seed + number - 1,
    )
    first_epoch = (number - 1) * (p.detector.epochs + (p.detector.hard_epochs if pool is not None else 0))
    training.train(job, p.detector.epochs, lambda epoch, logs: tracking.log_epoch(first_epoch + epoch, logs), name, checkpoint=cache)
    if pool is not None:
        pool_logits = evaluation.log_odds(job.model.predict(pool, batch_size=1000, verbose=0))
        hard = np.argsort(-pool_logits, kind="stable")[: p.detector.hard_negatives]  # the most digit-like first
        print(
            f"{name}: hard negatives, the {len(hard)} of {len(pool)} pooled non-digits most like a digit "
            f"(log-odds {pool_logits[hard[-1]]:.2f} to {pool_logits[hard[0]]:.2f}); {p.detector.hard_epochs} more epochs with them",
            flush=True,
        )
        if number == 1:
            stage.save_contact_sheet(HARD_NEGATIVES_SHEET, [pool[hard[i : i + 25]] for i in range(0, min(len(hard), 400), 25)])
            tracking.log_artifact(HARD_NEGATIVES_SHEET)
        job = dataclasses.replace(
            job,
            examples=training.to_tensors(
                np.concatenate([train["images"], pool[hard]]), np.concatenate([is_digit, np.zeros(len(hard), np.uint8)])
            ),
            index=np.arange(len(is_digit) + len(hard)),
        )
        training.train(
            job,
            p.detector.hard_epochs,
            lambda epoch, logs: tracking.log_epoch(first_epoch + p.detector.epochs + epoch, logs),
            f"{name} with hard negatives",
            checkpoint=cache / "hard",
        )
    return models.in_float32(job.model)  # the threshold is set on the model that is served


def main() -> None:
    precision = training.set_precision(p.distribute.precision)
    tracking.connect()
    pool = load("pool")["images"] if p.detector.hard_negatives and p.detector.hard_epochs else None
    if pool is not None and len(pool) < p.detector.hard_negatives:
        raise stage.PipelineError(
            f"detector.hard_negatives: {p.detector.hard_negatives} is more than the {len(pool)} non-digits of synthetic.pool; "
            "make the pool larger or mine fewer (0: none)"
        )
    train, val = readable({"train": load("train"), "val": load("val")}).values()
    run_params = tracking.flat_params(detector=p.detector) | {"distribute.precision": p.distribute.precision, "precision_used": precision}
    cache = CACHE / stage.cache_key(run_params, [train["images"], train["labels"]], [__file__, *stage.library_sources()])
    with tracking.run("detector", run_params, resume_from=cache / "mlflow_run_id") as run_id:
        model = models.averaged_detector([train_member(i, train, pool, cache / f"member_{i}") for i in range(1, p.detector.members + 1)])
        logits = evaluation.log_odds(model.predict(val["images"], batch_size=1000, verbose=0))
        budgets = p.detector.flag_budgets()
        threshold, report = evaluation.digit_threshold(logits, val["labels"] >= 0, val["kind"], synthetic.KINDS, budgets)
        flagged = {
            synthetic.KINDS[k]: val["images"][(val["kind"] == k) & (logits < threshold)]
            for k in set(val["kind"][val["labels"] >= 0].tolist())
        }
        stage.save_contact_sheet(
            FLAGGED_SHEET,
            [flagged[kind] for kind in budgets if kind in flagged],
            labels=[f"{kind}: {len(flagged[kind])} of {report['n'][kind]}" for kind in budgets if kind in flagged],
        )
        tracking.log_artifact(FLAGGED_SHEET)
        tracking.log_metrics({f"val_flagged.{kind}": share for kind, share in report["flagged"].items()})
        with stage.atomic_path(OUT, directory=True) as tmp:
            model.save(tmp / "model.keras")
            stage.write_json(tmp / "threshold.json", {"log_odds": threshold, "false_flag_rate": budgets})
        stage.write_json("reports/detector.json", report | {"threshold_log_odds": threshold, "mlflow": {"run_id": run_id}})
    shutil.rmtree(cache, ignore_errors=True)
    print(
        f"threshold: log-odds {threshold:.3f}, set by the budget of {report['held_by']} digits ({budgets[report['held_by']]:.2%}); "
        "on the held-out validation set flagged as not a digit: "
        + ", ".join(f"{kind} {share:.2%}" for kind, share in report["flagged"].items())
    )


if __name__ == "__main__":
    stage.run(main)
