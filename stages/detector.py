"""Stage: the digit-or-not detector -> models/detector/ (model.keras, threshold.json).

A small CNN (models.detector) learns digits from non-digits on data/synthetic's training set,
with a checkpoint after every epoch under .cache/detector/<key>/ as train has. Its threshold is
set on the held-out validation set: on each kind of digit there (MNIST's own, photographed,
restroked, typed, drawn) at most detector.false_flag_rate are called "not a digit"; export folds
the detector and its threshold into the served model.
"""

import shutil
from pathlib import Path

from mnist_pipeline import stage

p = stage.load_params()  # first: a typo in params.yaml answers before TensorFlow and MLflow load

import numpy as np  # noqa: E402

from mnist_pipeline import evaluation, models, synthetic, tracking, training  # noqa: E402

SYNTHETIC = Path("data/synthetic")
OUT = Path("models/detector")
CACHE = Path(".cache/detector")


def load(split: str) -> dict[str, np.ndarray]:
    return {key: np.load(SYNTHETIC / f"{split}_{key}.npy") for key in ("images", "labels", "kind")}


def main() -> None:
    precision = training.set_precision(p.distribute.precision)
    tracking.connect()
    train, val = load("train"), load("val")
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
        model = models.in_float32(job.model)  # the threshold is set on the model that is served
        logits = evaluation.log_odds(model.predict(val["images"], batch_size=1000, verbose=0))
        threshold, report = evaluation.digit_threshold(logits, val["labels"] >= 0, val["kind"], synthetic.KINDS, p.detector.false_flag_rate)
        tracking.log_metrics({f"val_flagged.{kind}": share for kind, share in report["flagged"].items()})
        with stage.atomic_path(OUT, directory=True) as tmp:
            model.save(tmp / "model.keras")
            stage.write_json(tmp / "threshold.json", {"log_odds": threshold, "false_flag_rate": p.detector.false_flag_rate})
        stage.write_json("reports/detector.json", report | {"threshold_log_odds": threshold, "mlflow": {"run_id": run_id}})
    shutil.rmtree(cache, ignore_errors=True)
    print(
        f"threshold: log-odds {threshold:.3f}; on the held-out validation set flagged as not a digit: "
        + ", ".join(f"{kind} {share:.2%}" for kind, share in report["flagged"].items())
    )


if __name__ == "__main__":
    stage.run(main)
