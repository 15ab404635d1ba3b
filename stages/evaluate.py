"""Stage 6: the served TFLite export (what users run) on the test set, beside the final model, the
ensemble and each fold model; register the served model in MLflow if it passes the gate."""

import json
from pathlib import Path

from mnist_pipeline import stage

p = stage.load_params()  # first: a typo in params.yaml answers before TensorFlow and MLflow load

from mnist_pipeline import evaluation, export, mnist, tracking  # noqa: E402
from mnist_pipeline.predict import LiteRTModel  # noqa: E402

EXPORT = Path("models/export")
FOLD_MODELS = Path("models/folds")
PREPARED = Path("data/prepared")
EXPORT_METRICS = Path("metrics/export.json")


def main() -> None:
    tracking.connect()
    exported = json.loads(EXPORT_METRICS.read_text())
    test = mnist.load_prepared(PREPARED, "test")
    with tracking.run("evaluate", tracking.flat_params(evaluate=p.evaluate)) as run_id:
        model = LiteRTModel(EXPORT / "model.tflite")
        probabilities = model.predict(test.images)
        predicted = probabilities.argmax(axis=1)
        metrics = evaluation.classification_metrics(test.labels, probabilities)
        if p.evaluate.photos:
            metrics |= evaluation.photo_accuracy(model, test.images, test.labels, p.evaluate.photos, p.evaluate.photos_seed)
        each = {name: LiteRTModel(EXPORT / f"{name}.tflite").predict(test.images) for name in ("final", "ensemble")}
        for path in sorted(FOLD_MODELS.glob("fold-*.keras"), key=lambda f: int(f.stem[5:])):
            each[path.stem.replace("-", "_")] = export.load_keras(path).predict(test.images.astype("float32"), batch_size=1000, verbose=0)
        metrics["test_accuracy"] = {name: float((probs.argmax(1) == test.labels).mean()) for name, probs in each.items()}
        stage.write_csv("plots/confusion.csv", ["actual", "predicted"], zip(test.labels.tolist(), predicted.tolist()))
        stage.save_figure("plots/misclassified.png", evaluation.misclassified_grid(test.images, test.labels, predicted))
        headline = ("accuracy", "loss", "macro_f1", "accuracy_photos", "accuracy_photos_naive")
        model_id = exported["mlflow"]["served_model_id"]
        tracking.log_metrics({k: metrics[k] for k in headline if k in metrics}, model_id=model_id)
        tracking.log_metrics({f"test_accuracy.{name}": value for name, value in metrics["test_accuracy"].items()})
        tracking.log_artifact("plots/misclassified.png")
        passed = metrics["accuracy"] >= p.evaluate.gate
        version = tracking.register_champion(model_id) if passed else None
        stage.write_json("metrics/eval.json", metrics | {"served": exported["serve"], "gate_passed": passed,
                                                        "mlflow": {"run_id": run_id, "model_version": version}})
    print(f"test accuracy of the served {exported['serve']} model {metrics['accuracy']:.4%} "
          f"(macro F1 {metrics['macro_f1']:.4f}) on {metrics['n_images']} images")
    print("  each model: " + ", ".join(f"{name} {value:.4%}" for name, value in metrics["test_accuracy"].items()))
    if "accuracy_photos" in metrics:
        print(f"photo-like images: {metrics['accuracy_photos']:.2%} "
              f"(the tutorial's naive preprocessing: {metrics['accuracy_photos_naive']:.2%}) on {metrics['n_photos']}")
    if passed:
        print(f"registered as {tracking.REGISTERED_MODEL} version {version}, alias '{tracking.CHAMPION_ALIAS}'")
    else:
        print(f"below the gate evaluate.gate={p.evaluate.gate}: not registered")


if __name__ == "__main__":
    stage.run(main)
