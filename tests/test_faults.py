"""Faults of the machine, made real: a full disk (a small tmpfs mounted in a mount namespace of the
command's own, gone with it), a file-size limit (RLIMIT_FSIZE: writes fail with EFBIG) and a
read-only file system. Each is answered in one line, a non-zero exit, every answer that does not
depend on the fault, and nothing half-written."""

from __future__ import annotations

import json
import resource
import signal
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from mnist_pipeline import mnist
from mnist_pipeline.testing import MIRROR, copy_repo, env_for


def on_tmpfs(mountpoint: Path, options: str, command: str) -> list[str]:
    """A shell command run with a tmpfs (`options`: size=64k, ro, ...) over `mountpoint`."""
    mountpoint.mkdir(parents=True, exist_ok=True)
    return ["unshare", "--mount", "sh", "-c", f'mount -t tmpfs -o {options} tmpfs "{mountpoint}" && {command}']


def lines(text: str) -> list[str]:
    return [line for line in text.splitlines() if line.strip()]


def test_predict_prints_every_answer_when_its_debug_images_fill_the_disk(tmp_path, tiny_model):
    N = 1000  # a batch of photos, as a user's directory holds them
    test = mnist.load_split(MIRROR, "t10k")
    images = tmp_path / "images"
    images.mkdir()
    for i in range(N):
        Image.fromarray(test.images[i, ..., 0]).save(images / f"{i:04d}.png")
    debug, kept = tmp_path / "debug", tmp_path / "kept"
    predict = f"{sys.executable} -m mnist_pipeline.cli predict --json --model {tiny_model} --debug-dir {debug} {images}"
    # 16 KiB hold some of the debug images; what was written is copied out before the tmpfs goes
    command = on_tmpfs(debug, "size=16k", f"{predict}; status=$?; cp -r {debug} {kept}; exit $status")
    result = subprocess.run(command, capture_output=True, text=True, timeout=300)
    assert result.returncode == 1
    answers = json.loads(result.stdout)
    assert len(answers) == N and all(a["digit"] in range(10) for a in answers)
    [warning] = lines(result.stderr)
    assert warning.startswith("mnist-pipeline: warning: ") and "debug images not written to" in warning
    assert "no space left on the device" in warning and "the answers above are complete" in warning
    written = sorted(kept.glob("*.png"))
    assert 0 < len(written) < N and f"{N - len(written)} of {N} debug images not written" in warning
    for png in written:  # every image that is there is whole
        with Image.open(png) as image:
            assert np.asarray(image).shape == (28, 28)


def test_predict_on_a_read_only_debug_directory(tmp_path, tiny_model):
    test = mnist.load_split(MIRROR, "t10k")
    Image.fromarray(test.images[0, ..., 0]).save(tmp_path / "seven.png")
    debug = tmp_path / "debug"
    predict = f"{sys.executable} -m mnist_pipeline.cli predict --model {tiny_model} --debug-dir {debug} {tmp_path / 'seven.png'}"
    result = subprocess.run(on_tmpfs(debug, "ro,size=16k", predict), capture_output=True, text=True, timeout=120)
    assert result.returncode == 1
    assert "seven.png" in result.stdout and "error" not in result.stdout, "the answer is printed"
    [warning] = lines(result.stderr)
    assert "1 of 1 debug images not written" in warning and "read-only file system" in warning


@pytest.fixture
def downloaded(tmp_path) -> Path:
    """A repo copy with the tiny params whose data/raw the download stage wrote."""
    repo = copy_repo(tmp_path / "repo")
    stage(repo, "download", check=True)
    return repo


def stage(repo: Path, name: str, check: bool = False, wrap: str | None = None, **env: str) -> subprocess.CompletedProcess:
    """`python stages/<name>.py` as dvc runs it; inside `wrap`, a shell command taking it as "$@"."""
    command = [sys.executable, f"stages/{name}.py"]
    if wrap:
        command = ["sh", "-c", wrap, "sh", *command]
    result = subprocess.run(command, cwd=repo, env=env_for(repo, PYTHONPATH="src", **env), capture_output=True, text=True, timeout=300)
    if check:
        assert result.returncode == 0, result.stderr
    return result


