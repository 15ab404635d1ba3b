"""Stage: the digit-or-not detector's examples -> data/synthetic/{train,val,pool}_{images,labels,kind}.npy.

Digits (MNIST's own, photographed, restroked, typed, sketched, drawn, low-resolution) and
non-digits (letters, symbols, shapes, scribbles, textures, overlaid digits), each as the model
would see it after to_mnist, drawn from synthetic.seed alone (the synthetic package). The validation set
is made from other MNIST digits and other seeds; the detector stage sets its threshold on it.
The pool holds synthetic.pool more non-digits, for the detector to mine its hard negatives from.
"""

from pathlib import Path

from mnist_pipeline import stage

p = stage.load_params()  # first: a typo in params.yaml answers before TensorFlow and MLflow load

import numpy as np  # noqa: E402

from mnist_pipeline import mnist, synthetic  # noqa: E402

PREPARED = Path("data/prepared")
OUT = Path("data/synthetic")
EXAMPLES = Path("plots/synthetic_examples.png")


def counts(scale: float) -> dict[str, int]:
    s = p.synthetic
    return (
        {"photo": round(s.photos * scale)}
        | synthetic.shares(round(s.digits * scale), synthetic.DIGIT_KINDS)
        | synthetic.shares(round(s.non_digits * scale), synthetic.NON_DIGIT_KINDS)
    )


def main() -> None:
    data = mnist.load_prepared(PREPARED, "train")
    images, labels = data.images.reshape(-1, 28, 28), data.labels
    order = np.random.default_rng(p.synthetic.seed).permutation(len(labels))
    n_val = max(1, round(p.synthetic.validation * len(labels)))
    splits = {"train": (order[n_val:], 1.0), "val": (order[:n_val], p.synthetic.validation)}
    made = {}
    for number, (name, (index, scale)) in enumerate(splits.items()):
        made[name] = synthetic.make_set(images[index], labels[index], counts(scale), seed=(p.synthetic.seed, number))
        own = index[: round(p.synthetic.mnist * scale)]
        made[name] = {
            "images": np.concatenate([images[own], made[name]["images"]]),
            "labels": np.concatenate([labels[own].astype(np.int8), made[name]["labels"]]),
            "kind": np.concatenate([np.zeros(len(own), np.uint8), made[name]["kind"]]),
        }
    train_index = splits["train"][0]
    pool_counts = synthetic.shares(p.synthetic.pool, synthetic.POOL_KINDS) if p.synthetic.pool else {}
    made["pool"] = synthetic.make_set(images[train_index], labels[train_index], pool_counts, seed=(p.synthetic.seed, len(splits)))
    from mnist_pipeline import tracking  # MLflow, after the pool's fork

    tracking.connect()
    with tracking.run("synthesize", tracking.flat_params(synthetic=p.synthetic)):
        for name, arrays in made.items():
            for key, array in arrays.items():
                stage.save_npy(OUT / f"{name}_{key}.npy", array[..., np.newaxis] if key == "images" else array)
            kinds = dict(zip(synthetic.KINDS, np.bincount(arrays["kind"], minlength=len(synthetic.KINDS)).tolist(), strict=False))
            tracking.log_metrics({f"{name}.{kind}": n for kind, n in kinds.items()})
            print(
                f"{name}: {(arrays['labels'] >= 0).sum()} digits, {(arrays['labels'] < 0).sum()} non-digits ("
                + ", ".join(f"{k} {n}" for k, n in kinds.items() if n)
                + ")"
            )
        save_examples(made["train"])
        tracking.log_artifact(EXAMPLES)


def save_examples(arrays: dict) -> None:
    """A row of each kind, for a person to see what the detector learns from."""
    codes = sorted(set(arrays["kind"].tolist()))
    stage.save_contact_sheet(EXAMPLES, [arrays["images"][arrays["kind"] == code] for code in codes], [synthetic.KINDS[c] for c in codes])


if __name__ == "__main__":
    stage.run(main)
