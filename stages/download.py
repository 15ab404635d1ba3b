"""Stage 1: the four MNIST IDX files into data/raw/, each verified against its pinned SHA-256."""

from pathlib import Path

from mnist_pipeline import mnist, params, stage, tracking

RAW = Path("data/raw")


def main() -> None:
    p = params.load()
    tracking.connect()
    with tracking.run("download", tracking.flat_params(download=p.download)):
        mnist.download(RAW, p.download.mirrors, p.download.timeout)


if __name__ == "__main__":
    stage.run(main)
