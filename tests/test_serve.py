"""`mnist-pipeline serve` over real HTTP on 127.0.0.1: the JSON API against `predict --json`, bad
input, concurrent clients, and the page driven in Debian's Chromium through Playwright."""

from __future__ import annotations

import base64
import hashlib
import io
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
import uuid
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
import pytest
from helpers import wait_until_answers
from PIL import Image
from playwright.sync_api import sync_playwright
from test_predict import png_declaring

from mnist_pipeline import mnist
from mnist_pipeline.testing import MIRROR, env_for, free_port

CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"


@pytest.fixture(scope="module")
def server(tiny_model):
    port = free_port()
    process = subprocess.Popen(
        ["mnist-pipeline", "serve", "--model", str(tiny_model), "--port", str(port)],
        env=env_for(tiny_model.parent),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    url = f"http://127.0.0.1:{port}"
    try:
        wait_until_answers(f"{url}/health", process, timeout=60)
        yield url
    finally:
        process.terminate()
        process.wait(timeout=30)
    assert "Traceback" not in process.stderr.read()


def post(url: str, body: bytes, content_type: str | None = "image/png") -> tuple[int, dict]:
    headers = {"Content-Type": content_type} if content_type else {}
    request = urllib.request.Request(f"{url}/predict", data=body, headers=headers, method="POST")
    try:
        with urllib.request.urlopen(request, timeout=30) as response:
            return response.status, json.loads(response.read())
    except urllib.error.HTTPError as error:
        return error.code, json.loads(error.read())


def multipart(field: str, filename: str | None, content: bytes) -> tuple[bytes, str]:
    boundary = uuid.uuid4().hex
    disposition = f'form-data; name="{field}"' + (f'; filename="{filename}"' if filename else "")
    body = (f"--{boundary}\r\nContent-Disposition: {disposition}\r\nContent-Type: application/octet-stream\r\n\r\n").encode()
    return body + content + f"\r\n--{boundary}--\r\n".encode(), f"multipart/form-data; boundary={boundary}"


def png(array: np.ndarray) -> bytes:
    buffer = io.BytesIO()
    Image.fromarray(array).save(buffer, "PNG")
    return buffer.getvalue()


@pytest.fixture(scope="module")
def digits(tmp_path_factory) -> list[Path]:
    """50 test digits as PNG files."""
    directory = tmp_path_factory.mktemp("digits")
    images = mnist.load_split(MIRROR, "t10k").images[:50, ..., 0]
    paths = []
    for i, image in enumerate(images):
        paths.append(directory / f"{i:02d}.png")
        paths[-1].write_bytes(png(image))
    return paths


def expected(paths: list[Path], model: Path) -> dict[str, dict]:
    result = subprocess.run(
        [sys.executable, "-m", "mnist_pipeline.cli", "predict", "--json", "--model", str(model), *map(str, paths)],
        capture_output=True,
        text=True,
        timeout=120,
        check=True,
    )
    return {Path(p["path"]).name: p for p in json.loads(result.stdout)}


def without_path(answer: dict) -> dict:
    return {k: v for k, v in answer.items() if k != "path"}


def test_health_names_the_model_and_its_hash(server, tiny_model):
    with urllib.request.urlopen(f"{server}/health", timeout=10) as response:
        health = json.loads(response.read())
    assert health["status"] == "ok" and health["model"] == str(tiny_model)
    assert health["sha256"] == hashlib.sha256(tiny_model.read_bytes()).hexdigest()
    assert health["dvc_lock"] is None, "a file git tracks, not a DVC output"


def test_health_names_the_dvc_output_a_pipelines_model_comes_from(tflite_model):
    from mnist_pipeline.serve import model_info

    lock = model_info(tflite_model)["dvc_lock"]
    assert lock["path"] == "models/export" and lock["md5"].endswith(".dir")


def test_the_server_imports_neither_tensorflow_nor_mlflow():
    probe = (
        "import sys, mnist_pipeline.serve, mnist_pipeline.cli;"
        " print(sorted(m for m in ('tensorflow', 'keras', 'mlflow') if m in sys.modules))"
    )
    result = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, timeout=60, check=True)
    assert result.stdout.strip() == "[]"


