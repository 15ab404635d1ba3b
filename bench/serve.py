"""Benchmark `mnist-pipeline serve`: requests/s and p50/p99 latency of POST /predict at 1 and 16
concurrent clients (each a keep-alive connection), for one 28x28 PNG and one 1-megapixel photo
per request; and the time from starting the server to its first answer. Writes
bench/serve_results.json and prints Markdown.

The load comes from `wrk` (Debian's package) where it is installed: a C client takes a small
share of the cores the server shares with it. Without it, Python threads post the requests, which
on 2 cores takes much of the CPU the server would have (the results say which was used).

    python bench/serve.py [--model models/export/model.tflite] [--workers 1 2] [--seconds 5]
    python bench/serve.py --tiny --out F.json [--model ...]     # one worker, short loads: checks this script

Needs a model: run `dvc repro` first, or pass --model.
"""

from __future__ import annotations

import argparse
import http.client
import io
import json
import re
import shutil
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import numpy as np
from PIL import Image

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "src"))

from bench import parse_args  # noqa: E402
from mnist_pipeline import imaging  # noqa: E402
from mnist_pipeline.machine import describe as describe_machine  # noqa: E402
from mnist_pipeline.testing import free_port  # noqa: E402


def payloads() -> dict[str, bytes]:
    """A 28x28 MNIST-like PNG and a 1000x1000 JPEG photo of a digit (dark ink, tinted paper)."""
    digit = np.zeros((28, 28), np.uint8)
    digit[6:22, 12:16] = 255  # a plain 1
    digit[6:9, 9:16] = 255
    small = io.BytesIO()
    Image.fromarray(digit).save(small, "PNG")
    photo = imaging.photo_like(digit, np.random.default_rng(0), thin_pen=False).convert("RGB").resize((1000, 1000))
    large = io.BytesIO()
    photo.save(large, "JPEG", quality=90)
    return {"28x28 PNG": small.getvalue(), "1-megapixel JPEG": large.getvalue()}


def post(connection: http.client.HTTPConnection, body: bytes) -> None:
    connection.request("POST", "/predict", body=body, headers={"Content-Type": "application/octet-stream"})
    response = connection.getresponse()
    response.read()
    if response.status != 200:
        raise RuntimeError(f"HTTP {response.status}")


def start(model: Path, workers: int, body: bytes) -> tuple[subprocess.Popen, int, float]:
    """The server, its port, and seconds from starting its process to its first answer."""
    port = free_port()
    began = time.perf_counter()
    process = subprocess.Popen(
        [
            str(Path(sys.executable).parent / "mnist-pipeline"),
            "serve",
            "--model",
            str(model),
            "--port",
            str(port),
            "--workers",
            str(workers),
        ],
        stdout=subprocess.DEVNULL,
    )
    while True:
        try:
            connection = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
            post(connection, body)
            connection.close()
            return process, port, time.perf_counter() - began
        except OSError:
            if process.poll() is not None or time.perf_counter() - began > 60:
                raise SystemExit("the server did not start") from None
            time.sleep(0.02)


def load(port: int, body: bytes, clients: int, seconds: float) -> dict:
    """`clients` threads, each posting `body` over its own keep-alive connection for `seconds`."""
    latencies: list[list[float]] = [[] for _ in range(clients)]
    stop_at = time.perf_counter() + seconds

    def client(mine: list[float]) -> None:
        connection = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
        while time.perf_counter() < stop_at:
            t = time.perf_counter()
            post(connection, body)
            mine.append(time.perf_counter() - t)
        connection.close()

    threads = [threading.Thread(target=client, args=(mine,)) for mine in latencies]
    began = time.perf_counter()
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    elapsed = time.perf_counter() - began
    every = np.concatenate([np.array(mine) for mine in latencies])
    return {
        "requests": len(every),
        "requests_per_s": len(every) / elapsed,
        "p50_ms": float(np.percentile(every, 50) * 1000),
        "p99_ms": float(np.percentile(every, 99) * 1000),
    }


def load_wrk(port: int, body: bytes, clients: int, seconds: float) -> dict:
    """The same measurement with wrk: `clients` keep-alive connections over up to 2 threads."""
    with tempfile.TemporaryDirectory() as scratch:
        (Path(scratch) / "body").write_bytes(body)
        script = Path(scratch) / "post.lua"
        script.write_text(
            f'wrk.method = "POST"\nwrk.headers["Content-Type"] = "application/octet-stream"\n'
            f'local f = io.open("{Path(scratch) / "body"}", "rb")\nwrk.body = f:read("*a")\nf:close()\n'
        )
        out = subprocess.run(
            [
                "wrk",
                f"-t{min(clients, 2)}",
                f"-c{clients}",
                f"-d{max(1, round(seconds))}s",
                "--latency",
                "-s",
                str(script),
                f"http://127.0.0.1:{port}/predict",
            ],
            capture_output=True,
            text=True,
            check=True,
        ).stdout
    if "Non-2xx" in out or "Socket errors" in out:
        raise RuntimeError(f"wrk saw errors:\n{out}")

    def latency_ms(percent: str) -> float:
        value, unit = re.search(rf"^\s+{percent}%\s+([\d.]+)(us|ms|s)\s*$", out, re.M).groups()
        return float(value) * {"us": 1e-3, "ms": 1, "s": 1e3}[unit]

    return {
        "requests": int(re.search(r"(\d+) requests in", out)[1]),
        "requests_per_s": float(re.search(r"Requests/sec:\s+([\d.]+)", out)[1]),
        "p50_ms": latency_ms("50"),
        "p99_ms": latency_ms("99"),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", type=Path, default=ROOT / "models" / "export" / "model.tflite")
    parser.add_argument("--workers", type=int, nargs="+", default=[1, 2], help="server processes to try")
    parser.add_argument("--seconds", type=float, default=5, help="length of each measurement")
    args = parse_args(parser, "serve_results.json")
    if args.tiny:
        args.workers, args.seconds = [1], 0.5
    if not args.model.is_file():
        raise SystemExit(f"no model at {args.model}: run `dvc repro` first, or pass --model")
    bodies = payloads()
    generator = "wrk" if shutil.which("wrk") else "python threads"
    measure = load_wrk if generator == "wrk" else load
    rows, starts = [], {}
    for workers in args.workers:
        process, port, starts[workers] = start(args.model, workers, bodies["28x28 PNG"])
        try:
            for name, body in bodies.items():
                measure(port, body, 16, min(1, args.seconds))  # warm-up
                for clients in (1, 16):
                    row = {
                        "workers": workers,
                        "image": name,
                        "bytes": len(body),
                        "clients": clients,
                        **measure(port, body, clients, args.seconds),
                    }
                    rows.append(row)
                    print(f"  {row}", file=sys.stderr)
        finally:
            process.terminate()
            process.wait()
    machine = describe_machine()
    results = {"machine": machine, "model": str(args.model), "load_generator": generator, "start_to_first_answer_s": starts, "rows": rows}
    args.out.write_text(json.dumps(results, indent=2) + "\n")
    print(
        f"Machine: {machine}; load from {generator}; start to first answer: "
        + ", ".join(f"{s:.2f} s ({w} worker{'s' if w > 1 else ''})" for w, s in starts.items())
    )
    print("\n| workers | image | clients | requests/s | p50 (ms) | p99 (ms) |\n|---|---|---|---|---|---|")
    for r in rows:
        print(f"| {r['workers']} | {r['image']} | {r['clients']} | {r['requests_per_s']:,.0f} | {r['p50_ms']:.1f} | {r['p99_ms']:.1f} |")


if __name__ == "__main__":
    main()
