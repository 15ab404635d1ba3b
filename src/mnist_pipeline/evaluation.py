"""Metrics, confusion data and plots. Figures are matplotlib, rendered without a display."""

from __future__ import annotations

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
from scipy import ndimage  # noqa: E402
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


def log_odds(two_class: np.ndarray) -> np.ndarray:
    """log(p(digit) / p(not a digit)) from the detector's two-class probabilities."""
    p = np.clip(two_class.astype(np.float64), 1e-30, 1)
    return np.log(p[:, 1]) - np.log(p[:, 0])


def digit_threshold(
    logits: np.ndarray, is_digit: np.ndarray, kind: np.ndarray, kinds: tuple[str, ...], budgets: dict[str, float]
) -> tuple[float, dict]:
    """The highest threshold on the log-odds that calls at most `budgets[name]` of the digits of
    each kind "not a digit"; and, at that threshold, the share flagged of each kind, and which
    kind's budget set it."""
    digit_kinds = sorted(set(kind[is_digit].tolist()))
    limits = {kinds[k]: float(np.quantile(logits[is_digit & (kind == k)], budgets[kinds[k]], method="lower")) for k in digit_kinds}
    held_by = min(limits, key=limits.get)
    flagged = {kinds[k]: float((logits[kind == k] < limits[held_by]).mean()) for k in sorted(set(kind.tolist()))}
    return limits[held_by], {
        "flagged": flagged,
        "n": {kinds[k]: int((kind == k).sum()) for k in sorted(set(kind.tolist()))},
        "held_by": held_by,
    }


def pooled(logits: np.ndarray, temperature: float = 1.0) -> np.ndarray:
    """A served model's probabilities from its members' logits (K, N, 10), one member and view
    each: softmax(logits / T) averaged over the K (models.served computes the same in the model)."""
    z = np.asarray(logits, np.float64).reshape(-1, *np.shape(logits)[-2:]) / temperature
    z -= z.max(axis=-1, keepdims=True)
    p = np.exp(z)
    return (p / p.sum(axis=-1, keepdims=True)).mean(axis=0)


def fit_temperature(logits: np.ndarray, labels: np.ndarray) -> float:
    """The one temperature T that makes the served model's own output, pooled(logits, T), fit
    held-out labels best (least log loss). The pool is fitted, not each member: an average of
    members is already less confident than each of them (pool, then calibrate)."""
    from scipy.optimize import minimize_scalar

    def loss(t: float) -> float:
        return float(-np.log(np.clip(pooled(logits, t)[np.arange(len(labels)), labels], 1e-300, 1)).mean())

    return float(minimize_scalar(loss, bounds=(0.05, 20), method="bounded").x)


def distorted(images: np.ndarray, rng: np.random.Generator, degrees: float = 12, scale: float = 0.1, shift: float = 2) -> np.ndarray:
    """Each digit turned, scaled and moved a little at random (the classic MNIST distortions): new
    images that no model of the default protocol trained on, which trains without augmentation."""
    out = np.empty_like(images, dtype=np.float32)
    centre = (np.array(images.shape[1:3]) - 1) / 2
    for i, image in enumerate(images):
        angle, factor = np.deg2rad(rng.uniform(-degrees, degrees)), rng.uniform(1 - scale, 1 + scale)
        matrix = np.array([[np.cos(angle), -np.sin(angle)], [np.sin(angle), np.cos(angle)]]) / factor
        offset = centre - matrix @ centre - rng.uniform(-shift, shift, 2)
        out[i, ..., 0] = ndimage.affine_transform(image[..., 0].astype(np.float32), matrix, offset=offset, order=1)
    return np.clip(out, 0, 255)


def choose_temperature(logits: np.ndarray, labels: np.ndarray) -> tuple[float, dict]:
    """The temperature to serve, and why: fit_temperature on all of the held-out images, kept only
    when it calibrates images it was not fitted on (two halves, each scored with the temperature
    fitted on the other, against no temperature); else 1, the model as it is."""
    halves = np.arange(len(labels)) % 2 == 0, np.arange(len(labels)) % 2 == 1
    crossed = untempered = 0.0
    for fit_on, score_on in (halves, halves[::-1]):
        t = fit_temperature(logits[:, fit_on], labels[fit_on])
        crossed += calibration(pooled(logits[:, score_on], t), labels[score_on])[0] / 2
        untempered += calibration(pooled(logits[:, score_on]), labels[score_on])[0] / 2
    fitted = fit_temperature(logits, labels)
    kept = crossed < untempered
    return (fitted if kept else 1.0), {"fitted": fitted, "kept": bool(kept), "ece_crossed": crossed, "ece_without": untempered}


def calibration(probabilities: np.ndarray, labels: np.ndarray, bins: int = 15) -> tuple[float, list[list]]:
    """Expected calibration error over `bins` equal-width confidence bins, and the reliability
    diagram's rows: [bin centre, mean confidence, accuracy, images] for each bin that has any."""
    confidence, correct = probabilities.max(axis=1), probabilities.argmax(axis=1) == labels
    which = np.minimum((confidence * bins).astype(int), bins - 1)
    rows, error = [], 0.0
    for b in range(bins):
        inside = which == b
        if inside.any():
            rows.append([(b + 0.5) / bins, float(confidence[inside].mean()), float(correct[inside].mean()), int(inside.sum())])
            error += inside.mean() * abs(confidence[inside].mean() - correct[inside].mean())
    return float(error), rows


def reliability_diagram(before: list[list], after: list[list]):
    fig, ax = plt.subplots(figsize=(5, 5))
    ax.plot([0, 1], [0, 1], color="grey", linestyle=":", label="perfectly calibrated")
    for rows, name in ((before, "before (model's own)"), (after, "after (temperature, served)")):
        ax.plot([r[1] for r in rows], [r[2] for r in rows], marker="o", label=name)
    ax.set_xlabel("confidence")
    ax.set_ylabel("accuracy")
    ax.set_title("Reliability on the test set (15 bins)")
    ax.legend()
    fig.tight_layout()
    return fig
