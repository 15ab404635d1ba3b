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

from mnist_pipeline import calibration, evaluation, loading, mnist, synthetic  # noqa: E402
from mnist_pipeline.loading import LiteRTModel  # noqa: E402

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

    from mnist_pipeline import tracking  # MLflow, after the fork (TensorFlow loads with the first .keras file)

    tracking.connect()
    exported = json.loads(EXPORT_REPORT.read_text())
    with tracking.run("evaluate", tracking.flat_params(evaluate=p.evaluate)) as run_id:
        model = LiteRTModel(EXPORT / "model.tflite")
        probabilities, scores = model.read(test.images)
        on_test = scores < 0.5
        predicted = probabilities.argmax(axis=1)
        details = evaluation.classification_metrics(test.labels, probabilities)
        on_non_digits = evaluation.verdicts(*model.read(non_digits["images"]), non_digits["labels"])
        flagged, sure = on_non_digits["flagged"], on_non_digits["answered_sure"]
        details["flagged_non_digits"] = evaluation.by_kind(flagged, non_digits["kind"], synthetic.KINDS)
        details["non_digits_answered_sure"] = evaluation.by_kind(sure, non_digits["kind"], synthetic.KINDS)
        on_digits = evaluation.verdicts(*model.read(digits["images"]), digits["labels"])
        details["flagged_digits"] = evaluation.by_kind(on_digits["flagged"], digits["kind"], synthetic.KINDS)
        details["read_right_digits"] = evaluation.by_kind(on_digits["read_right"], digits["kind"], synthetic.KINDS)
        if p.evaluate.photos:
            details |= evaluation.photo_accuracy(model, test.images, test.labels, p.evaluate.photos, p.evaluate.photos_seed)
        details["threshold"] = evaluation.threshold_check(exported["threshold"], on_test, details, synthetic.KINDS, digits["kind"])
        each = {name: LiteRTModel(EXPORT / f"{name}.tflite").predict(test.images) for name in ("final", "ensemble")}
        trained = {path.stem.replace("-", "_"): loading.load_keras(path) for path in [*stage.fold_model_paths(FOLD_MODELS), MODEL]}
        images = test.images.astype("float32")
        bare = {name: model.predict(images, batch_size=250, verbose=0) for name, model in trained.items()}
        # each served model's calibration error, and the same file's without its temperature (export wrote it where
        # the temperature is not 1; a model served with none, T = 1, because it calibrated no better, is its own)
        reliability, details["calibration"] = {}, {}
        for name in ("final", "ensemble"):
            tempered = exported["calibration"]["temperature"][name] != 1.0
            without = LiteRTModel(EXPORT / f"{name}_untempered.tflite").predict(test.images) if tempered else each[name]
            (ece, after), (ece_raw, before) = (calibration.ece(probs, test.labels) for probs in (each[name], without))
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
            "flag_mnist": float(on_test.mean()),
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
        stage.save_figure("plots/reliability.png", calibration.reliability_diagram(before, after))
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
        report = details | {
            "served": exported["serve"],
            "gate_passed": passed,
            "n_non_digits": len(flagged),
            "n_digits": len(digits["labels"]),
        }
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
    print("\n".join(evaluation.summary(report, headline)))
    print(f"{tracking.REGISTERED_MODEL} version {version} ({f'alias {alias}' if alias else 'no alias now'}): {why}" if passed else why)


def test_set_digest() -> str:
    """The test set's identity: the md5 of its two files, as DVC records them in dvc.lock."""
    return "+".join(hashlib.md5((PREPARED / name).read_bytes()).hexdigest() for name in ("test_images.npy", "test_labels.npy"))


if __name__ == "__main__":
    stage.run(main)
