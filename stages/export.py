"""Stage 5: models/model.keras -> models/export/ (SavedModel, TFLite, tutorial JSON + weights), with parity checks."""

from pathlib import Path

from mnist_pipeline import export, mnist, stage, tracking

MODEL = Path("models/model.keras")
EXPORT = Path("models/export")
PREPARED = Path("data/prepared")


def main() -> None:
    tracking.connect()
    model = export.load_keras(MODEL)
    test = mnist.load_prepared(PREPARED, "test")
    with tracking.run("export") as run_id:
        with stage.atomic_path(EXPORT, directory=True) as tmp:
            export.export_all(model, tmp)
            reference = model.predict(test.images.astype("float32"), batch_size=1000, verbose=0)
            results = {}
            for name, probabilities in export.predict_each(tmp, test.images).items():
                results[name] = export.parity(reference, probabilities)
                print(f"{name}: same class on {results[name]['same_class']:.2%} of {len(test.labels)} test images, "
                      f"largest probability difference {results[name]['max_probability_diff']:.2e}")
            # Not the SavedModel: its graph embeds generated function names, so its size changes by a
            # few bytes between identical runs, and metrics must stay bit-identical.
            sizes = {item.name: item.stat().st_size for item in tmp.iterdir() if item.is_file()}
            tracking.log_metrics({f"{name}.{k}": v for name, r in results.items() for k, v in r.items()})
        stage.write_json("metrics/export.json", {"parity": results, "bytes": sizes, "n_images": len(test.labels), "mlflow": {"run_id": run_id}})


if __name__ == "__main__":
    stage.run(main)
