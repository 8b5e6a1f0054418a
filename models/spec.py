"""The JobSpec: the one definition of a training job, shared by API, worker and catalog."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Annotated, Any, Literal

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    HttpUrl,
    ValidationError,
    ValidationInfo,
    field_validator,
    model_validator,
)
from pydantic_core import InitErrorDetails, PydanticCustomError

Activation = Literal["relu", "tanh", "sigmoid", "leaky_relu", "none"]
DropoutMode = Literal["inverted", "vanilla"]
Init = Literal["default", "xavier", "kaiming"]
Unit = Literal["epoch", "step"]

# Probabilities of dropping a unit: 1.0 would drop everything, so it is refused.
DropProbability = Annotated[float, Field(ge=0.0, lt=1.0)]
PositiveFloat = Annotated[float, Field(gt=0.0, allow_inf_nan=False)]
Tag = Annotated[str, Field(pattern=r"^[A-Za-z0-9][A-Za-z0-9_.:=-]{0,63}$")]


def printable_name(name: str | None) -> str | None:
    """A job's or a sweep's name is shown in lists, logs and the dashboard: printable text, one line."""
    if name is not None and not name.isprintable():
        raise ValueError("name must be printable text")
    return name


class SpecError(ValueError):
    """A spec that is well-formed but cannot run; `loc` is the field path inside the JobSpec."""

    def __init__(self, loc: tuple, message: str):
        super().__init__(message)
        self.loc = tuple(loc)
        self.message = message

    def __reduce__(self):  # picklable across processes (e.g. a worker's error report)
        return type(self), (self.loc, self.message)


class Strict(BaseModel):
    """Unknown fields are refused everywhere: a typo must not silently train something else."""

    model_config = ConfigDict(extra="forbid", allow_inf_nan=False)


# ---------------------------------------------------------------- dataset


class SplitOptions(Strict):
    """How a dataset is resized and cut into train, val and test; the split is fixed by `split_seed`."""

    image_size: int | None = Field(
        None, ge=4, le=512, description="resize to this square size; default: the model's"
    )
    val_fraction: float = Field(
        0.15, gt=0.0, lt=0.5, description="held out for validation (from the official train set, if any)"
    )
    test_fraction: float = Field(0.15, gt=0.0, lt=0.5, description="held out for the final test")
    train_fraction: float = Field(
        1.0, gt=0.0, le=1.0, description="use only this share of the training split"
    )
    split_seed: int = Field(0, ge=0, description="fixes the split, independent of the training seed")


class OfficialSplitOptions(SplitOptions):
    """For datasets published with their own test set: that set is the test split, val comes from train."""

    test_fraction: float = Field(
        1.0, gt=0.0, le=1.0, description="evaluate on this share of the official test set"
    )


class DigitsDataset(SplitOptions):
    """scikit-learn's 8x8 handwritten digits (1797 images, 10 classes), shipped in the package."""

    name: Literal["digits"]


class SyntheticDataset(SplitOptions):
    """Learnable generated images, for speed and scale tests."""

    name: Literal["synthetic"]
    channels: int = Field(1, ge=1, le=16)
    size: int = Field(32, ge=4, le=512)
    classes: int = Field(10, ge=2, le=1000)
    samples: int = Field(2000, ge=20, le=1_000_000)
    seed: int = Field(0, ge=0)


class MnistDataset(OfficialSplitOptions):
    """MNIST handwritten digits (60000 + 10000 images, 28x28, 10 classes), read from the data directory."""

    name: Literal["mnist"]


class FashionMnistDataset(OfficialSplitOptions):
    """Fashion-MNIST clothing images (60000 + 10000, 28x28, 10 classes): data directory or Debian package."""

    name: Literal["fashion_mnist"]


class Cifar10Dataset(OfficialSplitOptions):
    """CIFAR-10 colour images (50000 + 10000, 3x32x32, 10 classes), read from the data directory."""

    name: Literal["cifar10"]


