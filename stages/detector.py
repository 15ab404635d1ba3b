"""Stage: the digit-or-not detector -> models/detector/ (model.keras, threshold.json).

A small CNN (models.detector) learns digits from non-digits on data/synthetic's training set,
with a checkpoint after every epoch under .cache/detector/<key>/ as train has. Then it mines
hard negatives: of synthesize's pool of further non-digits, the detector.hard_negatives it
takes most for digits join the training set for detector.hard_epochs more epochs
(plots/detector_hard_negatives.png shows them, to check by eye that none is a digit).
Its threshold is set on the held-out validation set: of each kind of digit there (MNIST's own,
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

from mnist_pipeline import evaluation, models, synthetic, tracking, training  # noqa: E402

SYNTHETIC = Path("data/synthetic")
OUT = Path("models/detector")
CACHE = Path(".cache/detector")
HARD_NEGATIVES_SHEET = Path("plots/detector_hard_negatives.png")
FLAGGED_SHEET = Path("plots/detector_flagged_digits.png")


def load(split: str) -> dict[str, np.ndarray]:
    return {key: np.load(SYNTHETIC / f"{split}_{key}.npy") for key in ("images", "labels", "kind")}


def main() -> None:
    precision = training.set_precision(p.distribute.precision)
    tracking.connect()
    train, val = load("train"), load("val")
    pool = load("pool")["images"] if p.detector.hard_negatives and p.detector.hard_epochs else None
    if pool is not None and len(pool) < p.detector.hard_negatives:
        raise stage.PipelineError(
            f"detector.hard_negatives: {p.detector.hard_negatives} is more than the {len(pool)} non-digits of synthetic.pool; "
            "make the pool larger or mine fewer (0: none)"
        )
    is_digit = (train["labels"] >= 0).astype(np.uint8)
    run_params = tracking.flat_params(detector=p.detector) | {"distribute.precision": p.distribute.precision, "precision_used": precision}
    cache = CACHE / stage.cache_key(run_params, [train["images"], is_digit], [__file__, *stage.library_sources()])
    with tracking.run("detector", run_params, resume_from=cache / "mlflow_run_id") as run_id:
        print(
            f"digit or not: training on {is_digit.sum()} digits and {(1 - is_digit).sum()} non-digits for {p.detector.epochs} epochs",
            flush=True,
        )
        job = training.prepare(
            models.detector,
            training.to_tensors(train["images"], is_digit),
            np.arange(len(is_digit)),
            batch_size=p.detector.batch_size,
            optimizer="adam",
            learning_rate=p.detector.learning_rate,
            epochs=p.detector.epochs,
            seed=p.detector.seed,
        )
        training.train(job, p.detector.epochs, tracking.log_epoch, checkpoint=cache)
        if pool is not None:
            pool_logits = evaluation.log_odds(job.model.predict(pool, batch_size=1000, verbose=0))
            hard = np.argsort(-pool_logits, kind="stable")[: p.detector.hard_negatives]  # the most digit-like first
            print(
                f"hard negatives: the {len(hard)} of {len(pool)} pooled non-digits most like a digit "
                f"(log-odds {pool_logits[hard[-1]]:.2f} to {pool_logits[hard[0]]:.2f}); {p.detector.hard_epochs} more epochs with them",
                flush=True,
            )
            stage.save_contact_sheet(HARD_NEGATIVES_SHEET, [pool[hard[i : i + 25]] for i in range(0, min(len(hard), 400), 25)])
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
                lambda epoch, logs: tracking.log_epoch(p.detector.epochs + epoch, logs),
                checkpoint=cache / "hard",
            )
            tracking.log_artifact(HARD_NEGATIVES_SHEET)
        model = models.in_float32(job.model)  # the threshold is set on the model that is served
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
