"""`dvc repro` end to end on a repo copy: outputs, metrics, plots, MLflow runs. (Its reproducibility: test_experiments
runs the same params again and compares.)"""

from __future__ import annotations

import csv
import hashlib
import importlib.metadata
import re
import sys
from pathlib import Path

import mlflow
import numpy as np
import pytest
from helpers import read_json

from mnist_pipeline import machine, params, synthetic
from mnist_pipeline.testing import TINY, run

STAGES = ["download", "preprocess", "crossvalidate", "train", "synthesize", "detector", "export", "evaluate"]


def test_every_stage_wrote_its_outputs(pipeline):
    raw = sorted(p.name for p in (pipeline / "data" / "raw").iterdir())
    assert raw == sorted(
        f"{n}.gz" for n in ("train-images-idx3-ubyte", "train-labels-idx1-ubyte", "t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte")
    )
    images = np.load(pipeline / "data" / "prepared" / "train_images.npy")
    labels = np.load(pipeline / "data" / "prepared" / "train_labels.npy")
    assert images.shape == (TINY["data"]["train_limit"], 28, 28, 1) and images.dtype == np.uint8
    assert labels.dtype == np.uint8 and set(np.unique(labels)) == set(range(10))
    assert images.max() > 200, "raw 0-255 pixels: scaling belongs to the model"
    for path in [
        "models/model.keras",
        "models/export/model.tflite",
        "models/export/model.json",
        "models/export/model.weights.h5",
        "models/export/saved_model/saved_model.pb",
        "models/export/final.tflite",
        "models/export/ensemble.tflite",
        "models/export/ensemble.keras",
        "plots/cv_boxplot.png",
        "plots/cv_curves.png",
        "plots/misclassified.png",
        "models/detector/model.keras",
        "plots/synthetic_examples.png",
        "plots/reliability.png",
    ]:
        assert (pipeline / path).stat().st_size > 0, path
    folds = sorted(p.name for p in (pipeline / "models" / "folds").iterdir())
    assert folds == [*(f"fold-{k}.keras" for k in range(1, TINY["cv"]["folds"] + 1)), "out_of_fold_probabilities.npy"]
    out_of_fold = np.load(pipeline / "models" / "folds" / "out_of_fold_probabilities.npy")
    assert out_of_fold.shape == (TINY["data"]["train_limit"], 10) and np.allclose(out_of_fold.sum(1), 1, atol=1e-4), "every image, once"
    export = pipeline / "models" / "export"
    assert (export / "model.tflite").read_bytes() == (export / "ensemble.tflite").read_bytes(), "export.serve: ensemble by default"


