"""distribute.precision: Keras's mixed precision while training, float32 whatever is saved."""

from __future__ import annotations

import numpy as np
import pytest
from helpers import read_json

from mnist_pipeline import PipelineError, datasets, distribute, mnist, models, training
from mnist_pipeline.loading import LiteRTModel
from mnist_pipeline.params import Model
from mnist_pipeline.testing import MIRROR, copy_repo, run, update_params

keras = training.keras  # imported with TensorFlow's banner silenced


def test_a_model_trained_in_bfloat16_is_saved_and_served_in_float32(tmp_path):
    data = mnist.load_split(MIRROR, "train")
    images, labels = data.images[:512], data.labels[:512]
    try:
        keras.config.set_dtype_policy("mixed_bfloat16")  # emulated on a CPU without it: slow, but a tiny model
        job = training.prepare(
            Model("bn_cnn", [8, 8, 8], 16, 0.1),
            datasets.to_tensors(images, labels),
            np.arange(len(labels)),
            batch_size=64,
            optimizer="adam",
            learning_rate=0.003,
            seed=0,
        )
        assert job.model.layers[1].compute_dtype == "bfloat16" and job.model.layers[-1].compute_dtype == "float32"
        training.train(job, 1, lambda epoch, logs: None)
    finally:
        keras.config.set_dtype_policy("float32")
    served = models.in_float32(job.model)
    assert {layer.dtype_policy.name for layer in served.layers} == {"float32"}
    for ours, theirs in zip(served.get_weights(), job.model.get_weights(), strict=True):
        np.testing.assert_array_equal(ours, theirs)
    bf16, f32 = job.model.predict(images[:64], verbose=0), served.predict(images[:64], verbose=0)
    assert f32.dtype == np.float32 and np.abs(f32 - bf16).max() < 0.05  # bfloat16 keeps 8 bits of mantissa
    served.save(tmp_path / "model.keras")
    loaded = keras.saving.load_model(tmp_path / "model.keras")
    assert {layer.dtype_policy.name for layer in loaded.layers} == {"float32"}
    np.testing.assert_array_equal(loaded.predict(images[:64], verbose=0), f32)
    float32 = models.build(Model("seed_cnn", [8, 8, 8], 16, 0.0))
    assert models.in_float32(float32) is float32, "a float32 model is saved as it is"


def test_everything_served_is_built_in_float32_under_a_mixed_policy():
    """What the detector stage builds while training's mixed policy is still set, and what export builds
    from models saved in any precision: every layer, nested models' too, computes in float32."""
    try:
        keras.config.set_dtype_policy("mixed_bfloat16")
        member = models.build(Model("bn_cnn", [8, 8, 8], 16, 0.1))
        nested = keras.Sequential([keras.Input(models.INPUT_SHAPE), member], name="nested")
        built = {
            "in_float32 of a nested model": models.in_float32(nested),
            "averaged_detector": models.averaged_detector([models.detector(), models.detector()]),
            "member_logits": models.member_logits([member, member], 1),
        }
        built["served"] = models.served(built["member_logits"], built["averaged_detector"], 1.5, -1.0)
        assert keras.config.dtype_policy().name == "mixed_bfloat16", "the global policy as it was"
    finally:
        keras.config.set_dtype_policy("float32")
    assert {layer.dtype_policy.name for layer in member._flatten_layers(include_self=False)} > {"float32"}, "a mixed member"
    for name, model in built.items():
        policies = {layer.dtype_policy.name for layer in model._flatten_layers(include_self=False)}
        assert policies == {"float32"}, f"{name}: {policies}"
    images = mnist.load_split(MIRROR, "t10k").images[:16].astype("float32")
    np.testing.assert_allclose(
        built["in_float32 of a nested model"].predict(images, verbose=0), member.predict(images, verbose=0), atol=0.05
    )


