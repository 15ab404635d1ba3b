"""Stage 1: the four MNIST IDX files into data/raw/, each verified against its pinned SHA-256."""

from pathlib import Path

from mnist_pipeline import stage

p = stage.load_params()  # first: a typo in params.yaml answers before TensorFlow and MLflow load

from mnist_pipeline import mnist, tracking  # noqa: E402

RAW = Path("data/raw")


def main() -> None:
    tracking.connect()
    with tracking.run("download", tracking.flat_params(download=p.download)):
        mnist.download(RAW, p.download.mirrors, p.download.timeout)


if __name__ == "__main__":
    stage.run(main)