def test_metrics(pipeline):
    cv, cv_report = read_json(pipeline / "metrics" / "cv.json"), read_json(pipeline / "reports" / "cv.json")
    assert set(cv) == {"cv_acc", "cv_std"}, "headline numbers only; the details are in reports/"
    assert cv_report["n_folds"] == TINY["cv"]["folds"] == len(cv_report["folds"])
    accuracies = [f["accuracy"] for f in cv_report["folds"].values()]
    assert cv["cv_acc"] == pytest.approx(np.mean(accuracies)) and cv["cv_std"] == pytest.approx(np.std(accuracies))
    assert 0.5 < cv["cv_acc"] <= 1

    train = read_json(pipeline / "reports" / "train.json")
    assert train["epochs"] == TINY["train"]["epochs"] and train["n_weights"] == 159_254

    export = read_json(pipeline / "reports" / "export.json")
    for name in ("saved_model", "bare_tflite", "json_h5"):  # float32, as trained
        assert export["parity"][name]["same_class"] == 1.0
        assert export["parity"][name]["max_probability_diff"] < 1e-4
    for name in ("final_tflite", "ensemble_tflite"):  # the served files, int8 weights (export.weights)
        parity = export["parity"][name]
        assert parity["same_class"] >= 0.99 and parity["same_verdict"] >= 0.99, parity
        assert parity["max_probability_diff"] < 0.05 and parity["max_digit_score_diff"] < 0.05, parity
    assert export["weights"] == "int8" and 0.2 < export["temperature"] < 5
    calibration = export["calibration"]  # one temperature for each served model, fitted on its own held-out output
    assert set(calibration["temperature"]) == {"final", "ensemble"} and export["temperature"] == calibration["temperature"]["ensemble"]
    for name, fit in calibration["fit"].items():  # kept only where it calibrates images it was not fitted on
        assert fit["kept"] == (fit["ece_crossed"] < fit["ece_without"]), fit
        assert calibration["temperature"][name] == (fit["fitted"] if fit["kept"] else 1.0)
    assert export["ensemble_members"] == TINY["cv"]["folds"] + 1
    # int8: about one byte a weight (159,254 a member, ~100,000 the detector's), not float32's four
    members = TINY["cv"]["folds"] + 1
    assert members * 160_000 < export["bytes"]["ensemble.tflite"] < members * 300_000
    assert export["bytes"]["model.tflite"] == export["bytes"]["ensemble.tflite"]

    headline, evaluation = read_json(pipeline / "metrics" / "eval.json"), read_json(pipeline / "reports" / "eval.json")
    numbers = [v for path in (pipeline / "metrics").glob("*.json") for v in read_json(path).values()]
    assert len(numbers) <= 12 and all(isinstance(v, float) for v in numbers), "dvc exp show: a dozen headline numbers at most"
    assert evaluation["n_images"] == TINY["data"]["test_limit"] and evaluation["n_non_digits"] == TINY["evaluate"]["non_digits"]
    assert 0.6 < headline["test_acc"] <= 1 and 0 < evaluation["macro_f1"] <= 1 and evaluation["loss"] > 0
    assert set(evaluation["per_class"]) == {str(d) for d in range(10)}
    assert evaluation["n_photos"] == TINY["evaluate"]["photos"]
    assert evaluation["accuracy_photos"] > evaluation["accuracy_photos_naive"]
    assert headline["photo_read"] <= evaluation["accuracy_photos"] and headline["flag_mnist"] < 0.1
    ece_raw = evaluation["calibration"]["ensemble"]["ece_raw"]
    for name, ece in (("reliability.csv", headline["ece"]), ("reliability_raw.csv", ece_raw)):
        with (pipeline / "plots" / name).open() as f:
            rows = list(csv.DictReader(f))
        assert sum(int(r["images"]) for r in rows) == TINY["data"]["test_limit"]
        gaps = sum(int(r["images"]) * abs(float(r["confidence"]) - float(r["accuracy"])) for r in rows)
        assert ece == pytest.approx(gaps / TINY["data"]["test_limit"]), "the ECE is the reliability diagram's weighted gap"
    assert set(evaluation["flagged_non_digits"]) == set(evaluation["non_digits_answered_sure"]) == set(synthetic.NON_DIGIT_KINDS)
    assert set(evaluation["flagged_digits"]) == set(evaluation["read_right_digits"]) == set(synthetic.DIGIT_KINDS)
    threshold = evaluation["threshold"]  # every kind of digit evaluate counts, against the budget the threshold was set with
    assert set(threshold["budgets"]) == {"mnist", "photo", *synthetic.DIGIT_KINDS} and threshold["held_by"] in threshold["threshold_kinds"]
    assert threshold["budgets"]["mnist"]["flagged"] == headline["flag_mnist"]
    assert threshold["budgets"]["photo"]["flagged"] == headline["photo_flag"]
    assert evaluation["n_digits"] == TINY["evaluate"]["digits"]
    assert all(evaluation["read_right_digits"][k] <= 1 - evaluation["flagged_digits"][k] for k in synthetic.DIGIT_KINDS)
    assert 0 <= headline["nondigit_sure"] <= 1 - headline["flag_nondigit"]
    assert set(evaluation["calibration"]) == {"final", "ensemble"}
    assert evaluation["calibration"]["ensemble"]["ece"] == headline["ece"]
    each = evaluation["test_accuracy"]
    assert set(each) == {"final", "ensemble", *(f"fold_{k}" for k in range(1, TINY["cv"]["folds"] + 1))}
    assert evaluation["served"] == "ensemble" and each["ensemble"] == headline["test_acc"] == headline["ens_acc"]
    assert each["final"] == headline["final_acc"]
    assert all(0.5 < value <= 1 for value in each.values())


