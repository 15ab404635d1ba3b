"""Model builders by name. Scaling is the first layer, so every saved model takes raw 0-255 pixels."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator

import numpy as np

from . import quiet_native_stderr
from .params import Model

with quiet_native_stderr():  # TensorFlow's start-up banner (see quiet_native_stderr)
    import keras
    from keras import layers

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
            layers.Dense(NUM_CLASSES, activation="softmax", name="probabilities", dtype=_output_dtype()),
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
            layers.Dense(NUM_CLASSES, activation="softmax", name="probabilities", dtype=_output_dtype()),
        ],
        name="bn_cnn",
    )


BUILDERS = {"seed_cnn": seed_cnn, "bn_cnn": bn_cnn}


def _output_dtype() -> str | None:
    """The last layer's: float32 under a mixed policy (distribute.set_precision), where a softmax
    in bfloat16 or float16 would round the probabilities and the loss; else the policy's own."""
    return "float32" if keras.config.dtype_policy().compute_dtype != "float32" else None


@contextlib.contextmanager
def float32_policy() -> Iterator[None]:
    """Layers built inside compute in float32, whatever Keras's global dtype policy is (a mixed one
    while training: distribute.set_precision). Everything that is saved and served is built here:
    LiteRT has no bfloat16 kernels, and a threshold set on bfloat16 output would not be the served one."""
    previous = keras.config.dtype_policy()
    keras.config.set_dtype_policy("float32")
    try:
        yield
    finally:
        keras.config.set_dtype_policy(previous)


def in_float32(model: keras.Model) -> keras.Model:
    """The model with every layer, nested models' too, computing in float32, same weights (a mixed
    policy keeps its variables in float32 already): what is saved and served, whatever the training
    precision. A model already all float32 is returned as it is."""
    config = model.get_config()
    if _float32_config(config) == config:
        return model
    return _copy(model, model.name)


def _float32_config(config):
    """A model's or layer's config with every dtype policy in it float32."""
    if isinstance(config, dict):
        if config.get("class_name") == "DTypePolicy":
            return config | {"config": config["config"] | {"name": "float32"}}
        return {key: _float32_config(value) for key, value in config.items()}
    if isinstance(config, list):
        return [_float32_config(value) for value in config]
    return config


def build(params: Model) -> keras.Model:
    return BUILDERS[params.name](params.conv_filters, params.dense_units, params.dropout)


def detector() -> keras.Model:
    """Digit or not: a small CNN with two classes, 0 = not a digit, 1 = a digit (about 100,000
    weights, a third of the tutorial CNN's computation). Dropout: it must learn what a digit is,
    not the generator's habits."""
    conv = dict(kernel_size=3, padding="same", activation="relu", kernel_initializer="he_uniform")
    return keras.Sequential(
        [
            keras.Input(INPUT_SHAPE, name="pixels"),
            layers.Rescaling(1 / 255, name="scale"),
            layers.Conv2D(16, **conv),
            layers.MaxPooling2D(2),
            layers.Conv2D(32, **conv),
            layers.MaxPooling2D(2),
            layers.Conv2D(64, **conv),
            layers.MaxPooling2D(2),
            layers.Flatten(),
            layers.Dropout(0.3),
            layers.Dense(128, activation="relu", kernel_initializer="he_uniform"),
            layers.Dropout(0.3),
            layers.Dense(2, activation="softmax", name="digit_or_not", dtype=_output_dtype()),
        ],
        name="detector",
    )


@float32_policy()
def averaged_detector(members: list[keras.Model]) -> keras.Model:
    """One detector of several: softmax of their logits averaged (so its log-odds of "a digit"
    are the mean of theirs), of standard Keras layers. Its last layer is a Dense(2) with an
    identity kernel, as a single detector's last layer is a Dense(2): served() moves the
    threshold into that layer's bias. One member: that member."""
    if len(members) == 1:
        return in_float32(members[0])
    pixels = keras.Input(INPUT_SHAPE, name="pixels")
    logits = layers.Average()([_copy(member, f"detector_{i}", logits=True)(pixels) for i, member in enumerate(members, 1)])
    verdict = layers.Dense(2, activation="softmax", name="digit_or_not")
    model = keras.Model(pixels, verdict(logits), name="averaged_detector")
    verdict.set_weights([np.eye(2, dtype=np.float32), np.zeros(2, np.float32)])
    return model


@float32_policy()
def _copy(model: keras.Model, name: str, logits: bool = False) -> keras.Model:
    """The model under a new name (a model's layers need distinct names), with the same weights,
    computing in float32; `logits`: its last layer without the softmax."""
    config = _float32_config(model.get_config()) | {"name": name}
    if logits:
        config["layers"][-1]["config"]["activation"] = "linear"
    copy = model.__class__.from_config(config)
    copy.set_weights(model.get_weights())
    return copy


def shifted_views(pixels, shift: int) -> list:
    """The image and, if `shift` > 0, four copies of it moved `shift` pixels down, up, right and
    left (zeros coming in), of standard Keras layers."""
    if not shift:
        return [pixels]
    padded = layers.ZeroPadding2D(shift)(pixels)
    both, centred = (0, 2 * shift), (shift, shift)
    crops = [(both, centred), (both[::-1], centred), (centred, both), (centred, both[::-1])]
    return [pixels] + [layers.Cropping2D(crop)(padded) for crop in crops]


@float32_policy()
def member_logits(members: list[keras.Model], tta: int = 0) -> keras.Model:
    """One output for each member and view (the image and, with `tta` > 0, its four shifted
    copies: shifted_views): the member's logits, its softmax left out."""
    pixels = keras.Input(INPUT_SHAPE, name="pixels")
    views = shifted_views(pixels, tta)
    outputs = []
    for i, member in enumerate(members, 1):
        logits = _copy(member, f"member_{i}", logits=True)
        outputs += [logits(view) for view in views]
    return keras.Model(pixels, outputs, name="member_logits")


@float32_policy()
def served(logits: keras.Model, digit_or_not: keras.Model, temperature: float, threshold: float) -> keras.Model:
    """One model with two outputs for predict and serve, of standard Keras layers only (MLflow
    and LiteRT load it as it is):

    - `probabilities`: softmax(logits / temperature) of each output of `logits` (member_logits:
      one member, the final model, or several, the ensemble; each over its views), averaged. The
      temperature is fitted on this average's held-out output (calibration.fit_temperature) and
      leaves the ranking of the digits as it was.
    - `digit_score` (N, 2): the detector's, with its second column >= 0.5 exactly when its
      log-odds of "a digit" reach `threshold`: the verdict, with its threshold inside the model.
    """
    calibrated = [layers.Softmax()(layers.Rescaling(1 / temperature)(z)) for z in logits.outputs]
    probabilities = calibrated[0] if len(calibrated) == 1 else layers.Average()(calibrated)
    shifted = _copy(digit_or_not, "detector")
    last = shifted.layers[-1]
    kernel, bias = last.get_weights()
    last.set_weights([kernel, bias - [0.0, threshold]])  # softmax's p1 = sigmoid(logit1 - logit0 - threshold)
    return keras.Model(logits.input, {"probabilities": probabilities, "digit_score": shifted(logits.input)}, name="served")
