"""Stage 3: k-fold cross-validation of the model on the training set; the fold models are kept
in models/folds/ (export averages them with the final model into the ensemble).

All folds train at the same time in one process, each TensorFlow op on one thread, which keeps
the cores busier than one fold at a time (distribute.one_thread_per_op). With a distribute.strategy
other than none, the folds train one after another, each on all the devices. Under
.cache/crossvalidate/<key>/fold-<k>/ each fold keeps a checkpoint after every epoch, its result
when it is done, and the id of its MLflow run, so a run that was interrupted goes on from the
last finished epoch of each fold, in the same MLflow runs. The key covers the parameters, the data
and the code, so saved work is only reused for exactly the same work.
"""

import json
import shutil
from pathlib import Path

from mnist_pipeline import stage

p = stage.load_params()  # first: a typo in params.yaml answers before TensorFlow and MLflow load

import keras  # noqa: E402, I001  (after training, which imports it with TensorFlow's banner silenced)
import numpy as np  # noqa: E402
from sklearn.model_selection import KFold  # noqa: E402

from mnist_pipeline import datasets, distribute, evaluation, machine, mnist, models, tracking, training  # noqa: E402

PREPARED = Path("data/prepared")
CACHE = Path(".cache/crossvalidate")
FOLD_MODELS = Path("models/folds")
OUT_OF_FOLD = "out_of_fold_probabilities.npy"


def main() -> None:
    strategy = distribute.distribution(p.distribute)
    precision = distribute.set_precision(p.distribute.precision)
    side_by_side = p.distribute.strategy == "none"
    if side_by_side:
        distribute.one_thread_per_op()
    chief = distribute.is_chief(strategy)
    tracking.connect(enabled=chief)
    data = mnist.load_prepared(PREPARED, "train")
    run_params = tracking.flat_params(model=p.model, augment=p.augment, cv=p.cv, distribute=p.distribute)
    run_params["precision_used"] = precision
    cache = CACHE / stage.cache_key(run_params, [data.images, data.labels], [__file__, *stage.library_sources()])
    splits = list(KFold(p.cv.folds, shuffle=True, random_state=p.cv.random_state).split(data.labels))
    folds, todo = [], []
    for fold in range(1, p.cv.folds + 1):
        saved = cache / f"fold-{fold}" / "result.json"
        if saved.exists():
            print(f"fold {fold}/{p.cv.folds}: reusing the result saved by an interrupted run")
            folds.append(json.loads(saved.read_text()))
        else:
            todo.append(fold)

    shared = datasets.to_tensors(data.images, data.labels)  # one copy for all folds

    def prepare(fold: int) -> training.Job:
        train_index, val_index = splits[fold - 1]
        print(f"fold {fold}/{p.cv.folds}: training on {len(train_index)}, validating on {len(val_index)} images")
        return training.prepare(
            p.model,
            shared,
            train_index,
            batch_size=p.cv.batch_size,
            optimizer=p.cv.optimizer,
            learning_rate=p.cv.learning_rate,
            schedule=p.cv.schedule,
            epochs=p.cv.epochs,
            augment=p.augment,
            label_smoothing=p.cv.label_smoothing,
            seed=p.cv.random_state + fold,
            validation_index=val_index,
            strategy=strategy,
        )

    with tracking.run("crossvalidate", run_params, resume_from=cache / "mlflow_run_id") as parent_id:

        def train_fold(fold: int, job: training.Job) -> dict:
            saved = cache / f"fold-{fold}"
            with tracking.run(
                "crossvalidate",
                run_params | {"fold": fold},
                name=f"fold-{fold}",
                parent_run_id=parent_id,
                resume_from=saved / "mlflow_run_id",
            ) as run_id:
                history = training.train(job, p.cv.epochs, tracking.log_epoch, label=f"fold {fold}/{p.cv.folds}", checkpoint=saved)
                # The last epoch's validation is the final model scored on the held-out fold.
                scores = {"loss": history["val_loss"][-1], "accuracy": history["val_accuracy"][-1]}
                tracking.log_metrics(scores)
            models.in_float32(job.model).save(saved / "model.keras")
            result = {"fold": fold, **scores, "history": history, "mlflow_run_id": run_id}
            stage.write_json(saved / "result.json", result)
            return result

        jobs = {fold: prepare(fold) for fold in todo}  # one after another: the seed is process-wide
        if side_by_side:
            folds += training.train_together(jobs, train_fold)
        else:
            folds += [train_fold(fold, job) for fold, job in jobs.items()]
        folds.sort(key=lambda f: f["fold"])
        if chief:
            save(folds, cache, parent_id, data, splits, precision)
        else:
            print("cross-validation done on this worker; the chief saves the fold models and logs the runs")
    distribute.wait_for_all(strategy)
    shutil.rmtree(cache, ignore_errors=True)  # on every worker: a later run starts afresh everywhere


def save(folds: list[dict], cache: Path, parent_id: str, data: mnist.Dataset, splits: list, precision: str) -> None:
    """The fold models with their out-of-fold probabilities (each training image as predicted by
    the fold model that did not train on it), the summary in
    metrics/cv.json (headline) and reports/cv.json (each fold, MLflow ids) and MLflow, and the plots."""
    accuracies = [f["accuracy"] for f in folds]
    summary = {"accuracy_mean": float(np.mean(accuracies)), "accuracy_std": float(np.std(accuracies))}
    tracking.log_metrics(summary)
    stage.write_csv("plots/cv_folds.csv", ["fold", "accuracy", "loss"], [[f["fold"], f["accuracy"], f["loss"]] for f in folds])
    stage.save_figure("plots/cv_boxplot.png", evaluation.fold_boxplot(accuracies))
    stage.save_figure("plots/cv_curves.png", evaluation.fold_curves([f["history"] for f in folds]))
    for plot in ("plots/cv_boxplot.png", "plots/cv_curves.png"):
        tracking.log_artifact(plot)
    out_of_fold = np.zeros((len(data.labels), 10), np.float32)
    with stage.atomic_path(FOLD_MODELS, directory=True) as tmp:
        for f in folds:
            shutil.copy(cache / f"fold-{f['fold']}" / "model.keras", tmp / f"fold-{f['fold']}.keras")
            held_out = splits[f["fold"] - 1][1]
            model = keras.saving.load_model(tmp / f"fold-{f['fold']}.keras")
            out_of_fold[held_out] = model.predict(data.images[held_out], batch_size=1000, verbose=0)
        np.save(tmp / OUT_OF_FOLD, out_of_fold)
    stage.write_json("metrics/cv.json", {"cv_acc": summary["accuracy_mean"], "cv_std": summary["accuracy_std"]})
    stage.write_json(
        "reports/cv.json",
        summary
        | {
            "n_folds": len(folds),
            "precision": precision,
            "instruction_set": machine.instruction_set(),
            "folds": {str(f["fold"]): {"accuracy": f["accuracy"], "loss": f["loss"]} for f in folds},
            "mlflow": {"run_id": parent_id, "fold_run_ids": [f["mlflow_run_id"] for f in folds]},
        },
    )
    print(f"cross-validation accuracy: {summary['accuracy_mean']:.4%} ± {summary['accuracy_std']:.4%} (n={len(folds)})")


if __name__ == "__main__":
    stage.run(main)
