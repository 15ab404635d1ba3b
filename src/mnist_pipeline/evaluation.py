"""Metrics, confusion data and plots. Figures are matplotlib, rendered without a display."""

from __future__ import annotations

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
from sklearn.metrics import log_loss, precision_recall_fscore_support  # noqa: E402

from . import imaging  # noqa: E402

CLASSES = list(range(10))


def classification_metrics(labels: np.ndarray, probabilities: np.ndarray) -> dict:
    predicted = probabilities.argmax(axis=1)
    precision, recall, f1, support = precision_recall_fscore_support(labels, predicted, labels=CLASSES, zero_division=0)
    return {
        "accuracy": float((predicted == labels).mean()),
        "loss": float(log_loss(labels, probabilities, labels=CLASSES)),
        "macro_f1": float(f1.mean()),
        "n_images": int(len(labels)),
        "per_class": {
            str(c): {"precision": float(precision[c]), "recall": float(recall[c]), "f1": float(f1[c]), "support": int(support[c])}
            for c in CLASSES
        },
    }


def fold_boxplot(accuracies: list[float]):
    fig, ax = plt.subplots(figsize=(4, 5))
    ax.boxplot(accuracies, showmeans=True)
    ax.scatter(np.ones(len(accuracies)), accuracies, alpha=0.6)
    ax.set_xticks([1], [f"{len(accuracies)} folds"])
    ax.set_ylabel("validation accuracy")
    ax.set_title(f"Cross-validation: {np.mean(accuracies):.4f} ± {np.std(accuracies):.4f}")
    fig.tight_layout()
    return fig


def fold_curves(histories: list[dict[str, list[float]]]):
    """Loss and accuracy by epoch, training (dashed) and validation (solid), one colour per fold."""
    fig, axes = plt.subplots(1, 2, figsize=(10, 4))
    for fold, history in enumerate(histories, 1):
        epochs = range(1, len(history["loss"]) + 1)
        for ax, metric in zip(axes, ("loss", "accuracy"), strict=False):
            (line,) = ax.plot(epochs, history[f"val_{metric}"], label=f"fold {fold}")
            ax.plot(epochs, history[metric], linestyle="--", color=line.get_color(), alpha=0.6)
    for ax, metric in zip(axes, ("loss", "accuracy"), strict=False):
        ax.set_xlabel("epoch")
        ax.set_ylabel(metric)
        ax.set_title(f"{metric} (solid: validation, dashed: training)")
        ax.legend()
    fig.tight_layout()
    return fig


