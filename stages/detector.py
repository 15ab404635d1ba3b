"""Stage: the digit-or-not detector -> models/detector/ (model.keras, threshold.json).

detector.members small CNNs (models.detector), of seeds detector.seed, +1, ..., each learn
digits from non-digits on data/synthetic's training set, with a checkpoint after every epoch
under .cache/detector/<key>/ as train has. Then each mines hard negatives: of synthesize's pool
of further non-digits, the detector.hard_negatives it takes most for digits join its training
set for detector.hard_epochs more epochs (plots/detector_hard_negatives.png shows the first
member's, to check by eye that none is a digit). The served detector averages their log-odds
(models.averaged_detector). Made digits that no longer read as their digit leave the training
positives first (detection.readable); the validation set keeps them all.

The threshold is set on the held-out validation set: of each kind of digit among
detector.threshold_kinds (the kinds that stand for what people send: MNIST's own, photographed,
typed, drawn) at most that kind's detector.false_flag_rate are called "not a digit"; the other
kinds (restroked, sketched, low-resolution) are checked against their budgets, not obeyed
(reports/detector.json: `budgets`; plots/detector_flagged_digits.png shows the flagged digits).
Export folds the detector and its threshold into the served model.
"""

import shutil
from pathlib import Path

from mnist_pipeline import stage

p = stage.load_params()  # first: a typo in params.yaml answers before TensorFlow and MLflow load

import numpy as np  # noqa: E402

from mnist_pipeline import detection, distribute, mnist, models, synthetic, tracking  # noqa: E402

SYNTHETIC = Path("data/synthetic")
PREPARED = Path("data/prepared")
OUT = Path("models/detector")
CACHE = Path(".cache/detector")
HARD_NEGATIVES_SHEET = Path("plots/detector_hard_negatives.png")
FLAGGED_SHEET = Path("plots/detector_flagged_digits.png")


def load(split: str) -> dict[str, np.ndarray]:
    return {key: np.load(SYNTHETIC / f"{split}_{key}.npy") for key in ("images", "labels", "kind")}


def show_hard_negatives(hard: np.ndarray) -> None:
    stage.save_contact_sheet(HARD_NEGATIVES_SHEET, [hard[i : i + 25] for i in range(0, min(len(hard), 400), 25)])
    tracking.log_artifact(HARD_NEGATIVES_SHEET)


def main() -> None:
    precision = distribute.set_precision(p.distribute.precision)
    tracking.connect()
    pool = load("pool")["images"] if p.detector.hard_negatives and p.detector.hard_epochs else None
    if pool is not None and len(pool) < p.detector.hard_negatives:
        raise stage.PipelineError(
            f"detector.hard_negatives: {p.detector.hard_negatives} is more than the {len(pool)} non-digits of synthetic.pool; "
            "make the pool larger or mine fewer (0: none)"
        )
    val = load("val")  # all of it: the budgets are promises about what users send, readable or not, as evaluate counts them
    reader = detection.train_reader(mnist.load_prepared(PREPARED, "train"), p.detector.seed)
    train = detection.readable({"train": load("train")}, reader)["train"]
    run_params = tracking.flat_params(detector=p.detector) | {"distribute.precision": p.distribute.precision, "precision_used": precision}
    cache = CACHE / stage.cache_key(run_params, [train["images"], train["labels"]], [__file__, *stage.library_sources()])
    with tracking.run("detector", run_params, resume_from=cache / "mlflow_run_id") as run_id:
        members = [
            detection.train_member(
                i, p.detector, train, pool, cache / f"member_{i}", tracking.log_epoch, show_hard_negatives if i == 1 else None
            )
            for i in range(1, p.detector.members + 1)
        ]
        model = models.averaged_detector(members)
        logits = detection.log_odds(model.predict(val["images"], batch_size=1000, verbose=0))
        budgets = p.detector.flag_budgets()
        threshold, report = detection.digit_threshold(
            logits, val["labels"] >= 0, val["kind"], synthetic.KINDS, budgets, p.detector.threshold_kinds
        )
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
            stage.write_json(
                tmp / "threshold.json",
                {"log_odds": threshold, "false_flag_rate": budgets} | {key: report[key] for key in ("held_by", "threshold_kinds")},
            )
        stage.write_json("reports/detector.json", report | {"threshold_log_odds": threshold, "mlflow": {"run_id": run_id}})
    shutil.rmtree(cache, ignore_errors=True)
    print(
        f"threshold: log-odds {threshold:.3f}, set by the budget of {report['held_by']} digits ({budgets[report['held_by']]:.2%}; "
        f"of {', '.join(report['threshold_kinds'])}); "
        "on the held-out validation set flagged as not a digit: "
        + ", ".join(f"{kind} {share:.2%}" for kind, share in report["flagged"].items())
        + "; over budget (beyond sampling noise): "
        + (", ".join(kind for kind, check in report["budgets"].items() if not check["within"]) or "none")
    )


if __name__ == "__main__":
    stage.run(main)