def test_raw_and_multipart_bodies_answer_what_predict_json_answers(server, digits, tiny_model):
    paths = digits
    answers = expected(paths[:10], tiny_model)
    for path in paths[:10]:
        status, raw = post(server, path.read_bytes())
        assert status == 200 and without_path(raw) == without_path(answers[path.name])
        body, kind = multipart("file", path.name, path.read_bytes())
        status, form = post(server, body, kind)
        assert status == 200 and form == answers[path.name] | {"path": path.name}


@pytest.mark.parametrize(
    "name, body, content_type, status, message",
    [
        ("not an image", b"this is not an image", "image/png", 422, "not an image Pillow can read"),
        ("truncated", None, "image/png", 422, "corrupt or truncated image"),
        ("empty body", b"", "image/png", 400, "empty body: send one image"),
        ("blank page", None, "image/png", 422, "no digit found (the image is blank)"),
        ("pixel bomb", png_declaring(30_000, 30_000), "image/png", 413, "900,000,000 pixels is over the limit of 40,000,000"),
        ("wrong content type", b"x", "text/plain", 415, "Content-Type text/plain is not allowed"),
        ("no content type", b"x", None, 415, "Content-Type application/x-www-form-urlencoded is not allowed"),
        ("multipart without a file", None, "form", 400, "multipart body without a file"),
        ("malformed multipart", b"--nope\r\n\r\n", "multipart/form-data; boundary=xyz", 400, "malformed multipart body"),
    ],
)
def test_bad_input_gets_a_4xx_with_one_line_and_the_next_request_works(server, digits, name, body, content_type, status, message):
    paths = digits
    good = paths[0].read_bytes()
    if name == "truncated":
        body = good[:100]
    elif name == "blank page":
        body = png(np.full((64, 64), 255, np.uint8))
    elif name == "multipart without a file":
        body, content_type = multipart("comment", None, b"just text")
    got, answer = post(server, body, content_type)
    assert got == status and set(answer) == {"error"} and answer["error"].startswith(message), answer
    assert "\n" not in answer["error"]
    assert post(server, good)[0] == 200, "the server still answers"


def test_a_body_declared_too_large_is_refused_before_it_is_sent(server, digits):
    """The answer comes from the headers alone: the client has sent none of the 9 MiB it announced."""
    host, port = server.removeprefix("http://").split(":")
    with socket.create_connection((host, int(port)), timeout=30) as connection:
        connection.sendall(
            f"POST /predict HTTP/1.1\r\nHost: {host}\r\nContent-Type: image/png\r\nContent-Length: {9 * 1024 * 1024}\r\n\r\n".encode()
        )
        response = b""
        while b"}" not in response:
            chunk = connection.recv(4096)
            assert chunk, f"connection closed without an answer: {response!r}"
            response += chunk
    head, body = response.split(b"\r\n\r\n", 1)
    assert head.startswith(b"HTTP/1.1 413 ")
    assert json.loads(body) == {"error": "body of 9,437,184 bytes is over the limit of 8,388,608"}
    assert post(server, digits[0].read_bytes())[0] == 200, "the server still answers"


def test_16_concurrent_clients_get_1000_right_answers(server, digits, tiny_model):
    paths = digits
    answers = expected(paths, tiny_model)
    bodies = [(p.name, p.read_bytes()) for p in paths]

    def one(i: int) -> bool:
        name, body = bodies[i % len(bodies)]
        status, answer = post(server, body)
        return status == 200 and without_path(answer) == without_path(answers[name])

    with ThreadPoolExecutor(16) as pool:
        results = list(pool.map(one, range(1000)))
    assert all(results), f"{results.count(False)} of 1000 requests failed or differed"


