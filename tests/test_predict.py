"""`mnist-pipeline predict` on real image files of every kind, and the imaging it relies on."""

from __future__ import annotations

import json
import struct
import subprocess
import sys
import zlib
from pathlib import Path

import numpy as np
import pytest
from PIL import Image, ImageDraw

from mnist_pipeline import imaging, mnist
from mnist_pipeline.loading import LiteRTModel
from mnist_pipeline.predict import PARALLEL_FROM, Prediction
from mnist_pipeline.testing import MIRROR

CLI = [sys.executable, "-m", "mnist_pipeline.cli"]


@pytest.fixture(scope="module")
def test_digits():
    test = mnist.load_split(MIRROR, "t10k")
    return test.images[:200, ..., 0], test.labels[:200]


def predict(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([*CLI, "predict", *args], capture_output=True, text=True, timeout=120)


def test_an_mnist_digit_passes_through_unchanged_in_effect(test_digits):
    images, _ = test_digits
    passed = np.stack([imaging.to_mnist(Image.fromarray(d)) for d in images])
    assert np.abs(passed.astype(int) - images).mean() < 3


def test_photo_like_images_come_back_close_to_the_digit(test_digits):
    images, _ = test_digits
    rng = np.random.default_rng(0)
    correlations = []
    for digit in images[:50]:
        photo = imaging.photo_like(digit, rng)
        assert photo.size[0] >= 56 and np.asarray(photo.convert("L")).mean() > 120  # dark ink on light paper
        restored = imaging.to_mnist(photo).astype(float).ravel()
        correlations.append(np.corrcoef(restored, digit.astype(float).ravel())[0, 1])
        naive = imaging.naive(photo).astype(float).ravel()
        assert np.corrcoef(naive, digit.astype(float).ravel())[0, 1] < correlations[-1]
    assert np.median(correlations) > 0.75


def write_formats(directory: Path, digit: np.ndarray) -> list[str]:
    """The same digit as dark ink on paper, in every format and mode a user might have."""
    paper = Image.fromarray(255 - np.kron(digit, np.ones((4, 4), np.uint8)))  # 112x112
    rgb = Image.merge("RGB", [paper.point(lambda v: v * 0.9 + 20)] * 3)
    files = {
        "gray.png": paper,
        "rgb.jpg": rgb,
        "rgb.bmp": rgb,
        "palette.gif": rgb.convert("P"),
        "gray.tiff": paper,
        "rgb.webp": rgb,
        "sixteen.png": Image.fromarray(np.asarray(paper, np.uint16) * 257),
    }
    for name, image in files.items():
        image.save(directory / name)
    ink = np.kron(digit, np.ones((4, 4), np.uint8))
    rgba = np.zeros((112, 112, 4), np.uint8)
    rgba[..., 3] = ink  # black ink, transparent background
    Image.fromarray(rgba, "RGBA").save(directory / "transparent.png")
    Image.fromarray(digit).save(directory / "mnist.png")  # white on black, 28x28
    return [*files, "transparent.png", "mnist.png"]


def test_every_format_and_mode_gives_the_same_digit(tmp_path, tiny_model, test_digits):
    images, labels = test_digits
    model = LiteRTModel(tiny_model)
    index = int(np.flatnonzero(model.predict(images).argmax(1) == labels)[0])  # a digit the model gets right
    names = write_formats(tmp_path, images[index])
    assert Image.open(tmp_path / "sixteen.png").mode.startswith("I")
    assert Image.open(tmp_path / "palette.gif").mode == "P"
    result = predict("--json", "--model", str(tiny_model), str(tmp_path))
    assert result.returncode == 0, result.stderr
    predictions = json.loads(result.stdout)
    assert sorted(Path(p["path"]).name for p in predictions) == sorted(names)
    for p in predictions:
        assert set(p) == {"path", "answer", "is_digit", "digit_score", "digit", "confidence", "unsure_between", "probabilities"}
        assert p["is_digit"] is True and p["digit_score"] >= 0.5
        assert len(p["probabilities"]) == 10 and sum(p["probabilities"]) == pytest.approx(1, abs=1e-3)
        assert p["confidence"] == max(p["probabilities"]) and p["digit"] == int(np.argmax(p["probabilities"]))
        assert p["digit"] == labels[index], p["path"]


def test_table_output_and_debug_images(tmp_path, tiny_model, test_digits):
    images, labels = test_digits
    Image.fromarray(images[0]).save(tmp_path / "one.png")
    result = predict("--top-k", "2", "--model", str(tiny_model), "--debug-dir", str(tmp_path / "debug"), str(tmp_path / "one.png"))
    assert result.returncode == 0
    header, row = result.stdout.strip().splitlines()
    assert header.split()[:4] == ["file", "answer", "confidence", "top"]
    (answer,) = json.loads(predict("--json", "--model", str(tiny_model), str(tmp_path / "one.png")).stdout)
    assert row.split()[:2] == [str(tmp_path / "one.png"), str(answer["digit"])] and len(row.split()) == 5
    (debug,) = (tmp_path / "debug").iterdir()
    assert np.asarray(Image.open(debug)).shape == (28, 28)


def test_predictions_match_the_evaluated_model_on_raw_mnist_files(tmp_path, tiny_model, test_digits):
    images, _ = test_digits
    for i, digit in enumerate(images[:100]):
        Image.fromarray(digit).save(tmp_path / f"{i:03d}.png")
    result = predict("--json", "--model", str(tiny_model), str(tmp_path))
    from_files = [p["digit"] for p in json.loads(result.stdout)]
    direct = LiteRTModel(tiny_model).predict(images[:100]).argmax(1)
    assert np.mean(np.array(from_files) == direct) >= 0.97


def test_bad_images_fail_one_line_each_and_the_rest_are_predicted(tmp_path, tiny_model, test_digits):
    images, _ = test_digits
    Image.fromarray(images[0]).save(tmp_path / "good.png")
    (tmp_path / "notes.png").write_text("this is not an image")
    Image.fromarray(images[1]).save(tmp_path / "full.png")
    (tmp_path / "truncated.png").write_bytes((tmp_path / "full.png").read_bytes()[:200])
    (tmp_path / "full.png").unlink()
    Image.new("L", (64, 64), 255).save(tmp_path / "blank.png")
    Image.new("1", (8000, 6000)).save(tmp_path / "bomb.png")
    (tmp_path / "hostile.png").write_bytes(png_declaring(30_000, 30_000))
    result = predict("--json", "--model", str(tiny_model), str(tmp_path), str(tmp_path / "missing.png"))
    assert result.returncode == 1
    by_name = {Path(p["path"]).name: p for p in json.loads(result.stdout)}
    assert by_name["good.png"]["digit"] in range(10)
    assert by_name["notes.png"]["error"] == "not an image Pillow can read"
    assert by_name["truncated.png"]["error"].startswith("corrupt or truncated image")
    assert by_name["blank.png"]["error"] == "no digit found (the image is blank)"
    assert by_name["bomb.png"]["error"] == "8000x6000 pixels is over the limit of 40,000,000"
    assert by_name["hostile.png"]["error"] == "900,000,000 pixels is over the limit of 40,000,000"
    assert by_name["missing.png"]["error"].startswith("cannot open")
    assert len(result.stderr.strip().splitlines()) == 6 and "Traceback" not in result.stderr


def png_declaring(width: int, height: int) -> bytes:
    """A PNG of a few hundred bytes whose header declares width x height 1-bit pixels: what Pillow
    calls a decompression bomb, refused by Image.open itself past twice its pixel limit."""

    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))

    rows = zlib.compress(b"".join(b"\x00" + bytes(width // 8) for _ in range(100)), 9)
    header = struct.pack(">IIBBBBB", width, height, 1, 0, 0, 0, 0)
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"IDAT", rows) + chunk(b"IEND", b"")


def test_a_hostile_image_in_a_large_batch_costs_only_its_own_answer(tmp_path, tiny_model, test_digits):
    """Past PARALLEL_FROM images the batch is decoded in a process pool: one file must not sink it."""
    images, _ = test_digits
    for i, digit in enumerate(images):
        Image.fromarray(digit).save(tmp_path / f"{i:03d}.png")
    (tmp_path / "hostile.png").write_bytes(png_declaring(30_000, 30_000))
    frames = [Image.fromarray(255 - np.kron(images[0], np.ones((4, 4), np.uint8))), Image.new("L", (112, 112), 255)]
    frames[0].save(tmp_path / "animated.gif", save_all=True, append_images=frames[1:])
    result = predict("--json", "--model", str(tiny_model), str(tmp_path))
    assert result.returncode == 1 and "Traceback" not in result.stderr
    by_name = {Path(p["path"]).name: p for p in json.loads(result.stdout)}
    assert len(by_name) == len(images) + 2 >= PARALLEL_FROM
    assert by_name["hostile.png"]["error"] == "900,000,000 pixels is over the limit of 40,000,000"
    assert "digit" in by_name["animated.gif"], "a multi-frame image is read from its first frame"
    assert sum("digit" in p for p in by_name.values()) == len(images) + 1


def not_digits(directory: Path) -> list[str]:
    """Images no model should read as a digit: a filled square, a drawn grid, a page of text."""
    square = Image.new("L", (200, 200), 255)
    ImageDraw.Draw(square).rectangle([40, 40, 160, 160], fill=0)
    grid = Image.new("L", (200, 200), 255)
    for x in range(30, 180, 30):
        ImageDraw.Draw(grid).line([(x, 20), (x, 180)], fill=0, width=6)
        ImageDraw.Draw(grid).line([(20, x), (180, x)], fill=0, width=6)
    square.save(directory / "square.png")
    grid.save(directory / "grid.png")
    return ["square.png", "grid.png"]


def test_an_image_that_is_not_a_digit_is_answered_as_such(tmp_path, tiny_model, test_digits):
    """The verdict is an answer, not an error: exit 0, `is_digit: false` with the closest digit,
    and the table says so in words."""
    images, labels = test_digits
    model = LiteRTModel(tiny_model)
    probabilities, _ = model.read(images)
    index = int(np.flatnonzero((probabilities.argmax(1) == labels) & (probabilities.max(1) > 0.9))[0])
    Image.fromarray(images[index]).save(tmp_path / "digit.png")
    names = not_digits(tmp_path)
    result = predict("--json", "--model", str(tiny_model), str(tmp_path))
    assert result.returncode == 0, result.stderr
    by_name = {Path(p["path"]).name: p for p in json.loads(result.stdout)}
    assert by_name["digit.png"]["is_digit"] is True and by_name["digit.png"]["digit"] == labels[index]
    for name in names:
        assert by_name[name]["is_digit"] is False and by_name[name]["digit_score"] < 0.5, by_name[name]
        assert by_name[name]["digit"] in range(10), "the closest digit still comes with the verdict"
    table = predict("--model", str(tiny_model), str(tmp_path)).stdout
    rows = {Path(line.split()[0]).name: line for line in table.strip().splitlines()[1:]}
    for name in names:
        assert f"not a digit (closest: {by_name[name]['digit']})" in rows[name]
    assert rows["digit.png"].split()[1] == str(labels[index])


def test_two_close_digits_are_an_unsure_answer():
    sure = Prediction("a.png", [0.0] * 4 + [0.97] + [0.0] * 4 + [0.03], digit_score=0.9)
    close = Prediction("b.png", [0.0] * 4 + [0.55] + [0.0] * 4 + [0.45], digit_score=0.9)
    refused = Prediction("c.png", [0.0] * 4 + [0.55] + [0.0] * 4 + [0.45], digit_score=0.1)
    assert (sure.answer, sure.as_json()["unsure_between"]) == ("4", None)
    assert (close.answer, close.as_json()["unsure_between"]) == ("unsure: 4 or 9", [4, 9])
    assert refused.answer == "not a digit (closest: 4)" and refused.as_json()["is_digit"] is False


def test_thin_strokes_under_uneven_light_are_read_and_blank_pages_are_not(test_digits):
    images, _ = test_digits
    rng = np.random.default_rng(3)
    restored = []
    for digit in images[:100]:
        photo = imaging.photo_like(digit, rng, thin_pen=True)
        gray = np.asarray(photo.convert("L"), float)
        assert gray.shape[0] >= 100 and np.ptp(np.percentile(gray, [5, 95])) > 15, "shaded paper, a small digit"
        restored.append(imaging.to_mnist(photo))  # refused before: "no digit found (too little contrast)"
    correlations = [np.corrcoef(r.ravel().astype(float), d.ravel().astype(float))[0, 1] for r, d in zip(restored, images, strict=False)]
    assert np.median(correlations) > 0.5, "a thinner stroke, but the same digit in the same place"
    noise = np.random.default_rng(0)
    for empty, reason in [
        (Image.new("L", (64, 64), 255), "no digit found (the image is blank)"),
        (Image.new("RGB", (200, 150), (120, 80, 200)), "no digit found (the image is blank)"),
        (Image.fromarray(noise.integers(0, 256, (300, 300), dtype=np.uint8)), "no digit found (too little contrast)"),
        (Image.fromarray(np.clip(noise.normal(200, 10, (300, 300)), 0, 255).astype(np.uint8)), "no digit found (too little contrast)"),
        (Image.fromarray(np.tile(np.linspace(120, 230, 400), (300, 1)).astype(np.uint8)), "no digit found (too little contrast)"),
    ]:
        with pytest.raises(imaging.ImageError) as refused:
            imaging.to_mnist(empty)
        assert str(refused.value) == reason


def test_thin_and_thick_ink_comes_back_at_mnists_stroke_width(test_digits):
    """A digit written with a hairline pen or a marker is redrawn at MNIST's stroke width; the
    digit stays where it was, and an MNIST digit is left as it is."""
    from scipy import ndimage
    from skimage.morphology import skeletonize

    images, _ = test_digits
    low, _, high = imaging.MNIST_STROKE

    def in_box(ink: np.ndarray) -> float:  # stroke width in pixels of the 20 px box
        rows, cols = np.nonzero(ink)
        return imaging.stroke_width(ink) * imaging.BOX / max(np.ptp(rows) + 1, np.ptp(cols) + 1)

    correlations = {"hairline": [], "marker": []}
    for digit in images[:20]:
        big = np.pad(np.asarray(Image.fromarray(digit).resize((280, 280), Image.Resampling.BICUBIC)) > 128, 140)
        marker = big
        while in_box(marker) <= high + 0.5:
            marker = ndimage.binary_dilation(marker, iterations=5)
        for kind, ink in (("hairline", skeletonize(big)), ("marker", marker)):
            assert not low <= in_box(ink) <= high, "the test's ink is far from MNIST's width"
            seen = imaging.to_mnist(Image.fromarray(np.where(ink, 0, 255).astype(np.uint8)))  # dark ink on white paper
            assert low <= imaging.box_stroke_width(seen) <= high and seen.max() > 200, "MNIST's width, at full strength"
            correlations[kind].append(np.corrcoef(seen.ravel().astype(float), digit.ravel().astype(float))[0, 1])
    assert np.median(correlations["hairline"]) > 0.75 and np.median(correlations["marker"]) > 0.6, correlations
    assert all(low <= imaging.box_stroke_width(d) <= high for d in images[:50])


def test_the_final_model_predicts_through_the_cli(tmp_path, pipeline, tiny_model, test_digits):
    """The other export than the default (export.serve: ensemble); the committed tiny model the
    fast tier predicts with is one of these, with the inputs and outputs export writes today."""
    images, labels = test_digits
    for i, digit in enumerate(images[:20]):
        Image.fromarray(digit).save(tmp_path / f"{i:02d}.png")
    final = pipeline / "models" / "export" / "final.tflite"
    result = predict("--json", "--model", str(final), str(tmp_path))
    assert result.returncode == 0, result.stderr
    direct = LiteRTModel(final).predict(images[:20]).argmax(1)
    assert [p["digit"] for p in json.loads(result.stdout)] == direct.tolist()

    def signature(path: Path) -> list:
        interpreter = LiteRTModel(path).interpreter
        return sorted(
            (d["name"], tuple(d["shape"]), str(d["dtype"])) for d in (*interpreter.get_input_details(), *interpreter.get_output_details())
        )

    assert signature(tiny_model) == signature(final)


@pytest.mark.parametrize(
    "args, message",
    [
        (["--model", "model.h5"], "unknown model type .h5; allowed: .tflite, .keras"),
        (["--model", "missing.tflite"], "missing.tflite: no such file"),
        (["--top-k", "11"], "invalid choice"),
    ],
)
def test_bad_usage_exits_2(tmp_path, args, message, test_digits):
    Image.fromarray(test_digits[0][0]).save(tmp_path / "one.png")
    result = predict(*args, str(tmp_path / "one.png"))
    assert result.returncode == 2 and message in result.stderr and "Traceback" not in result.stderr


def test_a_keras_model_gives_the_same_answers(tmp_path, pipeline, tflite_model, test_digits):
    images, _ = test_digits
    for i, digit in enumerate(images[:20]):
        Image.fromarray(digit).save(tmp_path / f"{i:02d}.png")
    keras_run = json.loads(predict("--json", "--model", str(pipeline / "models" / "export" / "ensemble.keras"), str(tmp_path)).stdout)
    tflite_run = json.loads(predict("--json", "--model", str(tflite_model), str(tmp_path)).stdout)
    assert [p["digit"] for p in keras_run] == [p["digit"] for p in tflite_run]
