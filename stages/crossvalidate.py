"""Stage 3: k-fold cross-validation of the model on the training set.

Each finished fold is saved under .cache/crossvalidate/<key>/, so a run that was interrupted
after fold k resumes at fold k+1. The key covers the parameters and the data, so a cached
fold is only reused for exactly the same work.
"""

import hashlib
import shutil
import json
from pathlib import Path

import numpy as np
from sklearn.model_selection import KFold

from mnist_pipeline import evaluation, mnist, params, stage, tracking, training

PREPARED = Path("data/prepared")
CACHE = Path(".cache/crossvalidate")


def cache_key(p: params.Params, data: mnist.Dataset) -> str:
    digest = hashlib.sha256(json.dumps(tracking.flat_params(model=p.model, cv=p.cv), sort_keys=True).encode())
    digest.update(data.images.tobytes())
    digest.update(data.labels.tobytes())
    return digest.hexdigest()[:16]


def main() -> None:
    p = params.load()
    tracking.connect()
    data = mnist.load_prepared(PREPARED, "train")
    cache = CACHE / cache_key(p, data)
    splits = KFold(p.cv.folds, shuffle=True, random_state=p.cv.random_state).split(data.labels)
    run_params = tracking.flat_params(model=p.model, cv=p.cv)
    folds = []
    with tracking.run("crossvalidate", run_params) as parent_id:
        for fold, (train_index, val_index) in enumerate(splits, 1):
            saved = cache / f"fold-{fold}.json"
            if saved.exists():
                print(f"fold {fold}/{p.cv.folds}: reusing the result saved by an interrupted run")
                folds.append(json.loads(saved.read_text()))
                continue
            print(f"fold {fold}/{p.cv.folds}: training on {len(train_index)}, validating on {len(val_index)} images")
            with tracking.run("crossvalidate", run_params | {"fold": fold}, name=f"fold-{fold}", nested=True) as run_id:
                _, history = training.fit(
                    p.model,
                    data.images[train_index],
                    data.labels[train_index],
                    epochs=p.cv.epochs,
                    batch_size=p.cv.batch_size,
                    optimizer=p.cv.optimizer,
                    learning_rate=p.cv.learning_rate,
                    seed=p.cv.random_state + fold,
                    validation=(data.images[val_index], data.labels[val_index]),
                    on_epoch_end=tracking.log_epoch,
                )
                # The last epoch's validation is the final model scored on the held-out fold.
                scores = {"loss": history["val_loss"][-1], "accuracy": history["val_accuracy"][-1]}
                tracking.log_metrics(scores)
            folds.append({"fold": fold, **scores, "history": history, "mlflow_run_id": run_id})
            stage.write_json(saved, folds[-1])

        accuracies = [f["accuracy"] for f in folds]
        summary = {"accuracy_mean": float(np.mean(accuracies)), "accuracy_std": float(np.std(accuracies))}
        tracking.log_metrics(summary)
        stage.write_csv("plots/cv_folds.csv", ["fold", "accuracy", "loss"], [[f["fold"], f["accuracy"], f["loss"]] for f in folds])
        stage.save_figure("plots/cv_boxplot.png", evaluation.fold_boxplot(accuracies))
        stage.save_figure("plots/cv_curves.png", evaluation.fold_curves([f["history"] for f in folds]))
        for plot in ("plots/cv_boxplot.png", "plots/cv_curves.png"):
            tracking.log_artifact(plot)
        stage.write_json(
            "metrics/cv.json",
            summary
            | {
                "n_folds": len(folds),
                "folds": {str(f["fold"]): {"accuracy": f["accuracy"], "loss": f["loss"]} for f in folds},
                "mlflow": {"run_id": parent_id, "fold_run_ids": [f["mlflow_run_id"] for f in folds]},
            },
        )
    print(f"cross-validation accuracy: {summary['accuracy_mean']:.4%} ± {summary['accuracy_std']:.4%} (n={len(folds)})")
    shutil.rmtree(cache, ignore_errors=True)


if __name__ == "__main__":
    stage.run(main)
