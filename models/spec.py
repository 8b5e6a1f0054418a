"""The JobSpec: the one definition of a training job, shared by API, worker and catalog."""

from __future__ import annotations

from typing import Annotated, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

Activation = Literal["relu", "tanh", "sigmoid", "leaky_relu", "none"]
DropoutMode = Literal["inverted", "vanilla"]
Init = Literal["default", "xavier", "kaiming"]
Unit = Literal["epoch", "step"]

# Probabilities of dropping a unit: 1.0 would drop everything, so it is refused.
DropProbability = Annotated[float, Field(ge=0.0, lt=1.0)]
PositiveFloat = Annotated[float, Field(gt=0.0, allow_inf_nan=False)]


class Strict(BaseModel):
    """Unknown fields are refused everywhere: a typo must not silently train something else."""

    model_config = ConfigDict(extra="forbid", allow_inf_nan=False)


# ---------------------------------------------------------------- dataset


class DigitsDataset(Strict):
    """scikit-learn's 8x8 handwritten digits (1797 images, 10 classes), shipped in the package."""

    name: Literal["digits"]
    image_size: int | None = Field(
        None, ge=4, le=512, description="resize to this square size; default: the model's"
    )
    val_fraction: float = Field(0.15, gt=0.0, lt=0.5)
    test_fraction: float = Field(0.15, gt=0.0, lt=0.5)
    train_fraction: float = Field(
        1.0, gt=0.0, le=1.0, description="use only this share of the training split"
    )
    split_seed: int = Field(0, ge=0, description="fixes the split, independent of the training seed")


class SyntheticDataset(Strict):
    """Learnable generated images, for speed and scale tests."""

    name: Literal["synthetic"]
    channels: int = Field(1, ge=1, le=16)
    size: int = Field(32, ge=4, le=512)
    classes: int = Field(10, ge=2, le=1000)
    samples: int = Field(2000, ge=20, le=1_000_000)
    seed: int = Field(0, ge=0)
    image_size: int | None = Field(None, ge=4, le=512)
    val_fraction: float = Field(0.15, gt=0.0, lt=0.5)
    test_fraction: float = Field(0.15, gt=0.0, lt=0.5)
    train_fraction: float = Field(1.0, gt=0.0, le=1.0)
    split_seed: int = Field(0, ge=0)


DatasetSpec = Annotated[DigitsDataset | SyntheticDataset, Field(discriminator="name")]


# ---------------------------------------------------------------- model


class ConvLayer(Strict):
    type: Literal["conv"]
    out_channels: int = Field(ge=1, le=4096)
    kernel_size: int = Field(3, ge=1, le=31)
    stride: int = Field(1, ge=1, le=16)
    padding: int = Field(0, ge=0, le=31)


class MaxPoolLayer(Strict):
    type: Literal["maxpool"]
    kernel_size: int = Field(2, ge=1, le=31)
    stride: int | None = Field(None, ge=1, le=31)


class AvgPoolLayer(Strict):
    type: Literal["avgpool"]
    kernel_size: int = Field(2, ge=1, le=31)
    stride: int | None = Field(None, ge=1, le=31)


class ActivationLayer(Strict):
    type: Literal["activation"]
    fn: Activation


class BatchNormLayer(Strict):
    type: Literal["batchnorm"]


class DropoutLayer(Strict):
    type: Literal["dropout"]
    p: DropProbability = 0.5
    mode: DropoutMode = "inverted"


class FlattenLayer(Strict):
    type: Literal["flatten"]


class LinearLayer(Strict):
    type: Literal["linear"]
    out_features: int = Field(ge=1, le=65536)


Layer = Annotated[
    ConvLayer
    | MaxPoolLayer
    | AvgPoolLayer
    | ActivationLayer
    | BatchNormLayer
    | DropoutLayer
    | FlattenLayer
    | LinearLayer,
    Field(discriminator="type"),
]

Preset = Literal["lenet5", "alexnet"]


class ModelSpec(Strict):
    """Either a preset (`arch`) or a layer list (`layers`, taken as written)."""

    arch: Preset | None = None
    layers: list[Layer] | None = Field(None, min_length=1, max_length=200)
    activation: Activation | None = Field(None, description="preset only; default: the preset's own")
    init: Init = "default"
    batchnorm: bool = Field(False, description="preset only: batch norm after each conv")

    @model_validator(mode="after")
    def _one_kind(self) -> ModelSpec:
        if (self.arch is None) == (self.layers is None):
            raise ValueError("give exactly one of 'arch' (a preset) or 'layers' (a layer list)")
        if self.layers is not None and (self.activation is not None or self.batchnorm):
            raise ValueError("'activation' and 'batchnorm' apply to presets; write them as layers instead")
        return self


