"""Stage 4: the final model on the whole (possibly subsampled) training set. The test set is never seen.

Like crossvalidate, it keeps a checkpoint after every epoch under .cache/train/<key>/, with the id
of its MLflow run, so a run that was interrupted goes on after its last finished epoch, in the same
MLflow run, and ends exactly as it would have. The key covers the parameters, the data and the code.
"""

import shutil
from pathlib import Path

from mnist_pipeline import stage

p = stage.load_params()  # first: a typo in params.yaml answers before TensorFlow and MLflow load

import numpy as np  # noqa: E402

from mnist_pipeline import datasets, distribute, machine, mnist, models, tracking, training  # noqa: E402

PREPARED = Path("data/prepared")
MODEL = Path("models/model.keras")
CACHE = Path(".cache/train")


def main() -> None:
    strategy = distribute.distribution(p.distribute)
    precision = distribute.set_precision(p.distribute.precision)
    chief = distribute.is_chief(strategy)
    tracking.connect(enabled=chief)
    data = mnist.load_prepared(PREPARED, "train")
    run_params = tracking.flat_params(model=p.model, augment=p.augment, train=p.train, distribute=p.distribute)
    run_params["precision_used"] = precision
    cache = CACHE / stage.cache_key(run_params, [data.images, data.labels], [__file__, *stage.library_sources()])
    with tracking.run("train", run_params, resume_from=cache / "mlflow_run_id") as run_id:
        replicas = f" on {strategy.num_replicas_in_sync} replicas" if p.distribute.strategy != "none" else ""
        print(f"training on {len(data.labels)} images for {p.train.epochs} epochs{replicas}", flush=True)
        job = training.prepare(
            p.model,
            datasets.to_tensors(data.images, data.labels),
            np.arange(len(data.labels)),
            batch_size=p.train.batch_size,
            optimizer=p.train.optimizer,
            learning_rate=p.train.learning_rate,
            schedule=p.train.schedule,
            epochs=p.train.epochs,
            augment=p.augment,
            label_smoothing=p.train.label_smoothing,
            seed=p.train.seed,
            strategy=strategy,
        )
        history = training.train(job, p.train.epochs, tracking.log_epoch, checkpoint=cache)
        if chief:
            save(job.model, history, data, run_id, precision)
        else:
            print("training done on this worker; the chief saves the model and logs the run")
    distribute.wait_for_all(strategy)
    shutil.rmtree(cache, ignore_errors=True)  # on every worker: a later run starts afresh everywhere


def save(model, history: dict, data: mnist.Dataset, run_id: str, precision: str) -> None:
    """The model (in float32, whatever it trained in), its MLflow copy, the history plot data and reports/train.json."""
    model = models.in_float32(model)
    with stage.atomic_path(MODEL) as tmp:
        model.save(tmp)
    model_id = tracking.log_keras_model(distribute.off_strategy(model), data.images[:8].astype("float32"))
    epochs = range(1, p.train.epochs + 1)
    stage.write_csv(
        "plots/train_history.csv", ["epoch", "loss", "accuracy"], zip(epochs, history["loss"], history["accuracy"], strict=False)
    )
    stage.write_json(
        "reports/train.json",
        {
            "train_loss": history["loss"][-1],
            "train_accuracy": history["accuracy"][-1],
            "epochs": p.train.epochs,
            "n_images": len(data.labels),
            "n_weights": model.count_params(),
            "precision": precision,
            "instruction_set": machine.instruction_set(),
            "mlflow": {"run_id": run_id, "model_id": model_id},
        },
    )


if __name__ == "__main__":
    stage.run(main)
