"""Models trained side by side compute exactly what they would alone, stop together on an error, and
resume from a checkpoint exactly where they would have been."""

from __future__ import annotations

import subprocess
import sys

import numpy as np
import pytest
import yaml

from mnist_pipeline import PipelineError, datasets, mnist, params, training
from mnist_pipeline.params import Augment
from mnist_pipeline.testing import MIRROR, ROOT, compose

# In a fresh process, since the thread setting must come before TensorFlow starts (as in crossvalidate).
SIDE_BY_SIDE = """
import sys
from pathlib import Path

import numpy as np
from mnist_pipeline import datasets, distribute, mnist, params, training

distribute.one_thread_per_op()
data = mnist.load_split(Path(sys.argv[1]), "train")
shared = datasets.to_tensors(data.images, data.labels)
p = params.load(sys.argv[2])

def prepare(seed):
    return training.prepare(p.model, shared, np.arange(640), batch_size=32, optimizer="adam", learning_rate=1e-3, seed=seed)

def weights(job):
    return {f"{i}": w for i, w in enumerate(job.model.get_weights())}

together = {seed: prepare(seed) for seed in (1, 2)}
training.train_together(together, lambda _, job: training.train(job, 2, label="together"))
alone = {1: prepare(1)}
training.train(alone[1], 2, label="alone")
for name, jobs in (("together", together), ("alone", alone)):
    for seed, job in jobs.items():
        np.savez(f"{sys.argv[3]}/{name}-{seed}.npz", **weights(job))
"""


