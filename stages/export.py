"""Stage 5: the final model and the ensemble (the fold models and the final model, probabilities
averaged) -> models/export/, with parity checks of every export against its Keras model.

    final.tflite, ensemble.tflite, ensemble.keras    each model for LiteRT / Keras
    model.tflite                                      the one `export.serve` names: predict's and serve's default
    saved_model/, model.json + model.weights.h5       the final model as a SavedModel and as the tutorial saved it
"""

import json
import shutil
from pathlib import Path

from mnist_pipeline import stage

p = stage.load_params()  # first: a typo in params.yaml answers before TensorFlow and MLflow load

from mnist_pipeline import export, mnist, models, tracking  # noqa: E402

MODEL = Path("models/model.keras")
FOLD_MODELS = Path("models/folds")
EXPORT = Path("models/export")
PREPARED = Path("data/prepared")
TRAIN_METRICS = Path("metrics/train.json")


def main() -> None:
    tracking.connect()
    final = export.load_keras(MODEL)
    folds = [export.load_keras(path) for path in sorted(FOLD_MODELS.glob("fold-*.keras"), key=lambda f: int(f.stem[5:]))]
    ensemble = models.ensemble([*folds, final])
    test = mnist.load_prepared(PREPARED, "test")
    images = test.images.astype("float32")
    with tracking.run("export", tracking.flat_params(export=p.export)) as run_id:
        ensemble_id = tracking.log_keras_model(ensemble, images[:8])
        served_id = ensemble_id if p.export.serve == "ensemble" else json.loads(TRAIN_METRICS.read_text())["mlflow"]["model_id"]
        with stage.atomic_path(EXPORT, directory=True) as tmp:
            export.to_tflite(final, tmp / "final.tflite", saved_model=tmp / export.SAVED_MODEL)
            export.export_tutorial_files(final, tmp)
            export.to_tflite(ensemble, tmp / "ensemble.tflite")
            ensemble.save(tmp / "ensemble.keras")
            shutil.copy(tmp / f"{p.export.serve}.tflite", tmp / "model.tflite")

            reference = {name: model.predict(images, batch_size=1000, verbose=0) for name, model in (("final", final), ("ensemble", ensemble))}
            exports = {
                "saved_model": ("final", export.predict_saved_model(tmp / export.SAVED_MODEL, images)),
                "tflite": ("final", export.predict_tflite(tmp / "final.tflite", images)),
                "json_h5": ("final", export.predict_tutorial_files(tmp, images)),
                "ensemble_tflite": ("ensemble", export.predict_tflite(tmp / "ensemble.tflite", images)),
            }
            results = {}
            for name, (of, probabilities) in exports.items():
                results[name] = export.parity(reference[of], probabilities)
                print(f"{name}: same class as the Keras model on {results[name]['same_class']:.2%} of {len(images)} test images, "
                      f"largest probability difference {results[name]['max_probability_diff']:.2e}")
            # Not the SavedModel nor the .keras zip: the one embeds generated function names, the
            # other a timestamp, so their sizes change between identical runs, and metrics must not.
            sizes = {item.name: item.stat().st_size for item in tmp.iterdir() if item.suffix in (".tflite", ".json", ".h5")}
            tracking.log_metrics({f"{name}.{k}": v for name, r in results.items() for k, v in r.items()})
        stage.write_json("metrics/export.json", {
            "parity": results, "bytes": sizes, "n_images": len(images), "ensemble_members": len(folds) + 1,
            "serve": p.export.serve, "mlflow": {"run_id": run_id, "ensemble_model_id": ensemble_id, "served_model_id": served_id},
        })
    print(f"ensemble of {len(folds)} fold models and the final model; serving the {p.export.serve} model as {EXPORT / 'model.tflite'}")


if __name__ == "__main__":
    stage.run(main)
