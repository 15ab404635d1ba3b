"""`mnist-pipeline serve`: a draw-a-digit page and a JSON API over an exported model. No TensorFlow.

GET  /          the page (static files in mnist_pipeline/static, no CDN)
POST /predict   one image, as the raw body or a multipart file field; answers predict --json's object
GET  /health    the model's path, its SHA-256 and, inside a DVC repo, the dvc.lock hash of its directory
"""

from __future__ import annotations

import base64
import hashlib
import io
import os
import threading
from pathlib import Path

import numpy as np
import yaml
from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse
from fastapi.staticfiles import StaticFiles
from PIL import Image
from starlette.concurrency import run_in_threadpool
from starlette.formparsers import MultiPartException, MultiPartParser

from . import imaging
from .predict import Prediction, load_served_model

MAX_BYTES = 8 * 1024 * 1024  # a large phone photo; bigger bodies are refused before they are read
STATIC = Path(__file__).parent / "static"
SERVE_MODEL_ENV = "MNIST_PIPELINE_MODEL"  # how `serve --workers N` names the model to each worker process


class HTTPProblem(Exception):
    def __init__(self, status: int, message: str):
        self.status, self.message = status, message


def model_info(path: Path) -> dict:
    """The model's path and SHA-256, and the dvc.lock hash of the output that holds it, if any."""
    info = {"model": str(path), "sha256": hashlib.sha256(path.read_bytes()).hexdigest(), "dvc_lock": None}
    resolved = path.resolve()
    for root in resolved.parents:
        lock = root / "dvc.lock"
        if lock.is_file():
            for stage in (yaml.safe_load(lock.read_text()) or {}).get("stages", {}).values():
                for out in stage.get("outs", []):
                    if resolved.is_relative_to(root / out["path"]):
                        info["dvc_lock"] = {"path": out["path"], "md5": out.get("md5")}
            break
    return info


def create_app(model_path: Path | str) -> FastAPI:
    """The app over the .tflite model at `model_path`, loaded once."""
    model_path = Path(model_path)
    model = load_served_model(model_path)
    info = model_info(model_path)
    lock = threading.Lock()  # one LiteRT interpreter: one invocation at a time

    def answer(data: bytes, name: str, seen: bool) -> dict:
        try:
            array = imaging.to_mnist(imaging.open_image(io.BytesIO(data)))
        except imaging.TooLarge as exc:
            raise HTTPProblem(413, str(exc)) from None
        except imaging.ImageError as exc:
            raise HTTPProblem(422, str(exc)) from None
        except Exception as exc:  # a decoder's own failure on a crafted file is still the request's fault
            raise HTTPProblem(422, f"cannot read ({type(exc).__name__}: {exc})") from None
        with lock:
            probabilities, scores = model.read(array[np.newaxis, ..., np.newaxis])
        score = None if scores is None else round(float(scores[0]), 6)
        result = Prediction(name, [round(float(p), 6) for p in probabilities[0]], score).as_json()
        if seen:  # the 28x28 image the model saw, for the page
            buffer = io.BytesIO()
            Image.fromarray(array).save(buffer, "PNG")
            result["seen"] = "data:image/png;base64," + base64.b64encode(buffer.getvalue()).decode()
        return result

    app = FastAPI(title="mnist-pipeline", summary=__doc__.splitlines()[0], docs_url=None, redoc_url=None)

    @app.exception_handler(HTTPProblem)
    async def problem(_, exc: HTTPProblem) -> JSONResponse:
        return JSONResponse({"error": exc.message}, status_code=exc.status)

    @app.get("/health")
    def health() -> dict:
        return {"status": "ok", **info}

    @app.post("/predict")
    async def predict(request: Request, seen: bool = False) -> dict:
        """One image: the raw body (Content-Type image/* or application/octet-stream) or the first
        file of a multipart/form-data body. `?seen=true` adds the 28x28 image the model saw."""
        data = await _read_limited(request)
        kind = request.headers.get("content-type", "").split(";")[0].strip().lower()
        name = "request"
        if kind == "multipart/form-data":
            data, name = await _first_file(request, data)
        elif not (kind.startswith("image/") or kind == "application/octet-stream"):
            raise HTTPProblem(
                415, f"Content-Type {kind or '(none)'} is not allowed; send image/*, application/octet-stream or multipart/form-data"
            )
        if not data:
            raise HTTPProblem(400, "empty body: send one image")
        return await run_in_threadpool(answer, data, name, seen)

    app.mount("/", StaticFiles(directory=STATIC, html=True), name="page")
    return app


async def _read_limited(request: Request) -> bytes:
    """The body, refused with 413 as soon as it is known to exceed MAX_BYTES (from Content-Length,
    or while streaming one that does not say)."""
    declared = request.headers.get("content-length")
    if declared and declared.isdigit() and int(declared) > MAX_BYTES:
        raise HTTPProblem(413, f"body of {int(declared):,} bytes is over the limit of {MAX_BYTES:,}")
    chunks, size = [], 0
    async for chunk in request.stream():
        size += len(chunk)
        if size > MAX_BYTES:
            raise HTTPProblem(413, f"body is over the limit of {MAX_BYTES:,} bytes")
        chunks.append(chunk)
    return b"".join(chunks)


async def _first_file(request: Request, body: bytes) -> tuple[bytes, str]:
    async def once():
        yield body

    try:
        form = await MultiPartParser(request.headers, once(), max_files=1, max_fields=10).parse()
    except MultiPartException as exc:
        raise HTTPProblem(400, f"malformed multipart body ({exc.message})") from None
    for value in form.values():
        if hasattr(value, "read"):
            return await value.read(), value.filename or "upload"
    raise HTTPProblem(400, "multipart body without a file: send the image as a file field")


def app_from_environment() -> FastAPI:
    """For uvicorn's worker processes (`serve --workers N`): the model named by $MNIST_PIPELINE_MODEL."""
    return create_app(os.environ[SERVE_MODEL_ENV])
