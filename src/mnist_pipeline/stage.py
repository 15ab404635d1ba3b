"""What every stage script shares: clean error exits and all-or-nothing output files."""

from __future__ import annotations

import contextlib
import csv
import hashlib
import io
import json
import os
import shutil
import sys
import tempfile
from collections.abc import Callable, Iterable, Iterator
from pathlib import Path

import numpy as np

from . import PipelineError, write_fault
from .params import Params, ParamsError, load


def load_params() -> Params:
    """params.yaml, validated, or one line per problem on stderr and exit 2. Stage scripts call it
    before they import TensorFlow or MLflow, so that a typo answers in a fraction of a second."""
    try:
        return load()
    except ParamsError as exc:
        for problem in exc.problems:
            print(f"error: params.yaml: {problem}", file=sys.stderr)
        sys.exit(exc.exit_code)


def run(main: Callable[[], None]) -> None:
    """Run a stage's main; a PipelineError becomes one line on stderr and an exit code."""
    try:
        main()
    except PipelineError as exc:
        print(f"error: {exc}", file=sys.stderr)
        sys.exit(exc.exit_code)
    except OSError as exc:  # a write outside atomic_path: a checkpoint, a cache file
        if (reason := write_fault(exc)) is None:
            raise
        print(f"error: {unwritable(exc.filename or 'a file', reason)}", file=sys.stderr)
        sys.exit(1)
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        sys.exit(130)


def unwritable(path: Path | str, reason: str) -> str:
    return f"cannot write {path}: {reason}; free some space or make it writable, then run the stage again (nothing half-written was kept)"


@contextlib.contextmanager
def atomic_path(path: Path | str, directory: bool = False) -> Iterator[Path]:
    """Yield a temporary sibling of ``path``; it replaces ``path`` only if the block succeeds.
    A full disk or an unwritable place on the way is a PipelineError that names ``path``."""
    path, tmp = Path(path), None
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        if directory:
            tmp = Path(tempfile.mkdtemp(dir=path.parent, prefix=f".{path.name}."))
        else:
            fd, name = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=path.suffix)
            os.close(fd)
            tmp = Path(name)
        yield tmp
        if path.is_dir() and not path.is_symlink():
            shutil.rmtree(path)
        os.replace(tmp, path)
    except OSError as exc:
        if (reason := write_fault(exc)) is None:
            raise
        raise PipelineError(unwritable(path, reason)) from None
    finally:
        if tmp is not None and tmp.is_dir():
            shutil.rmtree(tmp, ignore_errors=True)
        elif tmp is not None:
            tmp.unlink(missing_ok=True)


def write_json(path: Path | str, data: dict) -> None:
    with atomic_path(path) as tmp:
        tmp.write_text(json.dumps(data, indent=2, sort_keys=True) + "\n")


def write_csv(path: Path | str, header: list[str], rows: Iterable[Iterable]) -> None:
    with atomic_path(path) as tmp, tmp.open("w", newline="") as f:
        writer = csv.writer(f)
        writer.writerow(header)
        writer.writerows(rows)


def save_npy(path: Path | str, array: np.ndarray) -> None:
    buffer = io.BytesIO()  # numpy's own file writing reports a full disk as a short write, without its errno
    np.save(buffer, array)
    with atomic_path(path) as tmp:
        tmp.write_bytes(buffer.getbuffer())


def save_figure(path: Path | str, figure) -> None:
    with atomic_path(path) as tmp:
        figure.savefig(tmp, dpi=100, metadata={"Software": None})  # no version stamp: same bytes each run


def save_contact_sheet(path: Path | str, rows: list[np.ndarray], labels: list[str] | None = None, per_row: int = 25) -> None:
    """Rows of (28, 28) images, white on black, as one PNG at twice their size, each row's label
    at its left: for a person to look at what a stage made or found."""
    from PIL import Image, ImageDraw

    size, margin = 56, 120 if labels else 0
    sheet = Image.new("L", (margin + size * per_row, size * max(1, len(rows))))
    for r, row in enumerate(rows):
        for c, image in enumerate(row[:per_row]):
            tile = Image.fromarray(np.asarray(image, np.uint8).reshape(28, 28)).resize((size, size), Image.Resampling.NEAREST)
            sheet.paste(tile, (margin + c * size, r * size))
        if labels:
            ImageDraw.Draw(sheet).text((4, r * size + size // 2 - 6), labels[r], fill=255)
    with atomic_path(path) as tmp:
        sheet.save(tmp, "PNG")


def cache_key(params: dict, arrays: Iterable[np.ndarray], sources: Iterable[Path | str]) -> str:
    """A short hash of parameters, data and code: work saved under it is only reused for exactly
    the same work (a checkpoint saved before the code changed is not)."""
    digest = hashlib.sha256(json.dumps(params, sort_keys=True).encode())
    for array in arrays:
        digest.update(array.tobytes())
    for source in sources:
        digest.update(Path(source).read_bytes())
    return digest.hexdigest()[:16]


def library_sources() -> list[Path]:
    """The package's own source files (its subpackages' too), for cache_key."""
    return sorted(Path(__file__).parent.rglob("*.py"))


def fold_model_paths(directory: Path | str) -> list[Path]:
    """The fold models crossvalidate saved in `directory` (fold-1.keras, fold-2.keras, ...), in
    fold order (fold-10 after fold-9)."""
    return sorted(Path(directory).glob("fold-*.keras"), key=lambda f: int(f.stem[5:]))
