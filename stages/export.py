"""Stage 5: the served models -> models/export/, with parity checks of every export against its Keras model.

Each served model is a classifier with its probabilities calibrated by a temperature (fitted on
its own averaged output over distorted training digits, and kept only where it calibrates the
half it was not fitted on) and the digit-or-not detector with its
threshold: one file, one call, two outputs (models.served); with `export.weights: int8` its
TFLite file keeps its weights as int8 (evaluate scores the file as it is served).

    final.tflite                                      the final model, served
    ensemble.tflite, ensemble.keras                   the fold models and the final model, probabilities averaged, served
                                                      (each also over shifted copies of the image, with export.tta)
    final_untempered.tflite, ensemble_untempered...   the same with the temperature out, where it is not 1: for
                                                      evaluate's calibration error without it, on the same file
    model.tflite                                      the one `export.serve` names: predict's and serve's default
    saved_model/, model.json + model.weights.h5       the bare final model as a SavedModel and as the tutorial saved it
"""

import json
import shutil
from pathlib import Path

from mnist_pipeline import stage

p = stage.load_params()  # first: a typo in params.yaml answers before TensorFlow and MLflow load

import numpy as np  # noqa: E402

from mnist_pipeline import calibration, datasets, export, loading, mnist, models, tracking  # noqa: E402

MODEL = Path("models/model.keras")
FOLD_MODELS = Path("models/folds")
DETECTOR = Path("models/detector")
EXPORT = Path("models/export")
PREPARED = Path("data/prepared")
# The temperatures are fitted on distorted training digits: copies none of the members trained on as
# they are (the final model trains on all 60,000, so no MNIST image but the test set's is held out from
# every member; with `augment` on, the members saw distortions of the same kind).
CALIBRATION_IMAGES, CALIBRATION_SEED = 10_000, 0
UNTEMPERED = "_untempered"  # final_untempered.tflite: the served file with its temperature out, where it has one


def main() -> None:
    tracking.connect()
    final = loading.load_keras(MODEL)
    folds = [loading.load_keras(path) for path in stage.fold_model_paths(FOLD_MODELS)]
    detector = loading.load_keras(DETECTOR / "model.keras")
    set_by_detector = json.loads((DETECTOR / "threshold.json").read_text())
    threshold = set_by_detector["log_odds"]
    train = mnist.load_prepared(PREPARED, "train")
    rng = np.random.default_rng(CALIBRATION_SEED)
    chosen = rng.choice(len(train.labels), min(CALIBRATION_IMAGES, len(train.labels)), replace=False)
    calibration_images, calibration_labels = datasets.distorted(train.images[chosen], rng), train.labels[chosen]
    temperature, served, fit, logits = {}, {}, {}, {}
    for name, members in {"final": [final], "ensemble": [*folds, final]}.items():
        logits[name] = models.member_logits(members, p.export.tta)
        held_out = np.reshape(logits[name].predict(calibration_images, batch_size=250, verbose=0), (-1, len(calibration_labels), 10))
        temperature[name], fit[name] = calibration.choose_temperature(held_out, calibration_labels)
        served[name] = models.served(logits[name], detector, temperature[name], threshold)
    # the same files with the temperature out, for evaluate's calibration error without it; built after the
    # served ones, so that these keep the layer names they have without them
    untempered = {name: models.served(logits[name], detector, 1.0, threshold) for name, t in temperature.items() if t != 1.0}
    images = mnist.load_prepared(PREPARED, "test").images.astype("float32")
    with tracking.run("export", tracking.flat_params(export=p.export)) as run_id:
        tracking.log_metrics({f"temperature.{name}": t for name, t in temperature.items()} | {"threshold_log_odds": threshold})
        served_id = tracking.log_keras_model(served[p.export.serve], images[:8])
        with stage.atomic_path(EXPORT, directory=True) as tmp:
            export.to_tflite(final, tmp / "bare_final.tflite", saved_model=tmp / export.SAVED_MODEL)
            export.export_tutorial_files(final, tmp)
            for name, model in served.items():
                export.to_tflite(model, tmp / f"{name}.tflite", weights=p.export.weights)
            for name, model in untempered.items():
                export.to_tflite(model, tmp / f"{name}{UNTEMPERED}.tflite", weights=p.export.weights)
            served["ensemble"].save(tmp / "ensemble.keras")
            shutil.copy(tmp / f"{p.export.serve}.tflite", tmp / "model.tflite")

            reference = final.predict(images, batch_size=250, verbose=0)
            results = {
                "saved_model": export.parity(reference, export.predict_saved_model(tmp / export.SAVED_MODEL, images)),
                "json_h5": export.parity(reference, export.predict_tutorial_files(tmp, images)),
                "bare_tflite": export.parity(reference, export.predict_tflite(tmp / "bare_final.tflite", images)),
            } | {f"{name}_tflite": export.verdict_parity(model, tmp / f"{name}.tflite", images) for name, model in served.items()}
            (tmp / "bare_final.tflite").unlink()  # checked; the served final.tflite is the one to use
            for name, r in results.items():
                verdict = f", same verdict on {r['same_verdict']:.2%}" if "same_verdict" in r else ""
                print(
                    f"{name}: same class as the Keras model on {r['same_class']:.2%} of {len(images)} test images{verdict}, "
                    f"largest probability difference {r['max_probability_diff']:.2e}"
                )
            # Not the SavedModel nor the .keras zip: the one embeds generated function names, the
            # other a timestamp, so their sizes change between identical runs, and metrics must not.
            sizes = {item.name: item.stat().st_size for item in tmp.iterdir() if item.suffix in (".tflite", ".json", ".h5")}
            tracking.log_metrics({f"{name}.{k}": v for name, r in results.items() for k, v in r.items()})
        stage.write_json(
            "reports/export.json",
            {
                "parity": results,
                "bytes": sizes,
                "n_images": len(images),
                "ensemble_members": len(folds) + 1,
                "serve": p.export.serve,
                "tta": p.export.tta,
                "weights": p.export.weights,
                "threshold_log_odds": threshold,
                "threshold": {key: set_by_detector[key] for key in ("false_flag_rate", "held_by", "threshold_kinds")},
                "temperature": temperature[p.export.serve],
                "calibration": {"n_images": len(calibration_labels), "temperature": temperature, "fit": fit},
                "mlflow": {"run_id": run_id, "served_model_id": served_id},
            },
        )
    print(
        "; ".join(
            f"{name}: temperature {t:.3f} (fitted {fit[name]['fitted']:.3f}, calibration error on the half it was not fitted "
            f"on {fit[name]['ece_crossed']:.3%}, without {fit[name]['ece_without']:.3%})"
            for name, t in temperature.items()
        )
        + f"; {len(calibration_labels)} distorted training digits"
    )
    print(f"serving the {p.export.serve} model as {EXPORT / 'model.tflite'}")


if __name__ == "__main__":
    stage.run(main)
