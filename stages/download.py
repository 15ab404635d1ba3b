"""Stage 1: the four MNIST IDX files into data/raw/, each verified against its pinned SHA-256, from
$MNIST_MIRROR, then $MNIST_MIRRORS or the public mirrors (mnist.MIRRORS). It reads no params."""

from pathlib import Path

from mnist_pipeline import stage

stage.load_params()  # first: a typo anywhere in params.yaml answers before anything is fetched

from mnist_pipeline import mnist, tracking  # noqa: E402

RAW = Path("data/raw")


def main() -> None:
    tracking.connect()
    with tracking.run("download", {"sources": " ".join(mnist.sources())}):
        mnist.download(RAW)


if __name__ == "__main__":
    stage.run(main)
