"""MNIST's IDX files: pinned checksums, download from mirrors, parsing. No TensorFlow."""

from __future__ import annotations

import gzip
import hashlib
import os
import shutil
import tempfile
import urllib.error
import urllib.request
import zlib
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from tqdm import tqdm

from . import PipelineError
from .stage import save_npy

# SHA-256 of the *decompressed* IDX files: mirrors compress differently, the payload is the same.
FILES = {
    "train-images-idx3-ubyte": "ba891046e6505d7aadcbbe25680a0738ad16aec93bde7f9b65e87a2fc25776db",
    "train-labels-idx1-ubyte": "65a50cbbf4e906d70832878ad85ccda5333a97f0f4c3dd2ef09a8a9eef7101c5",
    "t10k-images-idx3-ubyte": "0fa7898d509279e482958e8ce81c8e77db3f2f8254e26661ceb7762c4d494ce7",
    "t10k-labels-idx1-ubyte": "ff7bcfd416de33731a308c3f266cc351222c34898ecbeaf847f06e48f7ec33f2",
}
MIRROR_ENV = "MNIST_MIRROR"
# Tried after $MNIST_MIRROR. Not params: where the files come from changes no result (each is
# checked against its checksum), so it must neither rerun stages nor show in `dvc exp show`.
MIRRORS_ENV = "MNIST_MIRRORS"  # space-separated; replaces MIRRORS, e.g. on a network without them
MIRRORS = ("https://storage.googleapis.com/cvdf-datasets/mnist/", "https://ossci-datasets.s3.amazonaws.com/mnist/")
TIMEOUT = 30  # seconds without data before a source is given up
_IDX_DTYPES = {0x08: np.uint8}  # MNIST only uses unsigned bytes


class DownloadError(PipelineError):
    """No source could deliver a verified file."""


class IDXError(PipelineError):
    """A file is not a well-formed IDX file of the expected kind."""


@dataclass(frozen=True)
class Dataset:
    images: np.ndarray  # (N, 28, 28, 1) uint8, white digits on black
    labels: np.ndarray  # (N,) uint8 in 0..9


def sources(mirrors: list[str] | None = None) -> list[str]:
    """The sources to try, in order: $MNIST_MIRROR, then `mirrors`, or else $MNIST_MIRRORS or MIRRORS."""
    first = os.environ.get(MIRROR_ENV, "").strip()
    if mirrors is None:
        mirrors = os.environ.get(MIRRORS_ENV, "").split() or list(MIRRORS)
    return ([first] if first else []) + list(mirrors)


def download(dest: Path, mirrors: list[str] | None = None, timeout: float = TIMEOUT) -> None:
    """Fetch the four gzipped IDX files into ``dest``, each verified before it lands there."""
    dest.mkdir(parents=True, exist_ok=True)
    tried = sources(mirrors)
    for name, sha256 in FILES.items():
        target = dest / f"{name}.gz"
        if target.exists() and _decompressed_sha256(target) == sha256:
            continue
        failures = []
        for source in tried:
            try:
                _fetch_verified(source, f"{name}.gz", target, sha256, timeout)
                break
            except Exception as exc:  # every reason a source can fail is reported, then the next is tried
                failures.append(f"  {source}: {_reason(exc)}")
        else:
            raise DownloadError(
                f"could not download {name}.gz from any source "
                f"(set ${MIRROR_ENV} to a directory or URL holding the MNIST files):\n" + ("\n".join(failures) or "  no sources configured")
            )


def _fetch_verified(source: str, filename: str, target: Path, sha256: str, timeout: float) -> None:
    with tempfile.NamedTemporaryFile(dir=target.parent, prefix=f".{filename}.", delete=False) as tmp:
        tmp_path = Path(tmp.name)
        try:
            if "://" in source:
                url = source.rstrip("/") + "/" + filename
                with urllib.request.urlopen(url, timeout=timeout) as response:
                    total = int(response.headers.get("Content-Length") or 0) or None
                    with tqdm(total=total, unit="B", unit_scale=True, desc=filename, disable=None, leave=False) as bar:
                        while chunk := response.read(1 << 16):
                            tmp.write(chunk)
                            bar.update(len(chunk))
            else:
                path = Path(source).expanduser() / filename
                if not path.is_file():
                    raise FileNotFoundError(f"no file {path}")
                with path.open("rb") as src:
                    shutil.copyfileobj(src, tmp)
            tmp.close()
            actual = _decompressed_sha256(tmp_path)
            if actual != sha256:
                raise ValueError(f"checksum mismatch (SHA-256 of the decompressed file is {actual[:12]}…, expected {sha256[:12]}…)")
            tmp_path.replace(target)
        finally:
            tmp_path.unlink(missing_ok=True)