class UploadDataset(SplitOptions):
    """A dataset uploaded with POST /v1/datasets (an .npz of x and y), named by its id."""

    name: Literal["upload"]
    id: str = Field(pattern=r"^[0-9a-f]{32}$", description="the id POST /v1/datasets answered")


DatasetSpec = Annotated[
    DigitsDataset | SyntheticDataset | MnistDataset | FashionMnistDataset | Cifar10Dataset | UploadDataset,
    Field(discriminator="name"),
]


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
    lr: PositiveFloat = Field(
        0.3,
        description=(
            "learning rate; 0.3 takes LeNet-5 on digits past 95% test accuracy within 15 epochs, where the "
            "common first try 0.1 falls short. AlexNet diverges at it: its own default (presets[].defaults) "
            "is lower"
        ),
    )


class Momentum(Strict):
    type: Literal["momentum"]
    lr: PositiveFloat = Field(
        0.05,
        description=(
            "learning rate; along a steady gradient the step grows to lr/(1-mu), 10x lr at mu 0.9. "
            "0.05 takes LeNet-5 on digits past 95% test accuracy within 15 epochs (0.01 falls short)"
        ),
    )
    momentum: float = Field(0.9, ge=0.0, lt=1.0, description="mu")
    momentum_ramp: MomentumRamp | None = None


class Nesterov(Strict):
    type: Literal["nesterov"]
    lr: PositiveFloat = Field(
        0.05,
        description=(
            "learning rate; along a steady gradient the step grows to lr/(1-mu), 10x lr at mu 0.9. "
            "0.05 takes LeNet-5 on digits past 95% test accuracy within 15 epochs (0.01 falls short)"
        ),
    )
    momentum: float = Field(0.9, ge=0.0, lt=1.0, description="mu")
    momentum_ramp: MomentumRamp | None = None


class MomentumRamp(Strict):
    """Raise mu linearly from `start` to the optimizer's `momentum` over `epochs` epochs."""

    start: float = Field(0.5, ge=0.0, lt=1.0)
    epochs: int = Field(5, ge=1, le=1000)


class AdaGrad(Strict):
    type: Literal["adagrad"]
    lr: PositiveFloat = Field(0.01, description="learning rate; the usual default (torch's too)")
    eps: PositiveFloat = 1e-7


class RMSprop(Strict):
    type: Literal["rmsprop"]
    lr: PositiveFloat = Field(0.001, description="learning rate; the usual default (Keras's)")
    decay_rate: float = Field(0.99, gt=0.0, lt=1.0)
    eps: PositiveFloat = 1e-7


class Adam(Strict):
    type: Literal["adam"]
    lr: PositiveFloat = Field(0.001, description="learning rate; the usual default (Kingma & Ba 2015)")
    beta1: float = Field(0.9, ge=0.0, lt=1.0)
    beta2: float = Field(0.999, ge=0.0, lt=1.0)
    eps: PositiveFloat = 1e-8


OptimizerSpec = Annotated[SGD | Momentum | Nesterov | AdaGrad | RMSprop | Adam, Field(discriminator="type")]


# ---------------------------------------------------------------- a preset's own defaults


@dataclass(frozen=True)
class PresetDefaults:
    """What a job on a preset trains with where its spec leaves it out, in place of the spec's own
    defaults (which layer lists keep); JobSpec writes them into the spec, so the stored spec says what ran."""

    optimizer: str | None = None  # the optimizer's type where the spec gives none (None: sgd)
    lr: dict[str, float] = field(default_factory=dict)  # by optimizer type, where the optimizer gives none
    epochs: int | None = None  # where training gives none (None: TrainingSpec's)