def test_models_trained_in_bfloat16_go_through_the_real_export_and_evaluate(pipeline_copy):
    """The classifiers and the detector members trained under mixed_bfloat16, saved as train,
    crossvalidate and detector save them (the averaged detector built while the policy is still
    mixed, as the detector stage builds it), then the export and evaluate stages as they are, and
    LiteRT reading the files: what crashed at export on every CPU with native bfloat16."""
    repo = pipeline_copy
    data = mnist.load_split(MIRROR, "train")
    images, labels = data.images[:256], data.labels[:256]
    folds = sorted((repo / "models" / "folds").glob("fold-*.keras"))

    def trained(model, targets, seed):
        job = training.prepare(
            model,
            datasets.to_tensors(images, targets),
            np.arange(len(targets)),
            batch_size=64,
            optimizer="adam",
            learning_rate=0.003,
            seed=seed,
        )
        training.train(job, 1, lambda epoch, logs: None)
        return job.model

    try:
        keras.config.set_dtype_policy("mixed_bfloat16")  # emulated on a CPU without it: slow, but tiny models
        for seed, path in enumerate([*folds, repo / "models" / "model.keras"]):  # fold 1 as it trained, in bfloat16
            model = trained(Model("bn_cnn", [8, 8, 8], 16, 0.1), labels, seed)
            (model if seed == 0 else models.in_float32(model)).save(path)
        detectors = [trained(models.detector, (labels % 2).astype(np.uint8), seed) for seed in (0, 1)]
        models.averaged_detector(detectors).save(repo / "models" / "detector" / "model.keras")
    finally:
        keras.config.set_dtype_policy("float32")

    run(repo, "python", "stages/export.py", PYTHONPATH="src")
    for path in (repo / "models" / "export" / "ensemble.keras", repo / "models" / "detector" / "model.keras"):
        loaded = keras.saving.load_model(path)
        policies = {layer.dtype_policy.name for layer in loaded._flatten_layers(include_self=False)}
        assert policies == {"float32"}, f"{path.name} computes in {policies}"
    parity = read_json(repo / "reports" / "export.json")["parity"]
    for name in ("ensemble_tflite", "final_tflite"):
        assert parity[name]["same_class"] > 0.97 and parity[name]["same_verdict"] > 0.97, parity[name]
    probabilities, scores = LiteRTModel(repo / "models" / "export" / "model.tflite").read(images[:32])
    assert probabilities.shape == (32, 10) and scores.shape == (32,) and probabilities.dtype == np.float32
    np.testing.assert_allclose(probabilities.sum(axis=1), 1, atol=1e-4)

    run(repo, "python", "stages/evaluate.py", PYTHONPATH="src")
    assert 0 < read_json(repo / "metrics" / "eval.json")["test_acc"] <= 1


def test_a_precision_this_machine_would_emulate_is_one_line_before_training(tmp_path):
    repo = copy_repo(tmp_path / "repo")
    update_params(repo, {"distribute": {"precision": "mixed_float16"}})
    result = run(repo, "python", "stages/train.py", check=False, PYTHONPATH="src", CUDA_VISIBLE_DEVICES="")  # no GPU seen
    assert result.returncode == 1, result.stderr
    assert result.stderr.strip() == (
        "error: distribute.precision: mixed_float16 needs a GPU (compute capability 7.0 or more); this machine has none, "
        "and would emulate it several times slower than float32: use float32 or auto"
    )
    assert not (repo / "models").exists() and not (repo / "mlflow.db").exists(), "nothing trained, nothing logged"


@pytest.mark.parametrize(
    "hardware, requested, policy",
    [
        (None, "float32", "float32"),
        (None, "auto", "float32"),
        (None, "mixed_bfloat16", None),
        ("the CPU's avx512_bf16", "auto", "mixed_bfloat16"),
        ("the CPU's amx_bf16", "mixed_bfloat16", "mixed_bfloat16"),
        ("the CPU's avx512_bf16", "mixed_float16", None),
        ("a GPU", "auto", "mixed_bfloat16"),
        ("a GPU", "mixed_float16", "mixed_float16"),
    ],
)
def test_auto_takes_bfloat16_where_the_hardware_has_it_and_emulation_is_refused(monkeypatch, hardware, requested, policy):
    """The hardware as distribute.native_bfloat16 and gpu_capability would find it on other machines."""
    monkeypatch.setattr(distribute, "native_bfloat16", lambda: hardware)
    monkeypatch.setattr(distribute, "gpu_capability", lambda: (9, 0) if hardware == "a GPU" else None)
    try:
        if policy is None:
            with pytest.raises(PipelineError, match=f"distribute.precision: {requested} needs .*use float32 or auto"):
                distribute.set_precision(requested)
            assert keras.config.dtype_policy().name == "float32", "nothing set"
        else:
            assert distribute.set_precision(requested) == policy and keras.config.dtype_policy().name == policy
    finally:
        keras.config.set_dtype_policy("float32")
