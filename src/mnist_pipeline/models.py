"""Model builders by name. Scaling is the first layer, so every saved model takes raw 0-255 pixels."""

from __future__ import annotations

from . import quiet_native_stderr
from .params import Model

with quiet_native_stderr():  # TensorFlow's start-up banner (see quiet_native_stderr)
    import keras
    from keras import layers, ops

INPUT_SHAPE = (28, 28, 1)
NUM_CLASSES = 10


def seed_cnn(conv_filters: list[int], dense_units: int, dropout: float) -> keras.Model:
    """The tutorial's CNN (159,254 weights with filters [32, 64, 64] and 100 dense units). No dropout."""
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


def bn_cnn(conv_filters: list[int], dense_units: int, dropout: float) -> keras.Model:
    """The strong recipe's CNN: the tutorial's layout, which is cheap on a CPU, with batch norm
    after every convolution and the dense layer, and dropout after each pooling and the dense layer."""
    f1, f2, f3 = conv_filters

    def normed(layer) -> list:
        return [layer, layers.BatchNormalization(), layers.Activation("relu")]

    def conv(filters: int) -> list:
        return normed(layers.Conv2D(filters, 3, use_bias=False, kernel_initializer="he_uniform"))

    return keras.Sequential(
        [
            keras.Input(INPUT_SHAPE, name="pixels"),
            layers.Rescaling(1 / 255, name="scale"),
            *conv(f1),
            layers.MaxPooling2D(2),
            layers.Dropout(dropout),
            *conv(f2),
            *conv(f3),
            layers.MaxPooling2D(2),
            layers.Dropout(dropout),
            layers.Flatten(),
            *normed(layers.Dense(dense_units, use_bias=False, kernel_initializer="he_uniform")),
            layers.Dropout(dropout),
            layers.Dense(NUM_CLASSES, activation="softmax", name="probabilities"),
        ],
        name="bn_cnn",
    )


BUILDERS = {"seed_cnn": seed_cnn, "bn_cnn": bn_cnn}


def build(params: Model) -> keras.Model:
    return BUILDERS[params.name](params.conv_filters, params.dense_units, params.dropout)


def detector() -> keras.Model:
    """Digit or not: a small CNN with two classes, 0 = not a digit, 1 = a digit (about 30,000 weights)."""
    conv = dict(kernel_size=3, activation="relu", kernel_initializer="he_uniform")
    return keras.Sequential(
        [
            keras.Input(INPUT_SHAPE, name="pixels"),
            layers.Rescaling(1 / 255, name="scale"),
            layers.Conv2D(32, **conv),
            layers.MaxPooling2D(2),
            layers.Conv2D(64, **conv),
            layers.MaxPooling2D(2),
            layers.Conv2D(64, **conv),
            layers.Flatten(),
            layers.Dense(100, activation="relu", kernel_initializer="he_uniform"),
            layers.Dense(2, activation="softmax", name="digit_or_not"),
        ],
        name="detector",
    )


@keras.saving.register_keras_serializable("mnist_pipeline")
class Temperature(layers.Layer):
    """Probabilities made less (T > 1) or more (T < 1) sure: softmax(log(p) / T). The class
    ranking is unchanged; T is fitted on held-out predictions (evaluation.fit_temperature)."""

    def __init__(self, temperature: float, **kwargs):
        super().__init__(**kwargs)
        self.temperature = float(temperature)

    def call(self, probabilities):
        return ops.softmax(ops.log(ops.maximum(probabilities, 1e-30)) / self.temperature, axis=-1)

    def get_config(self):
        return super().get_config() | {"temperature": self.temperature}


def served(classifier: keras.Model, digit_or_not: keras.Model, temperature: float, threshold: float) -> keras.Model:
    """One model with two outputs for predict and serve: `probabilities`, the classifier's
    calibrated by `temperature`, and `digit_score` (N, 2), whose second column is >= 0.5 exactly
    when the detector's log-odds of "a digit" reach `threshold`: the verdict, with its threshold
    inside the model."""
    pixels = keras.Input(INPUT_SHAPE, name="pixels")
    shifted = digit_or_not.__class__.from_config(digit_or_not.get_config() | {"name": "detector"})
    shifted.set_weights(digit_or_not.get_weights())
    last = shifted.layers[-1]
    kernel, bias = last.get_weights()
    last.set_weights([kernel, bias - [0.0, threshold]])  # softmax's p1 = sigmoid(logit1 - logit0 - threshold)
    probabilities = Temperature(temperature, name="probabilities")(classifier(pixels))
    return keras.Model(pixels, {"probabilities": probabilities, "digit_score": shifted(pixels)}, name="served")


def ensemble(members: list[keras.Model]) -> keras.Model:
    """One model whose output is the mean of the members' probabilities. Each member is copied
    under its own name (member_1, ...), since a model's layers need distinct names."""
    pixels = keras.Input(INPUT_SHAPE, name="pixels")
    outputs = []
    for i, member in enumerate(members, 1):
        copy = member.__class__.from_config(member.get_config() | {"name": f"member_{i}"})
        copy.set_weights(member.get_weights())
        outputs.append(copy(pixels))
    return keras.Model(pixels, layers.Average(name="probabilities")(outputs), name="ensemble")