# Measured in docs/benchmarks.md#preset-defaults. AlexNet (no batchnorm) diverges within 3 steps at
# LeNet-5's sgd 0.3 (and at 0.1), adagrad 0.01 and rmsprop 0.001 (whose first step moves every weight by
# about 0.01); momentum at 0.01 learns slowly. Adam at 3e-4 passes 90% on digits in 4 epochs on every
# seed tried (1e-3 ends lower); 10 epochs would cost 2.5x the time for nothing, 3 leave little to spare.
PRESET_DEFAULTS: dict[str, PresetDefaults] = {
    "lenet5": PresetDefaults(),
    "alexnet": PresetDefaults(
        optimizer="adam",
        lr={"sgd": 0.01, "momentum": 1e-3, "nesterov": 1e-3, "adagrad": 1e-3, "rmsprop": 1e-4, "adam": 3e-4},
        epochs=4,
    ),
}


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


class CosineSchedule(Strict):
    """One half-cosine from the lr down to eta_min (torch.optim.lr_scheduler.CosineAnnealingLR)."""

    type: Literal["cosine"]
    t_max: int | None = Field(
        None,
        ge=1,
        description="units from the lr down to eta_min (torch's T_max); past them the cosine rises "
        "again; default: the whole training (epochs, or epochs times steps per epoch)",
    )
    eta_min: float = Field(0.0, ge=0.0, description="the lowest lr, reached after t_max units")
    unit: Unit = "epoch"
    warmup_steps: int = Field(0, ge=0)


class CosineRestartsSchedule(Strict):
    """SGDR (Loshchilov & Hutter 2017): cosine cycles that restart at the lr, each t_mult times longer
    than the one before (torch.optim.lr_scheduler.CosineAnnealingWarmRestarts)."""

    type: Literal["cosine_restarts"]
    t_0: int = Field(ge=1, description="units in the first cycle (torch's T_0)")
    t_mult: int = Field(1, ge=1, le=10, description="each cycle is t_mult times the one before")
    eta_min: float = Field(0.0, ge=0.0, description="the lr at the end of each cycle")
    unit: Unit = "epoch"
    warmup_steps: int = Field(0, ge=0)


ScheduleSpec = Annotated[
    ConstantSchedule
    | StepSchedule
    | ExponentialSchedule
    | InverseTimeSchedule
    | CosineSchedule
    | CosineRestartsSchedule,
    Field(discriminator="type"),
]


# ---------------------------------------------------------------- the rest


class RegularizationSpec(Strict):
    dropout: DropProbability = Field(
        0.0, description="probability of dropping a unit in the preset's fc layers"
    )
    dropout_mode: DropoutMode = "inverted"
    weight_decay: float = Field(0.0, ge=0.0, le=1.0, description="L2 penalty added to the gradient")


class EarlyStopping(Strict):
    """Stop when the validation metric has not improved for `patience` epochs in a row."""

    metric: Literal["val_acc", "val_loss"] = Field(
        "val_acc", description="watched after every epoch: higher val_acc or lower val_loss is better"
    )
    patience: int = Field(3, ge=1, le=1000, description="epochs without improvement before stopping")
    min_delta: float = Field(
        0.0, ge=0.0, description="an improvement is better than the best so far by more than this"
    )


MAX_TRANSLATE = 8


class AugmentSpec(Strict):
    """Random changes to each training batch, made on the training device; evaluation sees the images as
    they are, unless `eval_flip` asks it to average over each image and its mirror."""

    flip: bool = Field(False, description="mirror each training image left to right with probability 1/2")
    translate: int = Field(
        0,
        ge=0,
        le=MAX_TRANSLATE,
        description="shift each training image by up to this many pixels in each direction (pad with the "
        "edge pixels, then crop); 0: no shift",
    )
    eval_flip: bool = Field(
        False,
        description="validation and test metrics average the probabilities of each image and its mirror "
        "(test-time flip averaging); predictions ask for it with ?tta=flip",
    )


