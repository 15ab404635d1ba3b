"""Model builders by name. Scaling is the first layer, so every saved model takes raw 0-255 pixels."""

from __future__ import annotations

import keras
from keras import layers

from .params import Model

INPUT_SHAPE = (28, 28, 1)
NUM_CLASSES = 10


def seed_cnn(conv_filters: list[int], dense_units: int) -> keras.Model:
    """The tutorial's CNN (159,254 weights with filters [32, 64, 64] and 100 dense units)."""
    f1, f2, f3 = conv_filters
    conv = dict(kernel_size=3, activation="relu", kernel_initializer="he_uniform")
    return keras.Sequential(
        [
            keras.Input(INPUT_SHAPE, name="pixels"),
            layers.Rescaling(1 / 255, name="scale"),
            layers.Conv2D(f1, **conv),
            layers.MaxPooling2D(2),
            layers.Conv2D(f2, **conv),
            layers.Conv2D(f3, **conv),
            layers.MaxPooling2D(2),
            layers.Flatten(),
            layers.Dense(dense_units, activation="relu", kernel_initializer="he_uniform"),
            layers.Dense(NUM_CLASSES, activation="softmax", name="probabilities"),
        ],
        name="seed_cnn",
    )


BUILDERS = {"seed_cnn": seed_cnn}


def build(params: Model) -> keras.Model:
    return BUILDERS[params.name](params.conv_filters, params.dense_units)