def _decompressed_sha256(path: Path) -> str:
    digest = hashlib.sha256()
    try:
        with gzip.open(path, "rb") as f:
            while chunk := f.read(1 << 20):
                digest.update(chunk)
    except (OSError, EOFError, zlib.error) as exc:
        raise ValueError(f"not a complete gzip file ({exc})") from None
    return digest.hexdigest()


def _reason(exc: Exception) -> str:
    if isinstance(exc, urllib.error.HTTPError):
        return f"HTTP {exc.code} {exc.reason}"
    if isinstance(exc, urllib.error.URLError):
        return f"unreachable ({exc.reason})"
    if isinstance(exc, TimeoutError):
        return "timed out"
    return str(exc) or type(exc).__name__


def parse_idx(data: bytes, expected_ndim: int) -> np.ndarray:
    """Parse one IDX file's bytes; raise IDXError for anything malformed."""
    if len(data) < 4:
        raise IDXError(f"file has {len(data)} bytes, too short for an IDX header")
    zero, dtype_code, ndim = int.from_bytes(data[:2], "big"), data[2], data[3]
    if zero != 0 or dtype_code not in _IDX_DTYPES:
        raise IDXError(f"bad magic number 0x{data[:4].hex()} (expected 0x000008{expected_ndim:02x})")
    if ndim != expected_ndim:
        raise IDXError(f"file has {ndim} dimensions, expected {expected_ndim}")
    header = 4 + 4 * ndim
    if len(data) < header:
        raise IDXError(f"header truncated: {len(data)} bytes, expected at least {header}")
    shape = tuple(int.from_bytes(data[4 + 4 * i : 8 + 4 * i], "big") for i in range(ndim))
    expected = int(np.prod(shape, dtype=object))  # exact: no overflow for absurd dimensions
    if len(data) - header != expected:
        raise IDXError(f"dimensions {shape} need {expected} bytes of data, file has {len(data) - header}")
    return np.frombuffer(data, dtype=_IDX_DTYPES[dtype_code], offset=header).reshape(shape)


def read_idx_gz(path: Path, expected_ndim: int) -> np.ndarray:
    with gzip.open(path, "rb") as f:
        return parse_idx(f.read(), expected_ndim)


def load_split(raw_dir: Path, split: str) -> Dataset:
    """Load 'train' or 't10k' from the gzipped IDX files in raw_dir, checking shapes and labels."""
    images = read_idx_gz(raw_dir / f"{split}-images-idx3-ubyte.gz", 3)
    labels = read_idx_gz(raw_dir / f"{split}-labels-idx1-ubyte.gz", 1)
    if images.shape[1:] != (28, 28):
        raise IDXError(f"{split} images are {images.shape[1]}x{images.shape[2]}, expected 28x28")
    if len(images) != len(labels):
        raise IDXError(f"{split} has {len(images)} images but {len(labels)} labels")
    if labels.size and labels.max() > 9:
        raise IDXError(f"{split} labels must be 0..9, found {labels.max()}")
    return Dataset(images[..., np.newaxis].copy(), labels.copy())


def stratified_subsample(data: Dataset, limit: int | None, seed: int) -> Dataset:
    """At most ``limit`` examples, with the class proportions kept; the order is reproducible."""
    if limit is None or limit >= len(data.labels):
        return data
    from sklearn.model_selection import train_test_split

    index, _ = train_test_split(np.arange(len(data.labels)), train_size=limit, stratify=data.labels, random_state=seed)
    index = np.sort(index)
    return Dataset(data.images[index], data.labels[index])


def save_prepared(directory: Path, name: str, data: Dataset) -> None:
    save_npy(directory / f"{name}_images.npy", data.images)
    save_npy(directory / f"{name}_labels.npy", data.labels)


def load_prepared(directory: Path, name: str) -> Dataset:
    return Dataset(np.load(directory / f"{name}_images.npy"), np.load(directory / f"{name}_labels.npy"))
