"""The served model: its test-time augmentation (the image and four one-pixel shifts of it,
averaged) and its averaged detectors."""

from __future__ import annotations

import numpy as np

from mnist_pipeline import mnist, models, training
from mnist_pipeline.params import Model
from mnist_pipeline.testing import MIRROR


def shifted(images: np.ndarray, dy: int, dx: int) -> np.ndarray:
    """The images moved dy pixels down and dx right, zeros coming in."""
    padded = np.pad(images, ((0, 0), (1, 1), (1, 1), (0, 0)))
    return padded[:, 1 - dy : 29 - dy, 1 - dx : 29 - dx]


def test_tta_averages_each_member_over_the_image_and_its_four_one_pixel_shifts():
    images = mnist.load_split(MIRROR, "t10k").images[:32].astype("float32")
    training.seed_everything(0)
    members = [models.build(Model("seed_cnn", [8, 8, 8], 16, 0.0)) for _ in range(2)]
    detector = models.detector()
    plain = models.served(models.member_logits(members), detector, temperature=2.0, threshold=0.0)
    augmented = models.served(models.member_logits(members, tta=1), detector, temperature=2.0, threshold=0.0)

    def calibrated(member, x):
        logits = np.log(member.predict(x, verbose=0).astype("float64")) / 2.0
        e = np.exp(logits - logits.max(axis=1, keepdims=True))
        return e / e.sum(axis=1, keepdims=True)

    views = [shifted(images, dy, dx) for dy, dx in ((0, 0), (1, 0), (-1, 0), (0, 1), (0, -1))]
    expected = np.mean([calibrated(m, v) for m in members for v in views], axis=0)
    out = augmented.predict(images, verbose=0)
    np.testing.assert_allclose(out["probabilities"], expected, atol=1e-5)
    np.testing.assert_allclose(
        plain.predict(images, verbose=0)["probabilities"], np.mean([calibrated(m, images) for m in members], axis=0), atol=1e-5
    )
    assert not np.allclose(out["probabilities"], plain.predict(images, verbose=0)["probabilities"], atol=1e-3)
    np.testing.assert_array_equal(out["digit_score"], plain.predict(images, verbose=0)["digit_score"])  # the verdict reads the image alone


def test_averaged_detectors_give_the_mean_of_their_log_odds_and_the_served_verdict_moves_with_the_threshold():
    images = mnist.load_split(MIRROR, "t10k").images[:64].astype("float32")
    training.seed_everything(0)
    members = [models.detector() for _ in range(3)]
    for i, member in enumerate(members):  # untrained detectors say about 50:50; a bias apart, their log-odds differ
        kernel, bias = member.layers[-1].get_weights()
        member.layers[-1].set_weights([kernel * (i + 1), bias + [0.0, i - 1.0]])
    averaged = models.averaged_detector(members)
    assert models.averaged_detector(members[:1]) is members[0]

    def log_odds(probabilities):
        p = probabilities.astype("float64")
        return np.log(p[:, 1]) - np.log(p[:, 0])

    expected = np.mean([log_odds(m.predict(images, verbose=0)) for m in members], axis=0)
    np.testing.assert_allclose(log_odds(averaged.predict(images, verbose=0)), expected, atol=1e-4)
    threshold = float(np.median(expected))
    classifier = models.member_logits([models.build(Model("seed_cnn", [8, 8, 8], 16, 0.0))])
    verdict = models.served(classifier, averaged, temperature=1.0, threshold=threshold).predict(images, verbose=0)["digit_score"]
    np.testing.assert_array_equal(verdict[:, 1] >= 0.5, expected >= threshold)
    assert 0 < (expected >= threshold).sum() < len(images)