# ---------------------------------------------------------------- optimizer


class SGD(Strict):
    type: Literal["sgd"]
    lr: PositiveFloat = 0.05


class Momentum(Strict):
    type: Literal["momentum"]
    lr: PositiveFloat = 0.01
    momentum: float = Field(0.9, ge=0.0, lt=1.0, description="mu")
    momentum_ramp: MomentumRamp | None = None


class Nesterov(Strict):
    type: Literal["nesterov"]
    lr: PositiveFloat = 0.01
    momentum: float = Field(0.9, ge=0.0, lt=1.0, description="mu")
    momentum_ramp: MomentumRamp | None = None


class MomentumRamp(Strict):
    """Raise mu linearly from `start` to the optimizer's `momentum` over `epochs` epochs."""

    start: float = Field(0.5, ge=0.0, lt=1.0)
    epochs: int = Field(5, ge=1, le=1000)


class AdaGrad(Strict):
    type: Literal["adagrad"]
    lr: PositiveFloat = 0.01
    eps: PositiveFloat = 1e-7


class RMSprop(Strict):
    type: Literal["rmsprop"]
    lr: PositiveFloat = 0.001
    decay_rate: float = Field(0.99, gt=0.0, lt=1.0)
    eps: PositiveFloat = 1e-7


class Adam(Strict):
    type: Literal["adam"]
    lr: PositiveFloat = 0.001
    beta1: float = Field(0.9, ge=0.0, lt=1.0)
    beta2: float = Field(0.999, ge=0.0, lt=1.0)
    eps: PositiveFloat = 1e-8


OptimizerSpec = Annotated[SGD | Momentum | Nesterov | AdaGrad | RMSprop | Adam, Field(discriminator="type")]


# ---------------------------------------------------------------- learning-rate schedule


class ConstantSchedule(Strict):
    type: Literal["constant"]
    warmup_steps: int = Field(0, ge=0)


class StepSchedule(Strict):
    type: Literal["step"]
    step_size: int = Field(ge=1, description="decay every step_size units")
    gamma: float = Field(0.1, gt=0.0, le=1.0)
    unit: Unit = "epoch"
    warmup_steps: int = Field(0, ge=0)


class ExponentialSchedule(Strict):
    type: Literal["exponential"]
    k: float = Field(ge=0.0, le=100.0, description="a = a0 * exp(-k t)")
    unit: Unit = "epoch"
    warmup_steps: int = Field(0, ge=0)


class InverseTimeSchedule(Strict):
    type: Literal["inverse_time"]
    k: float = Field(ge=0.0, le=100.0, description="a = a0 / (1 + k t)")
    unit: Unit = "epoch"
    warmup_steps: int = Field(0, ge=0)


ScheduleSpec = Annotated[
    ConstantSchedule | StepSchedule | ExponentialSchedule | InverseTimeSchedule,
    Field(discriminator="type"),
]


# ---------------------------------------------------------------- the rest


class RegularizationSpec(Strict):
    dropout: DropProbability = Field(
        0.0, description="probability of dropping a unit in the preset's fc layers"
    )
    dropout_mode: DropoutMode = "inverted"
    weight_decay: float = Field(0.0, ge=0.0, le=1.0, description="L2 penalty added to the gradient")


class TrainingSpec(Strict):
    epochs: int = Field(10, ge=1, le=1000)
    batch_size: int = Field(64, ge=1, le=8192)
    seed: int = Field(0, ge=0, le=2**31 - 1)


class EnsembleSpec(Strict):
    members: int = Field(1, ge=1, le=1)  # issue 4 lifts this once members fan out
    param_averaging: Literal["none"] = "none"


class JobSpec(Strict):
    name: str | None = Field(None, min_length=1, max_length=120)
    dataset: DatasetSpec
    model: ModelSpec
    optimizer: OptimizerSpec = Field(default_factory=lambda: SGD(type="sgd"))
    lr_schedule: ScheduleSpec = Field(default_factory=lambda: ConstantSchedule(type="constant"))
    regularization: RegularizationSpec = Field(default_factory=RegularizationSpec)
    training: TrainingSpec = Field(default_factory=TrainingSpec)
    ensemble: EnsembleSpec = Field(default_factory=EnsembleSpec)

    @field_validator("name")
    @classmethod
    def _printable(cls, name: str | None) -> str | None:
        if name is not None and not name.isprintable():
            raise ValueError("name must be printable text")
        return name

    @property
    def display_name(self) -> str:
        return self.name or f"{self.model.arch or 'custom'}-{self.optimizer.type}"


Momentum.model_rebuild()
Nesterov.model_rebuild()
