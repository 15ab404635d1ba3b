"""The temperature calibrates held-out predictions, or is not used: calibration.choose_temperature on
predictions whose calibration the test knows."""

from __future__ import annotations

import numpy as np

from mnist_pipeline import calibration


def logits_of(rng: np.random.Generator, n: int, members: int, sharpness: float) -> tuple[np.ndarray, np.ndarray]:
    """Members' logits for n images, drawn so that softmax(logits) is calibrated, times `sharpness`
    (> 1: overconfident), and labels drawn from the calibrated probabilities."""
    base = rng.normal(0, 3, (n, 10))
    p = np.exp(base - base.max(1, keepdims=True))
    p /= p.sum(1, keepdims=True)
    labels = np.array([rng.choice(10, p=row) for row in p])
    logits = np.stack([(base + rng.normal(0, 0.05, base.shape)) * sharpness for _ in range(members)])
    return logits, labels


def test_an_overconfident_model_gets_a_temperature_that_calibrates_images_it_was_not_fitted_on():
    rng = np.random.default_rng(0)
    logits, labels = logits_of(rng, 4000, members=3, sharpness=2.0)
    temperature, fit = calibration.choose_temperature(logits, labels)
    assert fit["kept"] and 1.6 < temperature < 2.4 and fit["ece_crossed"] < fit["ece_without"]
    fresh, fresh_labels = logits_of(rng, 4000, members=3, sharpness=2.0)
    served = calibration.ece(calibration.pooled(fresh, temperature), fresh_labels)[0]
    assert served < calibration.ece(calibration.pooled(fresh), fresh_labels)[0] / 2


def test_a_calibrated_model_is_served_as_it_is():
    rng = np.random.default_rng(1)
    logits, labels = logits_of(rng, 4000, members=1, sharpness=1.0)
    temperature, fit = calibration.choose_temperature(logits, labels)
    assert 0.85 < fit["fitted"] < 1.15
    assert temperature == (fit["fitted"] if fit["kept"] else 1.0)


def test_the_pool_is_calibrated_not_each_member():
    """Members that disagree: their average is less confident than each, so the temperature fitted
    on the pool is lower than one fitted on a member (pool, then calibrate)."""
    rng = np.random.default_rng(2)
    logits, labels = logits_of(rng, 4000, members=1, sharpness=1.5)
    disagreeing = np.stack([logits[0] + rng.normal(0, 2.0, logits[0].shape) for _ in range(6)])
    pooled_t = calibration.fit_temperature(disagreeing, labels)
    member_t = calibration.fit_temperature(disagreeing[:1], labels)
    assert pooled_t < member_t
