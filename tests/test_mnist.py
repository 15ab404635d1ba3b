"""Download from mirrors (a directory, and real HTTP servers on 127.0.0.1 that misbehave), and IDX parsing."""

from __future__ import annotations

import gzip
import socket
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from mnist_pipeline import mnist
from mnist_pipeline.testing import MIRROR, copy_repo, run

LABELS = "train-labels-idx1-ubyte.gz"


class Handler(BaseHTTPRequestHandler):
    """/<fault>/<file>: 'ok' serves the mirror; the others fail in one particular way."""

    def do_GET(self):
        fault, _, name = self.path.strip("/").partition("/")
        body = (MIRROR / name).read_bytes() if (MIRROR / name).is_file() else b""
        if fault == "ok" and body:
            self._send(200, body)
        elif fault == "html":
            self._send(200, b"<html><body>Service unavailable</body></html>", "text/html")
        elif fault == "truncated":
            self._send(200, body[: len(body) // 2])
        elif fault == "corrupt":
            self._send(200, gzip.compress(b"\0" * 1000))
        elif fault == "stall":
            self.send_response(200)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            time.sleep(5)
        elif fault == "500":
            self._send(500, b"oops")
        else:
            self._send(404, b"not found")

    def _send(self, status, body, content_type="application/octet-stream"):
        self.send_response(status)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args):
        pass


@pytest.fixture
def server():
    httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    httpd.daemon_threads = True
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{httpd.server_address[1]}"
    httpd.shutdown()
    httpd.server_close()


@pytest.fixture
def closed_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return f"http://127.0.0.1:{s.getsockname()[1]}"


def test_download_from_a_directory_mirror_verifies_every_file(tmp_path, monkeypatch):
    monkeypatch.setenv("MNIST_MIRROR", str(MIRROR))
    mnist.download(tmp_path / "raw", mirrors=[], timeout=5)
    assert sorted(p.name for p in (tmp_path / "raw").iterdir()) == sorted(f"{n}.gz" for n in mnist.FILES)
    train = mnist.load_split(tmp_path / "raw", "train")
    assert train.images.shape == (60_000, 28, 28, 1)
    assert np.bincount(train.labels).tolist() == [5923, 6742, 5958, 6131, 5842, 5421, 5918, 6265, 5851, 5949]


def test_each_faulty_source_falls_through_to_the_next(tmp_path, server, closed_port, monkeypatch):
    monkeypatch.delenv("MNIST_MIRROR", raising=False)
    faults = [
        closed_port,
        f"{server}/404",
        f"{server}/500",
        f"{server}/html",
        f"{server}/truncated",
        f"{server}/corrupt",
        f"{server}/stall",
    ]
    started = time.monotonic()
    mnist.download(tmp_path, mirrors=faults + [f"{server}/ok"], timeout=1)
    assert time.monotonic() - started < 60
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted(f"{n}.gz" for n in mnist.FILES)


def test_when_every_source_fails_one_error_names_each_and_nothing_is_left(tmp_path, server, closed_port, monkeypatch):
    monkeypatch.setenv("MNIST_MIRROR", str(tmp_path / "no-such-dir"))
    with pytest.raises(mnist.DownloadError) as info:
        mnist.download(tmp_path / "raw", mirrors=[closed_port, f"{server}/404", f"{server}/corrupt", f"{server}/stall"], timeout=1)
    message = str(info.value)
    assert "could not download train-images-idx3-ubyte.gz from any source" in message
    assert f"{tmp_path / 'no-such-dir'}: no file" in message
    assert f"{closed_port}: unreachable" in message
    assert f"{server}/404: HTTP 404" in message
    assert f"{server}/corrupt: checksum mismatch" in message
    assert f"{server}/stall: timed out" in message
    assert list((tmp_path / "raw").iterdir()) == []

    # the fault is gone: the same call now succeeds
    mnist.download(tmp_path / "raw", mirrors=[closed_port, f"{server}/ok"], timeout=1)
    assert len(list((tmp_path / "raw").iterdir())) == 4


def test_download_stage_error_is_one_clear_message(tmp_path, closed_port):
    repo = copy_repo(tmp_path, params=None)
    result = run(repo, "python", "stages/download.py", check=False, PYTHONPATH="src", MNIST_MIRROR="", MNIST_MIRRORS=closed_port)
    assert result.returncode == 1
    errors = [line for line in result.stderr.splitlines() if line.startswith("error:")]
    assert errors == [
        "error: could not download train-images-idx3-ubyte.gz from any source "
        "(set $MNIST_MIRROR to a directory or URL holding the MNIST files):"
    ]
    assert f"  {closed_port}: unreachable" in result.stderr and "Traceback" not in result.stderr
    assert not (repo / "data" / "raw").exists() or not any((repo / "data" / "raw").glob("*.gz"))


def _idx(ndim: int, shape: tuple[int, ...], body: bytes) -> bytes:
    return bytes([0, 0, 8, ndim]) + b"".join(n.to_bytes(4, "big") for n in shape) + body


def test_parse_idx_reads_a_well_formed_file():
    data = np.arange(24, dtype=np.uint8).reshape(2, 3, 4)
    assert np.array_equal(mnist.parse_idx(_idx(3, (2, 3, 4), data.tobytes()), 3), data)


@pytest.mark.parametrize(
    "data, message",
    [
        (b"\0\0", "too short"),
        (b"\x08\x03\0\0" + bytes(12), "bad magic number"),
        (bytes([0, 0, 0x0D, 3]) + bytes(12), "bad magic number"),
        (_idx(1, (5,), bytes(5)), "file has 1 dimensions, expected 3"),
        (_idx(3, (2, 28, 28), bytes(100)), "need 1568 bytes of data, file has 100"),
        (_idx(3, (0xFFFFFFFF, 0xFFFFFFFF, 0xFFFFFFFF), bytes(10)), "file has 10"),
        (bytes([0, 0, 8, 3, 0, 0]), "header truncated"),
    ],
)
def test_parse_idx_rejects_malformed_files(data, message):
    with pytest.raises(mnist.IDXError, match=message):
        mnist.parse_idx(data, 3)


@settings(max_examples=300, deadline=None)
@given(st.binary(max_size=64), st.integers(1, 3))
def test_parse_idx_never_fails_any_other_way(data, ndim):
    try:
        array = mnist.parse_idx(data, ndim)
    except mnist.IDXError as exc:
        assert str(exc)
    else:
        assert array.nbytes <= len(data)


@settings(max_examples=200, deadline=None)
@given(st.lists(st.integers(0, 2**32 - 1), min_size=3, max_size=3), st.binary(max_size=256))
def test_parse_idx_with_absurd_dimensions_allocates_nothing(shape, body):
    try:
        array = mnist.parse_idx(_idx(3, tuple(shape), body), 3)
    except mnist.IDXError:
        return
    assert array.nbytes == len(body)
