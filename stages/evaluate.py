"""Stage 6: the TFLite export (what users run) on the test set; register it in MLflow if it passes the gate."""

import json
from pathlib import Path

from mnist_pipeline import evaluation, mnist, params, stage, tracking
from mnist_pipeline.predict import LiteRTModel

TFLITE = Path("models/export/model.tflite")
PREPARED = Path("data/prepared")
TRAIN_METRICS = Path("metrics/train.json")


def main() -> None:
    p = params.load()
    tracking.connect()
    model_id = json.loads(TRAIN_METRICS.read_text())["mlflow"]["model_id"]
    test = mnist.load_prepared(PREPARED, "test")
    with tracking.run("evaluate", tracking.flat_params(evaluate=p.evaluate)) as run_id:
        model = LiteRTModel(TFLITE)
        probabilities = model.predict(test.images)
        predicted = probabilities.argmax(axis=1)
        metrics = evaluation.classification_metrics(test.labels, probabilities)
        if p.evaluate.photos:
            metrics |= evaluation.photo_accuracy(model, test.images, test.labels, p.evaluate.photos, p.evaluate.photos_seed)
        stage.write_csv("plots/confusion.csv", ["actual", "predicted"], zip(test.labels.tolist(), predicted.tolist()))
        stage.save_figure("plots/misclassified.png", evaluation.misclassified_grid(test.images, test.labels, predicted))
        headline = ("accuracy", "loss", "macro_f1", "accuracy_photos", "accuracy_photos_naive")
        tracking.log_metrics({k: metrics[k] for k in headline if k in metrics}, model_id=model_id)
        tracking.log_artifact("plots/misclassified.png")
        passed = metrics["accuracy"] >= p.evaluate.gate
        version = tracking.register_champion(model_id) if passed else None
        stage.write_json("metrics/eval.json", metrics | {"gate_passed": passed, "mlflow": {"run_id": run_id, "model_version": version}})
    print(f"test accuracy {metrics['accuracy']:.4%} (macro F1 {metrics['macro_f1']:.4f}) on {metrics['n_images']} images")
    if "accuracy_photos" in metrics:
        print(f"photo-like images: {metrics['accuracy_photos']:.2%} "
              f"(the tutorial's naive preprocessing: {metrics['accuracy_photos_naive']:.2%}) on {metrics['n_photos']}")
    if passed:
        print(f"registered as {tracking.REGISTERED_MODEL} version {version}, alias '{tracking.CHAMPION_ALIAS}'")
    else:
        print(f"below the gate evaluate.gate={p.evaluate.gate}: not registered")


if __name__ == "__main__":
    stage.run(main)
