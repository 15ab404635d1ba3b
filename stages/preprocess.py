"""Stage 2: IDX -> data/prepared/*.npy (uint8 images (N, 28, 28, 1), uint8 labels), optionally subsampled."""

from pathlib import Path

from mnist_pipeline import stage

p = stage.load_params()  # first: a typo in params.yaml answers before TensorFlow and MLflow load

import numpy as np  # noqa: E402

from mnist_pipeline import mnist, tracking  # noqa: E402

RAW = Path("data/raw")
PREPARED = Path("data/prepared")


def main() -> None:
    tracking.connect()
    with tracking.run("preprocess", tracking.flat_params(data=p.data)):
        for split, name, limit in (("train", "train", p.data.train_limit), ("t10k", "test", p.data.test_limit)):
            data = mnist.stratified_subsample(mnist.load_split(RAW, split), limit, p.data.seed)
            mnist.save_prepared(PREPARED, name, data)
            counts = np.bincount(data.labels, minlength=10)
            tracking.log_metrics({f"{name}_images": len(data.labels)})
            print(f"{name}: {len(data.labels)} images, per class {counts.tolist()}")


if __name__ == "__main__":
    stage.run(main)