class TrainingSpec(Strict):
    epochs: int = Field(10, ge=1, le=1000)
    batch_size: int = Field(64, ge=1, le=8192)
    seed: int = Field(0, ge=0, le=2**31 - 1)
    compile: Literal["auto"] | bool = Field(
        "auto",
        description=(
            "torch.compile the network for training: about 30 s of compiling before the first step "
            "(seconds when the worker has compiled the same network before), then faster steps (lenet5 on a "
            "2-core CPU: 1.15-1.2x; the gain depends on network and device). auto: time the first eager "
            "steps and compile if the steps left repay the compile twice over; the job's metrics.engine "
            "says what was chosen and why. The weights, checkpoints and metrics are the same as without, to "
            "float rounding; if compiling fails, the job trains without it"
        ),
    )
    priority: int = Field(
        0,
        ge=-100,
        le=100,
        description="among its tenant's jobs waiting for a training slot, a higher priority starts first "
        "(equal ones: oldest first); between tenants the slots are shared fairly whatever the priority",
    )
    early_stopping: EarlyStopping | None = Field(
        None, description="stop before `epochs` once the validation metric stops improving; null: never"
    )
    augment: AugmentSpec | None = Field(
        None, description="random flips and shifts of the training batches; null: none"
    )
    keep: Literal["best", "last"] | None = Field(
        None,
        description="whose weights become the run: the best epoch's (by early_stopping.metric, else "
        "val_acc) or the last epoch's; default (null): best with early_stopping, else last",
    )

    @model_validator(mode="after")
    def _resolve_keep(self) -> TrainingSpec:
        # Resolved here, so the stored spec says which weights the run kept.
        if self.keep is None:
            self.keep = "best" if self.early_stopping is not None else "last"
        return self


MAX_MEMBERS = 32


class EnsembleSpec(Strict):
    """Independent members (seeds `training.seed + k`) and parameter averaging within each run."""

    members: int = Field(
        1,
        ge=1,
        le=MAX_MEMBERS,
        description="train this many members, member k with seed training.seed + k; more than one makes "
        "an ensemble (method mean_probs) when all have finished",
    )
    strategy: Literal["auto", "fanout", "vmap", "sequential"] = Field(
        "auto",
        description="how members train: fanout (one task per member, in parallel on as many workers), "
        "vmap (all in one task, vectorized with torch.func), sequential (one task, one after another); "
        "auto picks the faster for the worker's device and the job's batch size",
    )
    param_averaging: Literal["none", "polyak", "ema"] = Field(
        "none",
        description="also keep averaged weights (torch.optim.swa_utils.AveragedModel): polyak, the "
        "plain mean of the weights after every step from averaging_start_epoch; ema, an exponential "
        "moving average with ema_decay",
    )
    ema_decay: float = Field(0.999, gt=0.0, lt=1.0, description="for ema: the weight kept each step")
    averaging_start_epoch: int | None = Field(
        None, ge=0, description="first epoch averaged; default: half the epochs for polyak, 0 for ema"
    )
    snapshots: int = Field(
        1,
        ge=1,
        le=MAX_MEMBERS,
        description="snapshot ensemble (Huang et al. 2017): train one run through this many cosine cycles "
        "(lr_schedule cosine_restarts with t_0 = epochs / snapshots) and keep the weights at the end of "
        "each as the members of one ensemble (method mean_probs); epochs must be a multiple",
    )

    def member_seed(self, base_seed: int, member: int) -> int:
        return base_seed + member


class ResourcesSpec(Strict):
    """What a job needs of the worker that trains it; each need is a queue of its own (store/queue.py)."""

    gpu: bool = Field(
        False,
        description="train only on a worker with a GPU (the queue trainyard.gpu, which only workers with "
        "a GPU take); with no such worker the job waits, queued, until one starts. false: any worker, "
        "a GPU one included, trains it",
    )