def test_the_detector_learns_digits_from_non_digits(pipeline):
    """Tiny as the test's detector is, its threshold holds the held-out digits of each kind it was
    set on to that kind's false-flag budget, it mined its hard negatives from the pool, and it
    flags more of the project's non-digits than of MNIST's test digits."""
    detector = read_json(pipeline / "reports" / "detector.json")
    budgets = read_json(pipeline / "models" / "detector" / "threshold.json")["false_flag_rate"]
    assert set(budgets) == {"mnist", "photo", *synthetic.DIGIT_KINDS} and detector["held_by"] in detector["threshold_kinds"]
    assert detector["threshold_kinds"] == sorted(params.load(pipeline / "params.yaml").detector.threshold_kinds)
    held = {kind: budgets[kind] for kind in detector["threshold_kinds"]}
    assert all(detector["flagged"][kind] <= budget + 1 / detector["n"][kind] for kind, budget in held.items()), detector["flagged"]
    assert set(detector["budgets"]) == set(budgets) and all(detector["budgets"][k]["flagged"] == detector["flagged"][k] for k in budgets)
    pool = {name: np.load(pipeline / "data" / "synthetic" / f"pool_{name}.npy") for name in ("labels", "kind")}
    assert len(pool["labels"]) == TINY["synthetic"]["pool"] and (pool["labels"] < 0).all()
    assert {synthetic.KINDS[k] for k in set(pool["kind"].tolist())} == set(synthetic.POOL_KINDS)
    for sheet in ("detector_hard_negatives.png", "detector_flagged_digits.png"):
        assert (pipeline / "plots" / sheet).stat().st_size > 1000, sheet
    # the reader's cleaning leaves digits by construction and low-resolution ones alone: each one made is kept
    made = np.load(pipeline / "data" / "synthetic" / "val_kind.npy")
    for kind in ("typed", "drawn", "low_resolution"):
        assert detector["n"][kind] == (made == synthetic.KINDS.index(kind)).sum() > 0, kind
    headline = read_json(pipeline / "metrics" / "eval.json")
    assert headline["flag_nondigit"] > 0.1 > headline["flag_mnist"]
    synthetic_set = {name: np.load(pipeline / "data" / "synthetic" / f"train_{name}.npy") for name in ("images", "labels", "kind")}
    small = TINY["synthetic"]
    assert (synthetic_set["labels"] >= 0).sum() == small["mnist"] + small["photos"] + small["digits"]
    assert (synthetic_set["labels"] < 0).sum() == small["non_digits"] and synthetic_set["images"].shape[1:] == (28, 28, 1)


def test_the_ensemble_averages_its_calibrated_members(pipeline):
    """The exported ensemble's probabilities are the mean of the fold models' and the final
    model's, each softmax(logits / T) with the one temperature export fitted on the ensemble's
    own averaged output (pool, then calibrate)."""
    from mnist_pipeline.loading import KerasModel, load_keras

    images = np.load(pipeline / "data" / "prepared" / "test_images.npy")[:100].astype("float32")
    members = [load_keras(pipeline / "models" / "folds" / f"fold-{k}.keras") for k in range(1, TINY["cv"]["folds"] + 1)]
    members.append(load_keras(pipeline / "models" / "model.keras"))
    temperature = read_json(pipeline / "reports" / "export.json")["calibration"]["temperature"]["ensemble"]
    calibrated = []
    for member in members:  # softmax(logits / T): log p is the logits up to a constant
        z = np.log(member.predict(images, verbose=0).astype(np.float64)) / temperature
        calibrated.append(np.exp(z - z.max(1, keepdims=True)) / np.exp(z - z.max(1, keepdims=True)).sum(1, keepdims=True))
    ensemble = KerasModel(pipeline / "models" / "export" / "ensemble.keras").predict(images)  # the float model; its
    assert np.abs(ensemble - np.mean(calibrated, axis=0)).max() < 1e-4  # int8 .tflite's parity: test_metrics


