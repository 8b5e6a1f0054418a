"""Turn a ModelSpec into an nn.Sequential, checking every layer's shape on the meta device."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import torch
from torch import nn
from torch.utils.flop_counter import FlopCounterMode

from models.datasets import dataset_info
from models.dropout import Dropout
from models.presets import preset_layers
from models.spec import JobSpec, Layer, ModelSpec, RegularizationSpec, SpecError

META = torch.device("meta")

ACTIVATIONS = {
    "relu": nn.ReLU,
    "tanh": nn.Tanh,
    "sigmoid": nn.Sigmoid,
    "leaky_relu": nn.LeakyReLU,
    "none": nn.Identity,  # no nonlinearity: the whole network collapses to one affine map
}


class ModelShapeError(SpecError):
    """An architecture that cannot run on its input."""


@dataclass(frozen=True)
class ModelSummary:
    """Size and cost of a job's network; shapes are per sample (no batch dimension)."""

    params: int
    flops_per_sample: int
    input_shape: tuple[int, ...]
    num_classes: int
    output_shape: tuple[int, ...]


class _LayerError(Exception):
    """Layer `index` of the list being built cannot take its input."""

    def __init__(self, index: int, message: str):
        super().__init__(message)
        self.index = index
        self.message = message


def build_model(
    model_spec: ModelSpec | dict,
    input_shape: tuple[int, int, int],
    num_classes: int,
    regularization: RegularizationSpec | dict | None = None,
) -> nn.Sequential:
    """The network for `model_spec`, initialised on the CPU; child i is layer i when `layers` is given."""
    model_spec = ModelSpec.model_validate(model_spec)
    model = _build_on_meta(model_spec, input_shape, num_classes, regularization)
    model.to_empty(device="cpu")
    for module in model.modules():
        if hasattr(module, "reset_parameters"):  # to_empty leaves memory uninitialised
            module.reset_parameters()
    _initialise(model, _init_scheme(model_spec))
    return model.train()


def inspect_model(job_spec: JobSpec | dict, data_dir: Path | None = None) -> ModelSummary:
    """Parameter count, FLOPs and shapes of a job's network, computed on the meta device (no memory).

    `data_dir` is where an uploaded dataset's file tells its shape (settings.data_dir)."""
    job = JobSpec.model_validate(job_spec)
    info = dataset_info(job.dataset, job.model, data_dir)
    # A preset that cannot take its input is fixed by changing the size the user chose, if they chose one.
    preset_loc = ("dataset", "image_size") if job.dataset.image_size is not None else ("model", "arch")
    model = _build_on_meta(job.model, info.input_shape, info.num_classes, job.regularization, preset_loc)
    with FlopCounterMode(display=False) as counter:
        out = model(torch.empty(1, *info.input_shape, device=META))
    return ModelSummary(
        params=sum(p.numel() for p in model.parameters()),
        flops_per_sample=int(counter.get_total_flops()),
        input_shape=tuple(info.input_shape),
        num_classes=info.num_classes,
        output_shape=tuple(out.shape[1:]),
    )


def _build_on_meta(
    model_spec: ModelSpec,
    input_shape: tuple[int, ...],
    num_classes: int,
    regularization: RegularizationSpec | dict | None,
    preset_loc: tuple = ("model", "arch"),
) -> nn.Sequential:
    """Build layer by layer on the meta device, translating a failing layer into a ModelShapeError."""
    input_shape = tuple(int(d) for d in input_shape)
    if model_spec.layers is not None:
        try:
            return _build_layers(model_spec.layers, input_shape, num_classes)
        except _LayerError as e:
            raise ModelShapeError(("model", "layers", e.index), e.message) from None
    regularization = RegularizationSpec.model_validate(regularization or {})
    layers = preset_layers(model_spec, input_shape[-1], num_classes, regularization)
    try:
        return _build_layers(layers, input_shape, num_classes)
    except _LayerError as e:
        size = "x".join(map(str, input_shape[1:]))
        raise ModelShapeError(
            preset_loc, f"{model_spec.arch} cannot take {size} inputs: {e.message}"
        ) from None


