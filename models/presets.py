"""The preset architectures (LeNet-5, AlexNet), written as spec layer lists, and their input sizes."""

from __future__ import annotations

from dataclasses import dataclass

from models.spec import (
    ActivationLayer,
    AvgPoolLayer,
    BatchNormLayer,
    ConvLayer,
    DropoutLayer,
    FlattenLayer,
    Layer,
    LinearLayer,
    MaxPoolLayer,
    ModelSpec,
    RegularizationSpec,
)

# AlexNet switches from its small-image layout to the ImageNet one above this input size.
ALEXNET_SMALL_MAX_SIZE = 64


@dataclass(frozen=True)
class PresetInfo:
    """What a preset is, for the catalog and for the builder's defaults."""

    name: str
    description: str
    activation: str
    pooling: str
    default_init: str
    input_size: str


PRESETS: dict[str, PresetInfo] = {
    "lenet5": PresetInfo(
        name="lenet5",
        description="LeCun et al. 1998: conv5x5-6, avgpool, conv5x5-16, avgpool, conv5x5-120, fc84, out",
        activation="tanh",
        pooling="avg",
        default_init="pytorch (uniform +-1/sqrt(fan_in), LeCun-style)",
        input_size="32x32 (the paper's), at least 28x28",
    ),
    "alexnet": PresetInfo(
        name="alexnet",
        description=(
            "Krizhevsky et al. 2012: 5 conv + 3 fc, ReLU, max pooling, dropout in the fc layers; "
            "ImageNet layout (11x11/4 conv 96, 256, 384, 384, 256, fc 4096, 4096) for inputs above "
            f"{ALEXNET_SMALL_MAX_SIZE}px, a scaled 3x3 layout (64, 192, 384, 256, 256, fc 1024, 1024) below"
        ),
        activation="relu",
        pooling="max",
        default_init="kaiming",
        input_size=f"224x224 when the data is larger than {ALEXNET_SMALL_MAX_SIZE}px, else 32x32",
    ),
}


def preset_input_size(arch: str, native_size: int) -> int:
    """The square input size a preset prefers for data of this native size."""
    if arch == "lenet5":
        return 32
    if arch == "alexnet":
        return 32 if native_size <= ALEXNET_SMALL_MAX_SIZE else 224
    raise ValueError(f"unknown preset {arch!r}")


def preset_layers(
    model: ModelSpec, input_size: int, num_classes: int, regularization: RegularizationSpec
) -> list[Layer]:
    """The preset as a layer list, so presets and custom networks share one builder."""
    activation = model.activation or PRESETS[model.arch].activation

    def conv(out_channels: int, kernel_size: int, stride: int = 1, padding: int = 0) -> list[Layer]:
        block: list[Layer] = [
            ConvLayer(
                type="conv",
                out_channels=out_channels,
                kernel_size=kernel_size,
                stride=stride,
                padding=padding,
            )
        ]
        if model.batchnorm:
            block.append(BatchNormLayer(type="batchnorm"))
        return block + [ActivationLayer(type="activation", fn=activation)]

    def fc(out_features: int, dropout: float) -> list[Layer]:
        block: list[Layer] = []
        if dropout > 0:
            block.append(DropoutLayer(type="dropout", p=dropout, mode=regularization.dropout_mode))
        return block + [LinearLayer(type="linear", out_features=out_features)]

    act: list[Layer] = [ActivationLayer(type="activation", fn=activation)]
    flatten: list[Layer] = [FlattenLayer(type="flatten")]

    if model.arch == "lenet5":
        # C3 is fully connected to S2 (the paper's partial connection table is left out), the
        # subsampling layers are plain average pools and the RBF output is a linear layer.
        avg: list[Layer] = [AvgPoolLayer(type="avgpool", kernel_size=2)]
        p = regularization.dropout
        return [
            *conv(6, 5),
            *avg,
            *conv(16, 5),
            *avg,
            *conv(120, 5),
            *flatten,
            *fc(84, p),
            *act,
            *fc(num_classes, p),
        ]

    # AlexNet always has dropout in its first two fc layers, as in the paper: the job's dropout
    # probability if it sets one, else the paper's 0.5.
    p = regularization.dropout if regularization.dropout > 0 else 0.5
    if input_size <= ALEXNET_SMALL_MAX_SIZE:
        pool: list[Layer] = [MaxPoolLayer(type="maxpool", kernel_size=2)]
        features = [
            *conv(64, 3, padding=1),
            *pool,
            *conv(192, 3, padding=1),
            *pool,
            *conv(384, 3, padding=1),
            *conv(256, 3, padding=1),
            *conv(256, 3, padding=1),
            *pool,
        ]
        hidden = 1024
    else:
        # Overlapping 3x3 stride-2 pooling, as in the paper; local response normalisation is left out.
        pool = [MaxPoolLayer(type="maxpool", kernel_size=3, stride=2)]
        features = [
            *conv(96, 11, stride=4, padding=2),
            *pool,
            *conv(256, 5, padding=2),
            *pool,
            *conv(384, 3, padding=1),
            *conv(384, 3, padding=1),
            *conv(256, 3, padding=1),
            *pool,
        ]
        hidden = 4096
    return [*features, *flatten, *fc(hidden, p), *act, *fc(hidden, p), *act, *fc(num_classes, 0.0)]