class JobSpec(Strict):
    name: str | None = Field(None, min_length=1, max_length=120)
    tags: list[Tag] = Field(
        default_factory=list,
        max_length=16,
        description="labels to find the job and its runs by (GET /v1/jobs?tag=, /v1/runs?tag=): 1-64 of "
        "letters, digits and _.:=-",
    )
    dataset: DatasetSpec
    model: ModelSpec
    optimizer: OptimizerSpec = Field(default_factory=lambda: SGD(type="sgd"))
    lr_schedule: ScheduleSpec = Field(default_factory=lambda: ConstantSchedule(type="constant"))
    regularization: RegularizationSpec = Field(default_factory=RegularizationSpec)
    training: TrainingSpec = Field(default_factory=TrainingSpec)
    ensemble: EnsembleSpec = Field(default_factory=EnsembleSpec)
    resources: ResourcesSpec = Field(default_factory=ResourcesSpec)
    notify_url: HttpUrl | None = Field(
        None,
        description="POST the job's summary here when it ends (succeeded, failed or cancelled), signed "
        "as Standard Webhooks (webhook-id, webhook-timestamp, webhook-signature) with the tenant's "
        "webhook secret; an ensemble job notifies once, not per member",
    )

    @model_validator(mode="before")
    @classmethod
    def _preset_defaults(cls, data: Any) -> Any:
        """The preset's optimizer, lr and epochs (PRESET_DEFAULTS) where the spec gives none, written in
        before the spec is checked, so the checks (eta_min below lr, ...) see what will run."""
        model = data.get("model") if isinstance(data, dict) else None
        arch = model.get("arch") if isinstance(model, dict) else getattr(model, "arch", None)
        if not isinstance(arch, str) or arch not in PRESET_DEFAULTS:
            return data  # a layer list, or a model that its own validation refuses
        defaults, data = PRESET_DEFAULTS[arch], dict(data)
        if "optimizer" not in data and defaults.optimizer is not None:
            data["optimizer"] = {"type": defaults.optimizer}
        optimizer = data.get("optimizer")
        kind = optimizer.get("type") if isinstance(optimizer, dict) else getattr(optimizer, "type", None)
        if isinstance(kind, str) and kind in defaults.lr:
            data["optimizer"] = _with_default(optimizer, "lr", defaults.lr[kind])
        if defaults.epochs is not None:
            data["training"] = _with_default(data.get("training", {}), "epochs", defaults.epochs)
        return data

    @field_validator("name")
    @classmethod
    def _printable(cls, name: str | None) -> str | None:
        return printable_name(name)

    @field_validator("regularization")
    @classmethod
    def _dropout_needs_a_preset(cls, regularization: RegularizationSpec, info: ValidationInfo):
        model = info.data.get("model")  # fields validate in order: `model` is already checked
        if model is not None and model.layers is not None and regularization.dropout > 0:
            raise ValueError(
                "'dropout' here applies to a preset's fc layers; a layer list takes dropout layers"
            )
        return regularization

    @field_validator("ensemble")
    @classmethod
    def _averaging_starts_in_time(cls, ensemble: EnsembleSpec, info: ValidationInfo):
        training = info.data.get("training")
        start = ensemble.averaging_start_epoch
        if training is not None and start is not None and start >= training.epochs:
            raise ValueError(
                f"averaging_start_epoch {start} is not before the last epoch (epochs: {training.epochs})"
            )
        return ensemble

    @field_validator("ensemble")
    @classmethod
    def _vmap_trains_in_lock_step(cls, ensemble: EnsembleSpec, info: ValidationInfo):
        training = info.data.get("training")
        if training is not None and training.early_stopping is not None and ensemble.strategy == "vmap":
            raise ValueError(
                "vmap steps all members together, early stopping stops each at its own epoch: "
                "use strategy fanout, sequential or auto"
            )
        return ensemble

    @field_validator("lr_schedule")
    @classmethod
    def _eta_min_below_lr(cls, schedule: ScheduleSpec, info: ValidationInfo):
        optimizer = info.data.get("optimizer")  # validated before lr_schedule
        eta_min = getattr(schedule, "eta_min", None)
        if optimizer is not None and eta_min is not None and eta_min >= optimizer.lr:
            raise ValueError(f"eta_min {eta_min} is not below the optimizer's lr {optimizer.lr}")
        return schedule

    @model_validator(mode="after")
    def _snapshot_cycles(self) -> JobSpec:
        """With ensemble.snapshots, the schedule is the cycles' (filled in when lr_schedule is not given)."""
        snapshots, epochs = self.ensemble.snapshots, self.training.epochs
        if snapshots == 1:
            return self
        if self.ensemble.members > 1:
            _refuse(("ensemble", "snapshots"), "snapshots take one member: give members 1", snapshots)
        if self.training.early_stopping is not None:
            # A run stopped early would never reach the later cycles' ends, whose weights are the members.
            message = "snapshots train every cycle to its end: drop training.early_stopping"
            _refuse(("ensemble", "snapshots"), message, snapshots)
        if epochs % snapshots:
            _refuse(("ensemble", "snapshots"), f"epochs ({epochs}) is not a multiple of snapshots", snapshots)
        cycles = CosineRestartsSchedule(type="cosine_restarts", t_0=epochs // snapshots)
        if "lr_schedule" not in self.model_fields_set:
            self.lr_schedule = cycles
            return self
        schedule = self.lr_schedule
        cycle = (schedule.t_0, schedule.t_mult, schedule.unit) if schedule.type == cycles.type else None
        if cycle != (cycles.t_0, cycles.t_mult, cycles.unit):
            _refuse(
                ("lr_schedule",),
                f"snapshots {snapshots} over {epochs} epochs train with cosine_restarts, t_0 {cycles.t_0}, "
                "t_mult 1, unit epoch: leave lr_schedule out, or give that (eta_min and warmup_steps as "
                "you like)",
                schedule.model_dump(),
            )
        return self

    def snapshot_epochs(self) -> list[int]:
        """The epochs whose weights are a snapshot ensemble's members: the cycles' ends; none without."""
        snapshots, epochs = self.ensemble.snapshots, self.training.epochs
        return [] if snapshots == 1 else list(range(epochs // snapshots, epochs + 1, epochs // snapshots))


    @field_validator("tags")
    @classmethod
    def _distinct(cls, tags: list[str]) -> list[str]:
        return sorted(set(tags))

    @property
    def display_name(self) -> str:
        return self.name or f"{self.model.arch or 'custom'}-{self.optimizer.type}"

    def member_spec(self, member: int) -> JobSpec:
        """What member `member` of an ensemble job trains: one model, with the member's own seed."""
        seed = self.ensemble.member_seed(self.training.seed, member)
        return self.model_copy(
            update={
                "name": f"{self.display_name[:110]} #{member}",
                "training": self.training.model_copy(update={"seed": seed}),
                "ensemble": self.ensemble.model_copy(update={"members": 1}),
                "notify_url": None,  # the ensemble job notifies, once, for all its members
            }
        )


def _with_default(part: Any, name: str, value: Any) -> Any:
    """A spec part (its JSON or its model) with `name` set to `value` unless the client gave it."""
    if isinstance(part, dict):
        return part if name in part else {**part, name: value}
    if isinstance(part, BaseModel) and name not in part.model_fields_set:
        return part.model_copy(update={name: value})
    return part  # not a part this spec takes: its own validation says so


def _refuse(loc: tuple, message: str, value: object) -> None:
    """A refusal at `loc` inside the spec, from a check across its blocks (a model validator's errors
    would otherwise sit at the spec's root)."""
    error = InitErrorDetails(type=PydanticCustomError("value_error", message), loc=loc, input=value)
    raise ValidationError.from_exception_data("JobSpec", [error])


Momentum.model_rebuild()
Nesterov.model_rebuild()