def draw(page, strokes: list[list[tuple[float, float]]]) -> None:
    """Mouse strokes on the page's canvas, in fractions of its size."""
    box = page.locator("#pad").bounding_box()
    for stroke in strokes:
        points = [(box["x"] + x * box["width"], box["y"] + y * box["height"]) for x, y in stroke]
        page.mouse.move(*points[0])
        page.mouse.down()
        for point in points[1:]:
            page.mouse.move(*point, steps=8)
        page.mouse.up()


def shown_digit(page) -> str:
    page.wait_for_selector("#answer:not([hidden])")
    page.wait_for_function("document.getElementById('status').textContent === ''")
    return page.locator("#digit").inner_text()


def page_text(answer: dict) -> str:
    """What the page shows in large type for an API answer."""
    if answer["is_digit"] is False:
        return "Not a digit"
    if answer["unsure_between"]:
        return "{} or {}".format(*answer["unsure_between"])
    return str(answer["digit"])


def canvas_png(page) -> bytes:
    return base64.b64decode(page.evaluate("document.getElementById('pad').toDataURL('image/png')").split(",", 1)[1])


@pytest.mark.slow
def test_the_page_reads_digits_drawn_with_the_mouse_and_uploaded_photos(server, tmp_path, digits):
    strokes = {
        "1": [[(0.5, 0.15), (0.5, 0.85)]],
        "7": [[(0.25, 0.2), (0.75, 0.2), (0.45, 0.85)]],
        "0": [[(0.5, 0.15), (0.3, 0.3), (0.28, 0.6), (0.45, 0.85), (0.65, 0.75), (0.72, 0.45), (0.62, 0.2), (0.5, 0.15)]],
    }
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, args=["--no-sandbox", "--disable-gpu", "--disable-background-networking"])
        page = browser.new_page(viewport={"width": 900, "height": 560})
        page.route("**/*", lambda route: route.continue_() if route.request.url.startswith(server) else route.abort())
        page.goto(server)
        assert page.title() == "mnist-pipeline: draw a digit"
        for digit, lines in strokes.items():
            page.click("#clear")
            draw(page, lines)
            # Guesses made while the stroke went on may still be arriving: wait for the one of the whole drawing.
            status, answer = post(server, canvas_png(page))
            deadline = time.monotonic() + 20
            while (shown := shown_digit(page)) != page_text(answer) and time.monotonic() < deadline:
                time.sleep(0.2)
            assert status == 200 and shown == page_text(answer), "the page shows what the API answers for its drawing"
            assert shown == digit, f"the drawn {digit} is read as one"
            assert len(page.locator("#top li").all()) == 3
            assert page.locator("#seen").evaluate("img => img.naturalWidth") == 28
        shown_digit(page)  # the last answer is in
        page.screenshot(path=str(tmp_path / "page.png"))
        if os.environ.get("MNIST_PIPELINE_SCREENSHOT"):
            shutil.copy(tmp_path / "page.png", os.environ["MNIST_PIPELINE_SCREENSHOT"])

        photo = digits[3]
        page.set_input_files("#file", str(photo))
        page.wait_for_function("document.getElementById('status').textContent === ''")
        assert page.locator("#digit").inner_text() == page_text(post(server, photo.read_bytes())[1])

        page.set_input_files("#file", {"name": "notes.png", "mimeType": "image/png", "buffer": b"not an image"})
        page.wait_for_selector("#status.error")
        assert page.locator("#status").inner_text() == "Could not read a digit: not an image Pillow can read"

        page.click("#clear")  # a filled square: not a digit, with the closest guess in small type
        draw(page, [[(0.3 + 0.4 * x / 20, y) for y in (0.3, 0.7)] for x in range(21)])
        status, answer = post(server, canvas_png(page))
        closest = f"closest: {answer['digit']} ("
        deadline = time.monotonic() + 20  # as above: wait for the guess of the whole square
        while (
            (shown := shown_digit(page)) != "Not a digit" or not page.locator("#confidence").inner_text().startswith(closest)
        ) and time.monotonic() < deadline:
            time.sleep(0.2)
        assert status == 200 and answer["is_digit"] is False and shown == "Not a digit", answer
        assert page.locator("#confidence").inner_text().startswith(closest)
        assert float(page.locator("#digit").evaluate("e => parseFloat(getComputedStyle(e).fontSize)")) < 40, "the verdict, not a big digit"
        browser.close()


