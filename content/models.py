"""The study's four models, as the walkthrough writes them, layer by layer (Keras 3).

study.yml names each builder (`content/models.py:model_one`, ...); catdog-report calls it with
the keyword arguments it asks for (image_size, weights, parent) and trains what it returns.
The one change Keras 3 requires: `mobilenet_v2.preprocess_input` inside a nested Model becomes
the equivalent `Rescaling(1/127.5, offset=-1)` layer, and model four calls its frozen base
directly in inference mode instead of through a wrapper Model.
"""

import keras
from keras import layers


def compile_model(model):
    """Adam and sparse categorical cross-entropy on the two logits, as the walkthrough."""
    model.compile(optimizer="adam",
                  loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True),
                  metrics=["accuracy"])
    return model


def conv_block(filters, padding="valid"):
    """The walkthrough's block: Conv2D 3x3, MaxPooling2D 2, BatchNormalization, ReLU."""
    return [layers.Conv2D(filters, (3, 3), padding=padding), layers.MaxPooling2D((2, 2)),
            layers.BatchNormalization(), layers.Activation("relu")]


def augmentation():
    """Random flips both ways and rotations of up to 0.2 of a turn, seeded as it seeds them."""
    return [layers.RandomFlip(mode="horizontal_and_vertical", seed=0),
            layers.RandomRotation(factor=0.2, seed=0)]


def preprocess_input():
    """mobilenet_v2.preprocess_input (x / 127.5 - 1) as a layer Keras 3 can save."""
    return layers.Rescaling(1.0 / 127.5, offset=-1.0)


def head(units):
    """Flatten, Dense(units, relu), Dropout 0.5 and the two output logits."""
    return [layers.Flatten(), layers.Dense(units, activation="relu"), layers.Dropout(0.5),
            layers.Dense(2)]


def model_one(image_size):
    """Conv2D 32 (no activation) → pool → BatchNorm → ReLU, then two Conv2D 64 with pooling."""
    return compile_model(keras.Sequential([
        keras.Input(shape=(image_size, image_size, 3)),
        layers.Conv2D(32, (3, 3)),
        layers.MaxPooling2D((2, 2)),
        layers.BatchNormalization(),
        layers.Activation("relu"),
        layers.Conv2D(64, (3, 3), activation="relu"),
        layers.MaxPooling2D((2, 2)),
        layers.Conv2D(64, (3, 3), activation="relu"),
        layers.MaxPooling2D((2, 2)),
        *head(128),
    ], name="model_one"))


def model_two(image_size):
    """Random flips and rotations, then three blocks of 32, 64 and 64 filters."""
    return compile_model(keras.Sequential([
        keras.Input(shape=(image_size, image_size, 3)),
        *augmentation(),
        *conv_block(32), *conv_block(64), *conv_block(64),
        *head(128),
    ], name="model_two"))


def model_three(image_size):
    """MobileNetV2's preprocess_input first, then model two's flips, rotations and blocks."""
    return compile_model(keras.Sequential([
        keras.Input(shape=(image_size, image_size, 3)),
        preprocess_input(),
        *augmentation(),
        *conv_block(32), *conv_block(64), *conv_block(64),
        *head(128),
    ], name="model_three"))


def model_four(image_size, weights):
    """preprocess_input, RandomFlip, the frozen ImageNet MobileNetV2 (inference mode),
    RandomRotation, same-padded blocks of 32 and 64 filters, Dense 32, Dropout, Dense 2."""
    base_model = keras.applications.MobileNetV2(input_shape=(image_size, image_size, 3),
                                                include_top=False, weights=weights)
    base_model.trainable = False
    inputs = keras.Input(shape=(image_size, image_size, 3))
    x = preprocess_input()(inputs)
    x = layers.RandomFlip(mode="horizontal_and_vertical", seed=0)(x)
    x = base_model(x, training=False)
    x = layers.RandomRotation(factor=0.2, seed=0)(x)
    for layer in [*conv_block(32, "same"), *conv_block(64, "same"), *head(32)]:
        x = layer(x)
    return compile_model(keras.Model(inputs, x, name="model_four"))