def assert_one_line(result: subprocess.CompletedProcess, *phrases: str) -> None:
    assert result.returncode == 1, result.stderr
    assert len(lines(result.stderr)) == 1, result.stderr
    [line] = lines(result.stderr)
    assert line.startswith("error: ") and all(p in line for p in phrases), line


def test_a_stage_on_a_full_disk_says_so_in_one_line_and_leaves_nothing_half_written(downloaded):
    prepared = downloaded / "data" / "prepared"
    prepared.mkdir(parents=True)
    # 200 KiB: less than the tiny params' training images (1,200 x 784 bytes)
    wrap = f'mount -t tmpfs -o size=200k tmpfs {prepared} && "$@"; status=$?; ls -A {prepared}; exit $status'
    result = stage(downloaded, "preprocess", wrap=f"exec unshare --mount sh -c '{wrap}' sh \"$@\"")
    assert_one_line(result, "cannot write data/prepared/train_images.npy: no space left on the device", "run the stage again")
    assert not [name for name in lines(result.stdout) if name.endswith(".npy")], "no half-written file left in data/prepared"
    raw = sorted(p.name for p in (downloaded / "data" / "raw").iterdir())
    assert len(raw) == 4, "the download's outputs are untouched"
    stage(downloaded, "preprocess", check=True)  # with room, the same stage just runs again
    assert (prepared / "train_images.npy").is_file()


def test_predict_under_a_file_size_limit_says_so_in_one_line(tmp_path, tiny_model):
    """Its answers redirected to a file that may not grow past 1,000 bytes (RLIMIT_FSIZE: EFBIG)."""
    test = mnist.load_split(MIRROR, "t10k")
    for i in range(50):
        Image.fromarray(test.images[i, ..., 0]).save(tmp_path / f"{i:02d}.png")

    def file_size_limit():
        signal.signal(signal.SIGXFSZ, signal.SIG_IGN)  # a write past the limit fails with EFBIG instead of killing
        resource.setrlimit(resource.RLIMIT_FSIZE, (1000, 1000))

    with (tmp_path / "answers.json").open("w") as out:
        result = subprocess.run(
            [
                sys.executable,
                "-m",
                "mnist_pipeline.cli",
                "predict",
                "--json",
                "--model",
                str(tiny_model),
                *map(str, sorted(tmp_path.glob("*.png"))),
            ],
            stdout=out,
            stderr=subprocess.PIPE,
            text=True,
            timeout=120,
            preexec_fn=file_size_limit,
        )
    assert result.returncode == 1
    [line] = lines(result.stderr)
    assert line == (
        "mnist-pipeline: error: cannot write the answers to standard output: "
        "file too large for the file system or this process's file-size limit"
    )


@pytest.mark.parametrize("options, reason", [("size=64k", "database or disk is full"), ("ro,size=64k", "unable to open database file")])
def test_an_mlflow_store_that_cannot_be_written_fails_the_stage_in_one_line(tmp_path, options, reason):
    """The store is checked first: the stage fails before it writes anything, DVC records nothing
    of it, and a rerun with a writable store does the work."""
    repo = copy_repo(tmp_path / "repo")
    store = tmp_path / "store"
    uri = f"sqlite:///{store}/mlflow.db"
    wrap = f'mount -t tmpfs -o {options} tmpfs {store} && exec "$@"'
    store.mkdir()
    result = stage(repo, "download", wrap=f"exec unshare --mount sh -c '{wrap}' sh \"$@\"", MLFLOW_TRACKING_URI=uri)
    assert_one_line(result, f"the MLflow store {uri} cannot be written", reason, "then run the stage again")
    assert not (repo / "data" / "raw").exists(), "nothing written before the store answered"
    stage(repo, "download", check=True)
    assert len(list((repo / "data" / "raw").iterdir())) == 4
