"""params.yaml validation, and dvc.yaml declaring exactly the sections each stage reads."""

from __future__ import annotations

import ast
import importlib.util
import re
import sys
from pathlib import Path

import grimp  # import-linter's import graph
import pytest
import yaml

from mnist_pipeline import params
from mnist_pipeline.testing import ROOT, compose, copy_repo, run, update_params


def default_raw() -> dict:
    return yaml.safe_load((ROOT / "params.yaml").read_text())


def problems(raw: dict) -> list[str]:
    with pytest.raises(params.ParamsError) as info:
        params.parse(raw)
    return info.value.problems


def test_defaults_are_the_tutorials_protocol():
    p = params.load(ROOT / "params.yaml")
    assert (p.cv.folds, p.cv.random_state, p.cv.epochs, p.cv.batch_size) == (5, 1, 10, 32)
    assert (p.train.epochs, p.train.batch_size, p.train.optimizer, p.train.learning_rate) == (10, 200, "adam", 0.001)
    assert p.data.train_limit is None and p.model.name == "seed_cnn" and p.evaluate.gate == 0.985


def test_unknown_key_suggests_the_right_one():
    raw = default_raw()
    raw["train"]["epoch"] = 3
    assert problems(raw) == ["train.epoch: unknown key; did you mean train.epochs?"]


def test_every_problem_is_reported_once_with_what_is_allowed():
    raw = default_raw()
    raw["cv"]["folds"] = 1
    raw["train"]["learning_rate"] = 0
    raw["model"]["name"] = "resnet"
    raw["data"]["train_limit"] = 70_000
    raw["train"]["batch_size"] = "32"
    del raw["cv"]["epochs"]
    assert sorted(problems(raw)) == sorted(
        [
            "cv.folds: 1 is not allowed; expected an integer >= 2",
            "cv.epochs: missing; expected an integer >= 1",
            "train.learning_rate: 0 is not allowed; expected a number > 0",
            "train.batch_size: '32' is not allowed; expected an integer >= 1",
            "model.name: 'resnet' is not allowed; expected one of seed_cnn, bn_cnn",
            "data.train_limit: 70000 is not allowed; expected an integer from 100 to 60000 or null",
        ]
    )


def test_unknown_section_and_booleans_are_refused():
    raw = default_raw()
    raw["trian"] = {"epochs": 1}
    raw["cv"]["epochs"] = True
    assert sorted(problems(raw)) == ["cv.epochs: True is not allowed; expected an integer >= 1", "trian: unknown key; did you mean train?"]


def test_stage_exits_2_with_one_line_per_problem(tmp_path):
    repo = copy_repo(tmp_path, params=None)
    update_params(repo, {"train": {"epochs": 0, "batch_sise": 64}})
    result = run(repo, "dvc", "repro", "train", check=False)
    assert result.returncode != 0
    assert "error: params.yaml: train.epochs: 0 is not allowed; expected an integer >= 1" in result.stderr
    assert "error: params.yaml: train.batch_sise: unknown key; did you mean train.batch_size?" in result.stderr
    assert "Traceback" not in result.stderr
    direct = run(repo, "python", "stages/download.py", check=False, PYTHONPATH="src")
    assert direct.returncode == 2 and direct.stderr.count("error: params.yaml:") == 2


def test_dvc_yaml_params_are_exactly_the_sections_each_stage_reads():
    stages = yaml.safe_load((ROOT / "dvc.yaml").read_text())["stages"]
    for name, spec in stages.items():
        source = (ROOT / "stages" / f"{name}.py").read_text()
        read = set(re.findall(r"\bp\.(\w+)\b", source))
        declared = spec.get("params", [])
        assert {d.split(".")[0] for d in declared} == read, name
        assert read <= set(params.SECTIONS), name
        for section, key in (d.split(".") for d in declared if "." in d):  # one key of a section: the stage reads it alone
            assert set(re.findall(rf"\bp\.{section}\.(\w+)", source)) == {key}, name


def test_dvc_yaml_lists_every_library_module_a_stage_imports():
    stages = yaml.safe_load((ROOT / "dvc.yaml").read_text())["stages"]
    graph = grimp.build_graph("mnist_pipeline", cache_dir=None)
    for name, spec in stages.items():
        declared = {d for d in spec["deps"] if d.startswith("src/")}
        assert declared == library_files(ROOT / "stages" / f"{name}.py", graph), name


def library_files(script: Path, graph: grimp.ImportGraph) -> set[str]:
    """The library's source files a script runs: the modules it imports, what they import in turn
    (grimp's import graph, lazy imports too), and the packages around each."""
    direct = set()
    for node in ast.walk(ast.parse(script.read_text())):
        if isinstance(node, ast.ImportFrom) and (node.module or "").split(".")[0] == "mnist_pipeline":
            direct |= {node.module} | {f"{node.module}.{alias.name}" for alias in node.names} & graph.modules
    modules = direct | {upstream for module in direct for upstream in graph.find_upstream_modules(module)}
    modules |= {".".join(module.split(".")[:n]) for module in modules for n in range(1, module.count(".") + 1)}
    return {str(Path(importlib.util.find_spec(module).origin).relative_to(ROOT)) for module in modules}