@pytest.mark.slow
def test_mlflow_serves_the_registered_champion(pipeline, tflite_model, digits):
    """MLflow's own server on the model that evaluate registered as mnist-cnn@champion."""
    port = free_port()
    env = env_for(pipeline, MLFLOW_TRACKING_URI=f"sqlite:///{pipeline / 'mlflow.db'}")
    process = subprocess.Popen(
        [
            "mlflow",
            "models",
            "serve",
            "-m",
            "models:/mnist-cnn@champion",
            "--env-manager",
            "local",
            "--host",
            "127.0.0.1",
            "--port",
            str(port),
        ],
        cwd=pipeline,
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        start_new_session=True,
    )
    url = f"http://127.0.0.1:{port}"
    try:
        wait_until_answers(f"{url}/ping", process, timeout=180)
        images = mnist.load_split(MIRROR, "t10k").images[:20].astype("float32")
        request = urllib.request.Request(
            f"{url}/invocations", data=json.dumps({"inputs": images.tolist()}).encode(), headers={"Content-Type": "application/json"}
        )
        with urllib.request.urlopen(request, timeout=60) as response:
            predictions = json.loads(response.read())["predictions"]
    finally:
        os.killpg(process.pid, signal.SIGTERM)
        process.wait(timeout=30)
    from mnist_pipeline.loading import KerasModel, LiteRTModel

    assert set(predictions) == {"probabilities", "digit_score"}, "the probabilities and the verdict, as predict has them"
    assert np.array(predictions["probabilities"]).shape == (20, 10) and np.array(predictions["digit_score"]).shape == (20, 2)
    # the champion is the served ensemble: its Keras model exactly, its int8 TFLite file in every answer
    probabilities, scores = KerasModel(pipeline / "models" / "export" / "ensemble.keras").read(images)
    assert np.abs(np.array(predictions["probabilities"]) - probabilities).max() < 1e-4
    assert np.abs(np.array(predictions["digit_score"])[:, 1] - scores).max() < 1e-4
    probabilities, scores = LiteRTModel(tflite_model).read(images)
    assert (np.array(predictions["probabilities"]).argmax(1) == probabilities.argmax(1)).all()
    assert ((np.array(predictions["digit_score"])[:, 1] >= 0.5) == (scores >= 0.5)).all()


@pytest.mark.slow
def test_mnist_pipeline_ui_opens_on_the_stages_runs(pipeline):
    """A fresh browser at the address `mnist-pipeline ui` prints sees the pipeline's runs, not the
    GenAI overview the experiment's page opens on."""
    port = free_port()
    process = subprocess.Popen(
        ["mnist-pipeline", "ui", "--port", str(port)],
        cwd=pipeline,
        env=env_for(pipeline),
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
        text=True,
        start_new_session=True,
    )
    try:
        line = process.stdout.readline()
        assert line.startswith("MLflow UI, the pipeline's runs: http://127.0.0.1:"), line
        url = line.split(": ", 1)[1].split()[0]
        assert url.endswith("/runs?workflowType=machine_learning")
        with sync_playwright() as p:
            browser = p.chromium.launch(executable_path=CHROMIUM, args=["--no-sandbox", "--disable-gpu", "--disable-background-networking"])
            page = browser.new_page(viewport={"width": 1400, "height": 900})
            page.route("**/*", lambda route: route.continue_() if route.request.url.startswith("http://127.0.0.1") else route.abort())
            page.goto(url)
            for stage in ("crossvalidate", "train", "detector", "evaluate"):
                page.get_by_text(stage, exact=True).first.wait_for(timeout=60_000)
            browser.close()
    finally:
        os.killpg(process.pid, signal.SIGTERM)
        process.wait(timeout=30)