def test_plot_data(pipeline):
    with (pipeline / "plots" / "confusion.csv").open() as f:
        rows = list(csv.DictReader(f))
    assert len(rows) == TINY["data"]["test_limit"] and set(rows[0]) == {"actual", "predicted"}
    accuracy = np.mean([r["actual"] == r["predicted"] for r in rows])
    assert accuracy == pytest.approx(read_json(pipeline / "metrics" / "eval.json")["test_acc"])
    with (pipeline / "plots" / "train_history.csv").open() as f:
        history = list(csv.DictReader(f))
    assert [int(r["epoch"]) for r in history] == list(range(1, TINY["train"]["epochs"] + 1))


def test_second_repro_has_nothing_to_do(pipeline_copy):
    result = run(pipeline_copy, "dvc", "repro")
    assert "Data and pipelines are up to date" in result.stdout, result.stdout
    status = run(pipeline_copy, "dvc", "status")
    assert "up to date" in status.stdout


def test_dvc_shows_metrics_and_renders_plots(pipeline_copy, tmp_path):
    shown = run(pipeline_copy, "dvc", "metrics", "show", "--json").stdout
    assert '"cv_acc"' in shown and '"flag_nondigit"' in shown and '"ece"' in shown
    out = tmp_path / "plots"
    run(pipeline_copy, "dvc", "plots", "show", "-o", str(out))
    html = (out / "index.html").read_text()
    for title in (
        "Training loss",
        "Cross-validation accuracy by fold",
        "Confusion matrix",
        "cv_boxplot.png",
        "misclassified.png",
        "Reliability",
        "synthetic_examples.png",
        "detector_hard_negatives.png",
    ):
        assert title in html, title
    assert "<script src=" not in html and "cdn.jsdelivr" not in html, "the page loads nothing from the network"
    # the charts render in a real browser with every network request refused
    browser = run(
        tmp_path,
        "chromium",
        "--headless",
        "--no-sandbox",
        "--disable-gpu",
        "--no-first-run",
        "--disable-background-networking",
        "--disable-component-update",
        "--disable-sync",
        f"--user-data-dir={tmp_path / 'profile'}",
        "--proxy-server=127.0.0.1:9",
        "--host-resolver-rules=MAP * ~NOTFOUND",
        "--virtual-time-budget=8000",
        "--dump-dom",
        (out / "index.html").as_uri(),
        timeout=120,
    )
    charts = re.findall(r'<canvas width="(\d+)" height="(\d+)" class="marks"', browser.stdout)
    assert len(charts) == 5 and all(int(w) > 100 and int(h) > 100 for w, h in charts), browser.stdout[-2000:]