def _build_layers(layers: list[Layer], input_shape: tuple[int, ...], num_classes: int) -> nn.Sequential:
    """One module per layer, each checked by pushing a meta tensor through it."""
    modules = []
    x = torch.empty(1, *input_shape, device=META)
    for index, layer in enumerate(layers):
        shape = tuple(x.shape[1:])
        problem = _shape_problem(layer, shape)
        if problem:
            raise _LayerError(index, problem)
        with META:
            module = _make_module(layer, shape).eval()  # eval: BatchNorm1d refuses a batch of 1 in training
        try:
            x = module(x)
        except RuntimeError as e:  # anything the checks above did not foresee
            raise _LayerError(index, f"{layer.type} cannot take a {_describe(shape)} input: {e}") from None
        modules.append(module)
    out = tuple(x.shape[1:])
    if len(out) != 1:
        raise _LayerError(
            len(layers) - 1,
            f"the network ends with a {_describe(out)} feature map; "
            f"add a flatten and a linear layer with {num_classes} outputs",
        )
    if out[0] != num_classes:
        raise _LayerError(
            len(layers) - 1,
            f"the last layer outputs {out[0]} features but the dataset has {num_classes} classes",
        )
    return nn.Sequential(*modules)


def _shape_problem(layer: Layer, shape: tuple[int, ...]) -> str | None:
    """Why `layer` cannot take a per-sample input of `shape`, in words; None when it can."""
    if layer.type in ("conv", "maxpool", "avgpool"):
        if len(shape) != 3:
            return (
                f"{layer.type} expects a CxHxW feature map but gets {_describe(shape)}; "
                "put it before the flatten"
            )
        k = layer.kernel_size
        pad = getattr(layer, "padding", 0)
        if min(shape[1:]) + 2 * pad < k:
            return (
                f"{layer.type} {k}x{k} on a {_describe(shape)} feature map: output would be smaller than 1x1"
            )
    if layer.type == "linear" and len(shape) != 1:
        return f"linear expects a flat input but gets {_describe(shape)}; add a flatten layer before it"
    return None


def _make_module(layer: Layer, shape: tuple[int, ...]) -> nn.Module:
    """The torch module for one spec layer whose per-sample input has `shape`."""
    match layer.type:
        case "conv":
            return nn.Conv2d(shape[0], layer.out_channels, layer.kernel_size, layer.stride, layer.padding)
        case "maxpool":
            return nn.MaxPool2d(layer.kernel_size, layer.stride)  # stride None means stride = kernel size
        case "avgpool":
            return nn.AvgPool2d(layer.kernel_size, layer.stride)
        case "activation":
            return ACTIVATIONS[layer.fn]()
        case "batchnorm":
            return nn.BatchNorm2d(shape[0]) if len(shape) == 3 else nn.BatchNorm1d(shape[0])
        case "dropout":
            return Dropout(layer.p, layer.mode)
        case "flatten":
            return nn.Flatten()
        case "linear":
            return nn.Linear(shape[0], layer.out_features)
    raise ValueError(f"unknown layer type {layer.type!r}")


def _init_scheme(model_spec: ModelSpec) -> str:
    """The init to apply; "default" means the preset's own, or PyTorch's for custom layers."""
    if model_spec.init != "default":
        return model_spec.init
    if model_spec.arch == "alexnet":
        return "kaiming"
    # LeNet-5 keeps PyTorch's default U(+-1/sqrt(fan_in)), which is LeCun-style fan-in scaling.
    return "default"


def _initialise(model: nn.Module, scheme: str) -> None:
    """Re-initialise conv and linear weights with `scheme` and zero their biases."""
    if scheme == "default":
        return
    layers = [m for m in model.modules() if isinstance(m, (nn.Conv2d, nn.Linear))]
    for module in layers:
        # He et al. 2015 is for layers followed by a ReLU. The output layer has none: with the ReLU gain
        # its logits start so large that the initial loss is ~10 instead of ln(classes) and SGD diverges.
        if scheme == "xavier" or module is layers[-1]:
            nn.init.xavier_uniform_(module.weight)
        else:
            nn.init.kaiming_normal_(module.weight, mode="fan_in", nonlinearity="relu")
        nn.init.zeros_(module.bias)


def _describe(shape: tuple[int, ...]) -> str:
    """'16x5x5' for a feature map, '84 features' for a flat vector."""
    return f"{shape[0]} features" if len(shape) == 1 else "x".join(map(str, shape))