def misclassified_grid(images: np.ndarray, labels: np.ndarray, predicted: np.ndarray, limit: int = 50):
    wrong = np.flatnonzero(predicted != labels)[:limit]
    cols = 10
    rows = max(1, -(-len(wrong) // cols))
    fig, axes = plt.subplots(rows, cols, figsize=(cols * 1.2, rows * 1.4), squeeze=False)
    for ax in axes.flat:
        ax.axis("off")
    for ax, i in zip(axes.flat, wrong, strict=False):
        ax.imshow(images[i].squeeze(), cmap="gray", vmin=0, vmax=255)
        ax.set_title(f"{labels[i]}→{predicted[i]}", fontsize=9, color="red")
    fig.suptitle(f"{len(wrong)} of {int((predicted != labels).sum())} misclassified test digits (true→predicted)")
    fig.tight_layout()
    return fig


def photo_accuracy(model, images: np.ndarray, labels: np.ndarray, n: int, seed: int) -> dict[str, float]:
    """On ``n`` seeded photo-like renderings of test digits, through imaging.to_mnist: the share
    read as the right digit, the share flagged as not a digit (a photo that to_mnist refuses
    counts as flagged), and the share both read right and not flagged; and the accuracy of the
    tutorial's naive grayscale-and-resize for comparison."""
    rng = np.random.default_rng(seed)
    index = rng.choice(len(labels), size=min(n, len(labels)), replace=False)
    photos = [imaging.photo_like(images[i], rng) for i in index]
    truth = labels[index]
    ours = []
    for photo in photos:
        try:
            ours.append(imaging.to_mnist(photo))
        except imaging.ImageError:
            ours.append(None)
    read = [i for i, array in enumerate(ours) if array is not None]
    right = np.zeros(len(index), bool)
    flagged = np.ones(len(index), bool)
    if read:
        probabilities, scores = model.read(np.stack([ours[i] for i in read]))
        right[read] = probabilities.argmax(1) == truth[read]
        flagged[read] = scores < 0.5 if scores is not None else False
    naive = np.stack([imaging.naive(photo) for photo in photos])
    return {
        "accuracy_photos": float(right.mean()),
        "flagged_photos": float(flagged.mean()),
        "read_right_photos": float((right & ~flagged).mean()),
        "accuracy_photos_naive": float((model.predict(naive).argmax(1) == truth).mean()),
        "n_photos": int(len(index)),
        "n_photos_refused": len(index) - len(read),
    }


def verdicts(probabilities: np.ndarray, scores: np.ndarray, labels: np.ndarray) -> dict[str, np.ndarray]:
    """A served model's verdict on each image, from what it read (probabilities (N, 10), digit
    scores (N,)) and the true `labels` (-1: not a digit): `flagged`, called "not a digit" (a score
    below 0.5); `read_right`, not flagged and the right digit; `answered_sure`, not flagged and
    answered as a digit with 90% confidence or more (what a non-digit should never get)."""
    flagged = scores < 0.5
    return {
        "flagged": flagged,
        "read_right": ~flagged & (probabilities.argmax(axis=1) == labels),
        "answered_sure": ~flagged & (probabilities.max(axis=1) >= 0.9),
    }


def by_kind(values: np.ndarray, kind: np.ndarray, kinds: tuple[str, ...]) -> dict[str, float]:
    """The share of true `values` among the images of each kind (kinds[code]) present."""
    return {kinds[k]: float(values[kind == k].mean()) for k in sorted(set(kind.tolist()))}


def within_budgets(flagged: dict[str, float], n: dict[str, int], budgets: dict[str, float]) -> dict[str, dict]:
    """Each kind of digit's share flagged against its budget, with the sampling noise of a share
    of n images (two standard errors of the budget itself: a kind exactly at its budget is
    measured within it 19 times in 20), and whether it is within."""
    checked = {}
    for kind, share in flagged.items():
        noise = 2 * float(np.sqrt(budgets[kind] * (1 - budgets[kind]) / n[kind]))
        checked[kind] = {"flagged": share, "budget": budgets[kind], "noise": noise, "within": share <= budgets[kind] + noise}
    return checked


def threshold_check(threshold: dict, flagged_mnist: np.ndarray, details: dict, kinds: tuple[str, ...], kind: np.ndarray) -> dict:
    """The served threshold (export's report: the budgets it was set with, the kinds that held it)
    and each kind of digit evaluate counts against its budget: MNIST's test digits, the photo-like
    ones and the made ones (details' shares flagged)."""
    shares = {"mnist": float(flagged_mnist.mean())} | details["flagged_digits"]
    counts = {"mnist": len(flagged_mnist)} | {kinds[k]: int((kind == k).sum()) for k in set(kind.tolist())}
    if "n_photos" in details:
        shares["photo"], counts["photo"] = details["flagged_photos"], details["n_photos"] - details["n_photos_refused"]
    return threshold | {"budgets": within_budgets(shares, counts, threshold["false_flag_rate"])}


def summary(report: dict, headline: dict) -> list[str]:
    """evaluate's report in a few lines, for the log."""
    lines = [
        f"test accuracy of the served {report['served']} model {headline['test_acc']:.4%} on {report['n_images']} images; "
        f"flagged as not a digit: {headline['flag_mnist']:.2%} of them",
        "  each model: " + ", ".join(f"{name} {value:.4%}" for name, value in report["test_accuracy"].items()),
        f"the project's own {report['n_non_digits']} non-digits flagged: {headline['flag_nondigit']:.2%} ("
        + ", ".join(f"{kind} {v:.1%}" for kind, v in report["flagged_non_digits"].items())
        + f"); answered as a digit with 90% confidence or more: {headline['nondigit_sure']:.2%}",
    ]
    if report["n_digits"]:
        lines.append(
            f"the project's own {report['n_digits']} digits of each kind, flagged / read right: "
            + ", ".join(f"{kind} {v:.1%} / {report['read_right_digits'][kind]:.1%}" for kind, v in report["flagged_digits"].items())
        )
    lines.append(
        "calibration error (ECE, 15 bins) with the temperature and without: "
        + ", ".join(f"{name} {c['ece']:.3%} and {c['ece_raw']:.3%}" for name, c in report["calibration"].items())
    )
    if "threshold" in report:
        over = [kind for kind, check in report["threshold"]["budgets"].items() if not check["within"]]
        lines.append(
            f"the threshold was set by the budget of {report['threshold']['held_by']} digits "
            f"(of {', '.join(report['threshold']['threshold_kinds'])}); here over budget beyond sampling noise: {', '.join(over) or 'none'}"
        )
    if "n_photos" in report:
        lines.append(
            f"photo-like images: {report['accuracy_photos']:.2%} right, {report['flagged_photos']:.2%} flagged, "
            f"{report['read_right_photos']:.2%} read right (the tutorial's naive preprocessing: "
            f"{report['accuracy_photos_naive']:.2%}) of {report['n_photos']}"
        )
    return lines