def test_mlflow_runs(pipeline):
    mlflow.set_tracking_uri(f"sqlite:///{pipeline / 'mlflow.db'}")
    runs = mlflow.search_runs(experiment_names=["mnist-pipeline"], output_format="list")
    by_id = {r.info.run_id: r for r in runs}
    assert {r.data.tags["stage"] for r in runs} == set(STAGES)
    assert len({r.data.tags["pipeline_run"] for r in runs}) == 1, "one `dvc repro`, one group in the UI"
    experiment = mlflow.get_experiment_by_name("mnist-pipeline")
    assert experiment.tags["mlflow.experimentKind"] == "custom_model_development", "the UI opens on training runs"
    commit = run(pipeline, "git", "rev-parse", "HEAD").stdout.strip()
    assert all(r.data.tags["git_commit"] == commit for r in runs)
    lock = hashlib.sha256((pipeline / "uv.lock").read_bytes()).hexdigest()
    assert all(r.data.tags["uv_lock_sha256"] == lock for r in runs), "each run names the environment it ran in"
    assert {r.data.tags["instruction_set"] for r in runs} == {machine.instruction_set()}, "the kind of CPU that made its numbers"

    cv = read_json(pipeline / "reports" / "cv.json")
    parent = by_id[cv["mlflow"]["run_id"]]
    children = [r for r in runs if r.data.tags.get("mlflow.parentRunId") == parent.info.run_id]
    assert sorted(r.info.run_id for r in children) == sorted(cv["mlflow"]["fold_run_ids"])
    assert len(children) == TINY["cv"]["folds"]
    assert parent.data.metrics["accuracy_mean"] == pytest.approx(cv["accuracy_mean"])
    assert parent.data.params["cv.folds"] == str(TINY["cv"]["folds"])
    history = mlflow.MlflowClient().get_metric_history(children[0].info.run_id, "val_accuracy")
    assert [m.step for m in history] == list(range(1, TINY["cv"]["epochs"] + 1))

    train = read_json(pipeline / "reports" / "train.json")
    model = mlflow.get_logged_model(train["mlflow"]["model_id"])
    assert model.source_run_id == train["mlflow"]["run_id"]
    assert len(mlflow.MlflowClient().get_metric_history(train["mlflow"]["run_id"], "loss")) == TINY["train"]["epochs"]
    assert mlflow.models.get_model_info(f"models:/{model.model_id}").signature is not None

    evaluation = read_json(pipeline / "reports" / "eval.json")
    assert evaluation["gate_passed"]
    champion = mlflow.MlflowClient().get_model_version_by_alias("mnist-cnn", "champion")
    assert int(champion.version) == evaluation["mlflow"]["model_version"] and evaluation["mlflow"]["alias"] == "champion"
    test_files = [hashlib.md5((pipeline / "data" / "prepared" / f"test_{n}.npy").read_bytes()).hexdigest() for n in ("images", "labels")]
    assert champion.tags["test_set"] == "+".join(test_files) and champion.tags["uv_lock_sha256"] == lock
    assert float(champion.tags["test.test_acc"]) == pytest.approx(evaluation["accuracy"])
    assert champion.description == "champion: the first version registered"
    exported = read_json(pipeline / "reports" / "export.json")["mlflow"]
    served = mlflow.get_logged_model(exported["served_model_id"])
    assert champion.source == f"models:/{served.model_id}" and champion.run_id == exported["run_id"], "the served model, verdict and all"
    requirements = Path(mlflow.artifacts.download_artifacts(f"{served.artifact_location}/requirements.txt")).read_text().split()
    installed = {name: importlib.metadata.version(name) for name in ("mlflow", "keras", "numpy")}
    assert {f"{name}=={version}" for name, version in installed.items()} <= set(requirements), requirements
    assert any(r.startswith(("tensorflow==", "tensorflow-cpu==")) for r in requirements), "what `mlflow models serve` installs"
    linked = {m.key: m.value for m in served.metrics or []}
    assert (
        linked["test_acc"] == pytest.approx(evaluation["accuracy"])
        and linked["flag_nondigit"] == read_json(pipeline / "metrics" / "eval.json")["flag_nondigit"]
    )


def test_tensorflows_start_up_banner_stays_out_of_a_stages_output(tmp_path):
    """TF_CPP_MIN_LOG_LEVEL=0 makes TensorFlow print its C++ start-up lines on every machine; the
    modules that import it keep them out of the stage's output (on some machines they come
    whatever TF_CPP_MIN_LOG_LEVEL says)."""
    probe = "import mnist_pipeline.training, mnist_pipeline.export, tensorflow as tf; print(tf.reduce_sum(tf.ones(3)).numpy())"
    result = run(tmp_path, sys.executable, "-c", probe, TF_CPP_MIN_LOG_LEVEL="0")
    assert result.stdout.strip() == "3.0"
    assert "absl::InitializeLog" not in result.stderr and "cpu_feature_guard" not in result.stderr, result.stderr
