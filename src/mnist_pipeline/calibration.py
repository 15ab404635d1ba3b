"""Calibration of a served model: the one temperature that makes its pooled output fit held-out
labels (pool, then calibrate), kept only where it helps images it was not fitted on, and the
expected calibration error with its reliability diagram."""

from __future__ import annotations

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402


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


def choose_temperature(logits: np.ndarray, labels: np.ndarray) -> tuple[float, dict]:
    """The temperature to serve, and why: fit_temperature on all of the held-out images, kept only
    when it calibrates images it was not fitted on (two halves, each scored with the temperature
    fitted on the other, against no temperature); else 1, the model as it is."""
    halves = np.arange(len(labels)) % 2 == 0, np.arange(len(labels)) % 2 == 1
    crossed = untempered = 0.0
    for fit_on, score_on in (halves, halves[::-1]):
        t = fit_temperature(logits[:, fit_on], labels[fit_on])
        crossed += ece(pooled(logits[:, score_on], t), labels[score_on])[0] / 2
        untempered += ece(pooled(logits[:, score_on]), labels[score_on])[0] / 2
    fitted = fit_temperature(logits, labels)
    kept = crossed < untempered
    return (fitted if kept else 1.0), {"fitted": fitted, "kept": bool(kept), "ece_crossed": crossed, "ece_without": untempered}


def ece(probabilities: np.ndarray, labels: np.ndarray, bins: int = 15) -> tuple[float, list[list]]:
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
