"""Stage 4: the final model on the whole (possibly subsampled) training set. The test set is never seen."""

from pathlib import Path

from mnist_pipeline import mnist, params, stage, tracking, training

PREPARED = Path("data/prepared")
MODEL = Path("models/model.keras")


def main() -> None:
    p = params.load()
    tracking.connect()
    data = mnist.load_prepared(PREPARED, "train")
    with tracking.run("train", tracking.flat_params(model=p.model, train=p.train)) as run_id:
        print(f"training on {len(data.labels)} images for {p.train.epochs} epochs")
        model, history = training.fit(
            p.model,
            data.images,
            data.labels,
            epochs=p.train.epochs,
            batch_size=p.train.batch_size,
            optimizer=p.train.optimizer,
            learning_rate=p.train.learning_rate,
            seed=p.train.seed,
            on_epoch_end=tracking.log_epoch,
        )
        with stage.atomic_path(MODEL) as tmp:
            model.save(tmp)
        model_id = tracking.log_keras_model(model, data.images[:8].astype("float32"))
        epochs = range(1, p.train.epochs + 1)
        stage.write_csv(
            "plots/train_history.csv", ["epoch", "loss", "accuracy"], zip(epochs, history["loss"], history["accuracy"])
        )
        stage.write_json(
            "metrics/train.json",
            {
                "train_loss": history["loss"][-1],
                "train_accuracy": history["accuracy"][-1],
                "epochs": p.train.epochs,
                "n_images": len(data.labels),
                "n_weights": model.count_params(),
                "mlflow": {"run_id": run_id, "model_id": model_id},
            },
        )


if __name__ == "__main__":
    stage.run(main)
