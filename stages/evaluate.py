"""Stage 6: the served TFLite export (what users run) on the test set, on photo-like digits, on
digits of every kind the project makes and on its own non-digits; beside it the final model, the
ensemble and each fold model. Registers the served model in MLflow if it passes the gate.

    metrics/eval.json    the headline numbers (dvc exp show): accuracy, flagged shares, calibration
    reports/eval.json    the details: per class, per model, per kind of digit and of non-digit
"""

import hashlib
import json
import os
from pathlib import Path

from mnist_pipeline import stage

p = stage.load_params()  # first: a typo in params.yaml answers before TensorFlow and MLflow load

import numpy as np  # noqa: E402

from mnist_pipeline import evaluation, mnist, synthetic  # noqa: E402
from mnist_pipeline.predict import LiteRTModel  # noqa: E402

EXPORT = Path("models/export")
FOLD_MODELS = Path("models/folds")
MODEL = Path("models/model.keras")
PREPARED = Path("data/prepared")
EXPORT_REPORT = Path("reports/export.json")


def main() -> None:
    test = mnist.load_prepared(PREPARED, "test")
    counts = synthetic.shares(p.evaluate.non_digits, synthetic.NON_DIGIT_KINDS)
    # made before any model loads: the pool forks, which is only safe before TensorFlow and LiteRT start threads
    non_digits = synthetic.make_set(test.images.reshape(-1, 28, 28), test.labels, counts, seed=(p.evaluate.non_digits_seed, 9))
    digit_counts = synthetic.shares(p.evaluate.digits, synthetic.DIGIT_KINDS) if p.evaluate.digits else {}
    digits = synthetic.make_set(test.images.reshape(-1, 28, 28), test.labels, digit_counts, seed=(p.evaluate.non_digits_seed, 10))

    from mnist_pipeline import export, tracking  # TensorFlow and MLflow, after the fork

    tracking.connect()
    exported = json.loads(EXPORT_REPORT.read_text())
    with tracking.run("evaluate", tracking.flat_params(evaluate=p.evaluate)) as run_id:
        model = LiteRTModel(EXPORT / "model.tflite")
        probabilities, scores = model.read(test.images)
        predicted = probabilities.argmax(axis=1)
        details = evaluation.classification_metrics(test.labels, probabilities)
        non_digit_probabilities, non_digit_scores = model.read(non_digits["images"])
        flagged = non_digit_scores < 0.5
        details["flagged_non_digits"] = by_kind(flagged, non_digits["kind"])
        sure = ~flagged & (non_digit_probabilities.max(axis=1) >= 0.9)  # answered as a digit, with 90% confidence or more
        details["non_digits_answered_sure"] = by_kind(sure, non_digits["kind"])
        digit_probabilities, digit_scores = model.read(digits["images"])
        details["flagged_digits"] = by_kind(digit_scores < 0.5, digits["kind"])
        read_right = (digit_scores >= 0.5) & (digit_probabilities.argmax(axis=1) == digits["labels"])
        details["read_right_digits"] = by_kind(read_right, digits["kind"])
        if p.evaluate.photos:
            details |= evaluation.photo_accuracy(model, test.images, test.labels, p.evaluate.photos, p.evaluate.photos_seed)
        each = {name: LiteRTModel(EXPORT / f"{name}.tflite").predict(test.images) for name in ("final", "ensemble")}
        trained = {
            path.stem.replace("-", "_"): export.load_keras(path)
            for path in [*sorted(FOLD_MODELS.glob("fold-*.keras"), key=lambda f: int(f.stem[5:])), MODEL]
        }
        images = test.images.astype("float32")
        bare = {name: model.predict(images, batch_size=250, verbose=0) for name, model in trained.items()}
        # each served model's calibration error, and the same file's without its temperature (export wrote it where
        # the temperature is not 1; a model served with none, T = 1, because it calibrated no better, is its own)
        reliability, details["calibration"] = {}, {}
        for name in ("final", "ensemble"):
            tempered = exported["calibration"]["temperature"][name] != 1.0
            without = LiteRTModel(EXPORT / f"{name}_untempered.tflite").predict(test.images) if tempered else each[name]
            (ece, after), (ece_raw, before) = (evaluation.calibration(probs, test.labels) for probs in (each[name], without))
            details["calibration"][name] = {"ece": ece, "ece_raw": ece_raw, "temperature": exported["calibration"]["temperature"][name]}
            reliability[name] = after, before
        after, before = reliability[exported["serve"]]
        each |= {name: probs for name, probs in bare.items() if name != "model"}
        if exported["tta"]:  # what the shifted copies add: the same models on the image alone
            each |= {"final_without_tta": bare["model"], "ensemble_without_tta": np.mean(list(bare.values()), axis=0)}
        details["test_accuracy"] = {name: float((probs.argmax(1) == test.labels).mean()) for name, probs in each.items()}
        # at most a dozen with metrics/cv.json's, so that `dvc exp show --only-changed` fits 200 columns with the
        # changed params; the rest (ece_raw, photo accuracy, each model, each kind) in reports/eval.json and MLflow
        headline = {
            "test_acc": details["accuracy"],
            "final_acc": details["test_accuracy"]["final"],
            "ens_acc": details["test_accuracy"]["ensemble"],
            "flag_mnist": float((scores < 0.5).mean()),
            "flag_nondigit": float(flagged.mean()),
            "nondigit_sure": float(sure.mean()),
            "ece": details["calibration"][exported["serve"]]["ece"],
        }
        if p.evaluate.photos:
            headline |= {
                "photo_flag": details["flagged_photos"],
                "photo_read": details["read_right_photos"],
            }
        stage.write_csv("plots/confusion.csv", ["actual", "predicted"], zip(test.labels.tolist(), predicted.tolist(), strict=False))
        for path, rows in (("plots/reliability.csv", after), ("plots/reliability_raw.csv", before)):  # two lines in one dvc plot
            stage.write_csv(path, ["confidence", "accuracy", "images"], [r[1:] for r in rows])
        stage.save_figure("plots/misclassified.png", evaluation.misclassified_grid(test.images, test.labels, predicted))
        stage.save_figure("plots/reliability.png", evaluation.reliability_diagram(before, after))
        model_id = exported["mlflow"]["served_model_id"]
        beside = {"ece_raw": details["calibration"][exported["serve"]]["ece_raw"]} | (
            {"photo_acc": details["accuracy_photos"]} if p.evaluate.photos else {}
        )
        tracking.log_metrics(headline | beside, model_id=model_id)
        tracking.log_metrics({f"test_accuracy.{name}": value for name, value in details["test_accuracy"].items()})
        for key in ("flagged_non_digits", "non_digits_answered_sure", "flagged_digits", "read_right_digits"):
            tracking.log_metrics({f"{key}.{kind}": v for kind, v in details[key].items()})
        for plot in ("plots/misclassified.png", "plots/reliability.png"):
            tracking.log_artifact(plot)
        passed = headline["test_acc"] >= p.evaluate.gate
        version, alias = None, None
        if passed:
            why = f"passed the gate evaluate.gate={p.evaluate.gate}; registering"
        else:
            why = f"test accuracy {headline['test_acc']:.4%} is below the gate evaluate.gate={p.evaluate.gate}: not registered"
        report = details | {"served": exported["serve"], "gate_passed": passed, "n_non_digits": len(flagged), "n_digits": len(digit_scores)}
        stage.write_json("metrics/eval.json", headline)
        stage.write_json(
            "reports/eval.json", report | {"mlflow": {"run_id": run_id, "model_version": None, "alias": None, "decision": why}}
        )
        if passed:  # last, once the outputs are written: a registry fault leaves no version without them
            version, alias, why = tracking.register(
                model_id,
                headline,
                test.labels,
                predicted,
                test_set_digest(),
                {"dvc.exp_name": os.environ.get("DVC_EXP_NAME", ""), "served": exported["serve"]},
            )
            stage.write_json(
                "reports/eval.json", report | {"mlflow": {"run_id": run_id, "model_version": version, "alias": alias, "decision": why}}
            )
    print(
        f"test accuracy of the served {exported['serve']} model {headline['test_acc']:.4%} on {details['n_images']} images; "
        f"flagged as not a digit: {headline['flag_mnist']:.2%} of them"
    )
    print("  each model: " + ", ".join(f"{name} {value:.4%}" for name, value in details["test_accuracy"].items()))
    print(
        f"the project's own {len(flagged)} non-digits flagged: {headline['flag_nondigit']:.2%} ("
        + ", ".join(f"{kind} {v:.1%}" for kind, v in details["flagged_non_digits"].items())
        + f"); answered as a digit with 90% confidence or more: {headline['nondigit_sure']:.2%}"
    )
    if len(digit_scores):
        print(
            f"the project's own {len(digit_scores)} digits of each kind, flagged / read right: "
            + ", ".join(f"{kind} {v:.1%} / {details['read_right_digits'][kind]:.1%}" for kind, v in details["flagged_digits"].items())
        )
    print(
        "calibration error (ECE, 15 bins) with the temperature and without: "
        + ", ".join(f"{name} {c['ece']:.3%} and {c['ece_raw']:.3%}" for name, c in details["calibration"].items())
    )
    if p.evaluate.photos:
        print(
            f"photo-like images: {details['accuracy_photos']:.2%} right, {details['flagged_photos']:.2%} flagged, "
            f"{details['read_right_photos']:.2%} read right (the tutorial's naive preprocessing: "
            f"{details['accuracy_photos_naive']:.2%}) of {details['n_photos']}"
        )
    print(f"registered as {tracking.REGISTERED_MODEL} version {version}, alias '{alias}': {why}" if passed else why)


def by_kind(values: np.ndarray, kind: np.ndarray) -> dict[str, float]:
    """The share of true `values` among the images of each kind (synthetic.KINDS) present."""
    return {synthetic.KINDS[k]: float(values[kind == k].mean()) for k in sorted(set(kind.tolist()))}


def test_set_digest() -> str:
    """The test set's identity: the md5 of its two files, as DVC records them in dvc.lock."""
    return "+".join(hashlib.md5((PREPARED / name).read_bytes()).hexdigest() for name in ("test_images.npy", "test_labels.npy"))


if __name__ == "__main__":
    stage.run(main)