def test_dvc_exp_run_set_param_gets_the_same_validation(tmp_path):
    repo = copy_repo(tmp_path, params=None)
    typo = run(repo, "dvc", "exp", "run", "-S", "cv.fold=3", check=False)
    assert typo.returncode != 0 and "Could not override 'cv.fold'" in typo.stderr  # DVC itself refuses new keys
    result = run(repo, "dvc", "exp", "run", "-S", "train.epochs=0", "-S", "+cv.fold=3", check=False)
    assert result.returncode != 0
    assert "error: params.yaml: train.epochs: 0 is not allowed; expected an integer >= 1" in result.stderr
    assert "error: params.yaml: cv.fold: unknown key; did you mean cv.folds?" in result.stderr
    assert not (repo / "data" / "raw").exists(), "nothing was downloaded before the params were checked"


def test_params_yaml_is_conf_composed_so_a_set_param_run_changes_only_what_it_sets():
    assert (ROOT / "params.yaml").read_text() == compose(), "edit conf/config.yaml, then write params.yaml from it"
    assert yaml.safe_load(compose("recipe=tutorial")) == default_raw()
    changed = yaml.safe_load(compose("train.epochs=15"))
    assert changed.pop("train")["epochs"] == 15 and {k: v for k, v in default_raw().items() if k != "train"} == changed


def test_the_strong_preset_changes_only_the_recipe_and_its_keys_are_checked():
    p = params.load(ROOT / "params.yaml")
    assert not p.augment.active and p.cv.schedule == p.train.schedule == "constant"
    assert p.export.serve == "ensemble" and p.export.tta == 0 and p.model.dropout == 0 and p.cv.label_smoothing == 0
    raw = yaml.safe_load(compose("recipe=strong"))
    strong = params.parse(raw)
    assert strong.augment.active and strong.cv.schedule == strong.train.schedule == "cosine"
    assert strong.model.name == "bn_cnn" and strong.export.serve == "ensemble" and strong.export.tta == 1
    assert strong.cv.label_smoothing == strong.train.label_smoothing > 0
    assert p.distribute.precision == "float32" and strong.distribute.precision == "auto"
    assert strong.distribute.strategy == p.distribute.strategy and strong.distribute.devices == p.distribute.devices
    assert (strong.data, strong.cv.folds, strong.synthetic, strong.detector, strong.evaluate) == (
        p.data,
        p.cv.folds,
        p.synthetic,
        p.detector,
        p.evaluate,
    )
    assert params.parse(yaml.safe_load(compose("recipe=strong", "cv.epochs=3"))).cv.epochs == 3, "a -S after the preset wins"
    raw["model"]["dropout"] = 1.5
    raw["augment"]["rotation"] = -5
    raw["augment"]["zom"] = 0.1
    raw["train"]["schedule"] = "onecycle"
    raw["train"]["label_smoothing"] = 0.7
    raw["export"]["serve"] = "folds"
    raw["export"]["tta"] = 5
    raw["distribute"]["precision"] = "bfloat16"
    assert sorted(problems(raw)) == sorted(
        [
            "distribute.precision: 'bfloat16' is not allowed; expected one of float32, mixed_bfloat16, mixed_float16, auto",
            "model.dropout: 1.5 is not allowed; expected a number from 0 to 0.9",
            "augment.rotation: -5 is not allowed; expected a number from 0 to 45",
            "augment.zom: unknown key; did you mean augment.zoom?",
            "train.schedule: 'onecycle' is not allowed; expected one of constant, cosine",
            "train.label_smoothing: 0.7 is not allowed; expected a number from 0 to 0.5",
            "export.serve: 'folds' is not allowed; expected one of final, ensemble",
            "export.tta: 5 is not allowed; expected an integer from 0 to 3",
        ]
    )


def test_a_params_typo_is_reported_before_tensorflow_or_mlflow_is_imported(tmp_path):
    repo = copy_repo(tmp_path, params=None)
    update_params(repo, {"train": {"epoch": 3}})
    probe = (
        "import atexit, runpy, sys;"
        " atexit.register(lambda: print(sorted(m for m in ('tensorflow', 'mlflow', 'keras') if m in sys.modules)));"
        " runpy.run_path(sys.argv[1], run_name='__main__')"
    )
    for stage in ("crossvalidate", "train", "synthesize", "detector", "export", "evaluate"):
        result = run(repo, "python", "-c", probe, f"stages/{stage}.py", check=False, PYTHONPATH="src")
        assert result.returncode == 2, stage
        assert result.stderr.strip() == "error: params.yaml: train.epoch: unknown key; did you mean train.epochs?", stage
        assert result.stdout.strip() == "[]", f"{stage} imported {result.stdout.strip()} before checking params"


def test_the_benchmarks_run_without_the_test_extras():
    """README command 1 installs no pytest: bench/ must not need it (it shares mnist_pipeline.testing)."""
    probe = (
        "import runpy, sys; sys.modules['pytest'] = None; sys.path[:0] = ['bench'];"
        " import bench, serve, strong; from mnist_pipeline import testing;"
        " print(testing.MIRROR.is_dir(), callable(strong.speed), callable(serve.load))"
    )
    result = run(ROOT, sys.executable, "-c", probe)
    assert result.stdout.split() == ["True", "True", "True"]