def test_a_model_trained_beside_another_gets_the_same_weights_as_alone(tmp_path):
    result = subprocess.run(
        [sys.executable, "-c", SIDE_BY_SIDE, str(MIRROR), str(ROOT / "params.yaml"), str(tmp_path)],
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    assert result.stdout.count("together epoch") == 4 and result.stdout.count("alone epoch") == 2, result.stdout
    together, alone, other = (np.load(tmp_path / f"{name}.npz") for name in ("together-1", "alone-1", "together-2"))
    assert all(np.array_equal(together[k], alone[k]) for k in alone.files)
    assert not all(np.array_equal(together[k], other[k]) for k in other.files), "different seeds, different models"


def test_when_one_job_fails_the_others_stop_and_the_error_comes_through():
    data = mnist.load_split(MIRROR, "train")
    model_params = params.load(ROOT / "params.yaml").model
    shared = datasets.to_tensors(data.images, data.labels)
    jobs = {
        name: training.prepare(model_params, shared, np.arange(64), batch_size=32, optimizer="adam", learning_rate=1e-3, seed=0)
        for name in ("fails", "long")
    }
    outcome = {}

    def train_one(name: str, job: training.Job) -> None:
        if name == "fails":
            raise ValueError("broken job")
        try:
            training.train(job, epochs=10_000, label=name)
        except PipelineError as stopped:
            outcome[name] = str(stopped)

    with pytest.raises(ValueError, match="broken job"):
        training.train_together(jobs, train_one)
    assert outcome["long"].startswith("training stopped during epoch ") and outcome["long"].endswith(" of 10000")


_strong = params.parse(yaml.safe_load(compose("recipe=strong")))  # the preset's model, augmentation, schedule and smoothing
STRONG = {
    "model": _strong.model,
    "augment": _strong.augment,
    "schedule": _strong.cv.schedule,
    "label_smoothing": _strong.cv.label_smoothing,
}


@pytest.mark.parametrize("recipe", ["default", "strong"])
def test_a_job_resumed_from_its_checkpoint_ends_exactly_as_one_never_interrupted(tmp_path, capsys, recipe):
    data = mnist.load_split(MIRROR, "train")
    shared = datasets.to_tensors(data.images, data.labels)
    setup = {"model": params.load(ROOT / "params.yaml").model} if recipe == "default" else STRONG

    def prepare() -> training.Job:
        return training.prepare(
            setup["model"],
            shared,
            np.arange(640),
            batch_size=32,
            optimizer="adam",
            learning_rate=1e-3,
            seed=1,
            validation_index=np.arange(640, 800),
            epochs=3,
            schedule=setup.get("schedule", "constant"),
            augment=setup.get("augment"),
            label_smoothing=setup.get("label_smoothing", 0.0),
        )

    straight = prepare()
    straight_history = training.train(straight, 3)
    training.train(prepare(), 1, checkpoint=tmp_path)  # interrupted after its first epoch
    assert [p.name for p in sorted(tmp_path.iterdir())] == ["checkpoint.json", "epoch-1.weights.h5"]
    resumed = prepare()
    capsys.readouterr()
    resumed_history = training.train(resumed, 3, checkpoint=tmp_path)

    out = capsys.readouterr().out
    assert out.startswith("resuming after epoch 1/3") and "epoch 1/3:" not in out and "epoch 3/3:" in out
    assert resumed_history == straight_history and len(resumed_history["val_accuracy"]) == 3
    assert all(np.array_equal(a, b) for a, b in zip(straight.model.get_weights(), resumed.model.get_weights(), strict=False))
    assert all(np.array_equal(a, b) for a, b in zip(straight.model.optimizer.variables, resumed.model.optimizer.variables, strict=False))
    assert [p.name for p in sorted(tmp_path.iterdir())] == ["checkpoint.json", "epoch-3.weights.h5"]


def test_each_epoch_line_tells_the_time_in_and_an_estimate_of_the_time_left(capsys):
    data = mnist.load_split(MIRROR, "train")
    job = training.prepare(
        params.load(ROOT / "params.yaml").model,
        datasets.to_tensors(data.images, data.labels),
        np.arange(64),
        batch_size=32,
        optimizer="adam",
        learning_rate=1e-3,
        seed=0,
    )
    capsys.readouterr()
    training.train(job, 2, label="tiny")

    lines = capsys.readouterr().out.splitlines()
    assert [line.split(":")[0] for line in lines] == ["tiny epoch 1/2", "tiny epoch 2/2"], lines
    assert all(" in, about " in line and line.endswith(" left)") for line in lines), lines
    assert lines[-1].endswith("about 0 s left)"), lines
    assert [training.duration(s) for s in (45, 185, 3720)] == ["45 s", "3 min 05 s", "1 h 02 min"]


def batches(dataset) -> list[tuple[np.ndarray, np.ndarray]]:
    return [(x.numpy(), y.numpy()) for x, y in dataset]


def test_augmentation_is_drawn_from_the_seed_and_epoch_and_keeps_the_labels():
    data = mnist.load_split(MIRROR, "train")
    shared = datasets.to_tensors(data.images, data.labels)
    index = np.arange(256)
    augment = Augment(rotation=10, shift=0.1, zoom=0.1)

    def epoch(seed, number, augment=augment):
        return batches(datasets.dataset(shared, index, 64, shuffle_seed=(seed, number), augment=augment))

    first, again, later, plain = epoch(1, 0), epoch(1, 0), epoch(1, 1), epoch(1, 0, augment=None)
    assert all(np.array_equal(a[0], b[0]) and np.array_equal(a[1], b[1]) for a, b in zip(first, again, strict=False)), (
        "same seed and epoch, same batches"
    )
    assert not np.array_equal(first[0][0], later[0][0]), "each epoch draws new distortions"
    for (distorted, labels), (original, plain_labels) in zip(first, plain, strict=False):
        assert np.array_equal(labels, plain_labels), "augmentation keeps the order and the labels"
        assert distorted.dtype == np.uint8 and distorted.shape == original.shape
        changed = np.abs(distorted.astype(int) - original).mean(axis=(1, 2, 3))
        assert (changed > 0).all() and np.median(changed) < 40, "distorted, but still the digit"
        # a small distortion moves the digit's mass a little, not off the image
        assert np.corrcoef(distorted.reshape(len(labels), -1).sum(1), original.reshape(len(labels), -1).sum(1))[0, 1] > 0.8
    identity = datasets.distortions(Augment(), 4, np.random.default_rng(0))
    assert np.allclose(identity, [[1, 0, 0, 0, 1, 0, 0, 0]] * 4)
