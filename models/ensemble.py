"""Ensembles of stored models: average their predictions (mean_probs, mean_logits) or their weights.

A member is what store.artifacts.load_weights returns, (state_dict, meta). Independent runs, one run's
snapshots and its averaged (Polyak / EMA) weights are all just members; nothing assumes distinct jobs.
Pure PyTorch: importable without Celery, FastAPI, SQL or Redis.
"""

from __future__ import annotations

import json
import math
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from typing import Any, Literal

import torch
import torch.nn.functional as F
from torch import nn
from torch.optim.swa_utils import update_bn
from torch.utils.flop_counter import FlopCounterMode

from models.augment import Tta, mean_over_flip
from models.cnn import ACTIVATIONS, build_model
from models.datasets import preprocess
from models.dropout import Dropout
from models.presets import preset_layers
from models.spec import Layer, ModelSpec, RegularizationSpec, SpecError

METHODS = ("mean_probs", "mean_logits", "weights")
ExecutionPath = Literal["auto", "vectorized", "sequential"]

# Small batches run as one grouped network, large ones member by member. The grouped network saves the
# per-layer overhead of K small calls, which dominates small batches; on large ones its K-fold activations
# fall out of cache and each member's own dense convolutions win. LeNet-5, K=10, 2 threads of the 2-core dev
# CPU, grouped against member by member (bench/ensemble_predict.py --batches ...): 4.2-4.4x faster at batch
# 1, 2.2x at 8, 1.6x at 32, 0.92-0.94x at 48-64, 0.65-0.75x at 256. The crossover follows the work per
# call, so the limit is in FLOPs per member: 32 LeNet-5 samples (833 kFLOP each). A tiny 8x8 network
# vectorizes any batch (1.4x faster still at 256); AlexNet (342 MFLOP a sample, grouped 0.9-1.0x) never does.
VECTORIZE_MAX_FLOPS = 32 * 833_040

BATCHNORM = (nn.BatchNorm1d, nn.BatchNorm2d)
# Layers that act on each channel (or feature) alone, so K members' side by side need no change. Dropout is
# the identity or a constant scale in eval mode; a flatten of the shared input is the same for every member.
PER_CHANNEL = (*ACTIVATIONS.values(), nn.MaxPool2d, nn.AvgPool2d, Dropout, nn.Flatten)


@dataclass(frozen=True)
class Member:
    """One stored model: its weights and the meta that rebuilds it (see worker.run_job.rebuild_info)."""

    state_dict: dict[str, torch.Tensor]
    meta: dict[str, Any]

    @property
    def input_shape(self) -> tuple[int, int, int]:
        return tuple(int(d) for d in self.meta["input_shape"])

    @property
    def num_classes(self) -> int:
        return int(self.meta["num_classes"])

    @property
    def mean(self) -> list[float]:
        return [float(v) for v in self.meta["mean"]]

    @property
    def std(self) -> list[float]:
        return [float(v) for v in self.meta["std"]]

    def layers(self) -> list[Layer]:
        """The architecture as spec layers, presets expanded: equal lists build the same function."""
        spec = self.meta["spec"]
        model = ModelSpec.model_validate(spec["model"])
        if model.layers is not None:
            return model.layers
        regularization = RegularizationSpec.model_validate(spec.get("regularization") or {})
        return preset_layers(model, self.input_shape[-1], self.num_classes, regularization)

    def build(self) -> nn.Sequential:
        """The member's network with its weights, in eval mode and without gradients."""
        spec = self.meta["spec"]
        model = build_model(spec["model"], self.input_shape, self.num_classes, spec.get("regularization"))
        model.load_state_dict(self.state_dict)
        return model.eval().requires_grad_(False)


# ---------------------------------------------------------------- which members combine


def check_members(members: Sequence[Member], method: str) -> None:
    """Raise SpecError with loc ("members", i) naming the first member that cannot join member 0."""
    if method not in METHODS:
        raise SpecError(("method",), f"method must be one of {', '.join(METHODS)}, got {method!r}")
    if not members:
        raise SpecError(("members",), "an ensemble needs at least one member")
    for index, member in enumerate(members[1:], start=1):
        problem = _input_difference(member, members[0])
        if problem is None and method == "weights":
            problem = _architecture_difference(member, members[0])
        if problem:
            raise SpecError(("members", index), f"member {index} differs from member 0 in {problem}")


def _input_difference(member: Member, first: Member) -> str | None:
    # One input batch, preprocessed once, feeds every member: each must have been trained on inputs of the
    # same shape and normalisation, and must answer over the same classes.
    if member.input_shape != first.input_shape:
        return f"input_shape: {list(member.input_shape)} vs {list(first.input_shape)}"
    if member.num_classes != first.num_classes:
        return f"num_classes: {member.num_classes} vs {first.num_classes}"
    for name in ("mean", "std"):
        mine, theirs = getattr(member, name), getattr(first, name)
        if len(mine) != len(theirs) or not all(
            math.isclose(a, b, rel_tol=1e-6, abs_tol=1e-9) for a, b in zip(mine, theirs, strict=True)
        ):
            return f"preprocessing {name}: {_floats(mine)} vs {_floats(theirs)}"
    return None


def _architecture_difference(member: Member, first: Member) -> str | None:
    # Averaging weights needs the same function of the same tensors: equal layer lists (the model spec with
    # presets expanded, so lenet5 and its layer list match; the init scheme does not count) and equal keys,
    # shapes and dtypes in the state dicts.
    mine, theirs = member.layers(), first.layers()
    if len(mine) != len(theirs):
        return f"architecture: {len(mine)} layers vs {len(theirs)}"
    for index, (a, b) in enumerate(zip(mine, theirs, strict=True)):
        if a != b:
            return f"architecture, layer {index}: {_layer(a)} vs {_layer(b)}"
    for key in sorted(member.state_dict.keys() | first.state_dict.keys()):
        a, b = member.state_dict.get(key), first.state_dict.get(key)
        if a is None or b is None:
            return f"weights: it {'lacks' if a is None else 'has an extra'} tensor {key!r}"
        if a.shape != b.shape or a.dtype != b.dtype:
            return f"weights: {key!r} is {a.dtype} {list(a.shape)} vs {b.dtype} {list(b.shape)}"
    return None


def _floats(values: list[float]) -> str:
    return "[" + ", ".join(f"{v:.6g}" for v in values) + "]"


def _layer(layer: Layer) -> str:
    return json.dumps(layer.model_dump(exclude_none=True))


# ---------------------------------------------------------------- the weights ensemble


def average_weights(members: Sequence[Member]) -> dict[str, torch.Tensor]:
    """The uniform mean of the members' floating-point tensors; integer buffers take the largest value.

    Integer buffers are counters (BatchNorm's num_batches_tracked): their mean would be a fraction of a
    count. The largest is the most-trained member's, which for snapshots of one run is the latest, as
    swa_utils.AveragedModel keeps it. update_bn recounts it anyway when it recomputes the statistics.
    """
    averaged = {}
    for key, tensor in members[0].state_dict.items():
        stacked = torch.stack([member.state_dict[key] for member in members])
        averaged[key] = stacked.mean(0) if tensor.is_floating_point() else stacked.amax(0)
    return averaged


def average_model(members: Sequence[Member], train_batches: Iterable | None = None) -> nn.Sequential:
    """One network carrying the members' averaged weights, BatchNorm statistics recomputed on train_batches.

    `train_batches` (a DataLoader or any iterable of input tensors or (x, y) pairs over the preprocessed
    training inputs) is read once, and only when the network has BatchNorm: the averaged weights produce
    activations of their own mean and variance, not the mean of the members' (Izmailov et al. 2018, SWA).
    """
    check_members(members, "weights")
    model = members[0].build()
    model.load_state_dict(average_weights(members))
    if any(isinstance(module, BATCHNORM) for module in model.modules()):
        if train_batches is None:
            raise ValueError("the network has BatchNorm: pass train_batches to recompute its statistics")
        # update_bn runs the network in train mode, dropout included, as the statistics were measured in
        # training; it puts the network back in eval mode afterwards.
        update_bn(train_batches, model)
    return model


# ---------------------------------------------------------------- running K networks


class GroupedNetwork:
    """K networks of one architecture run as one, their layers side by side along the channel dimension.

    The first convolution sees the shared input, so it is one convolution with K times the filters; later
    ones are grouped convolutions (groups=K) over the concatenated channels. After the flatten activations
    are laid out (K, N, features) and each linear layer is one batched matmul. Activations, pools and
    eval-mode dropout act per channel and run unchanged. Each member's modules are rebound to views of the
    stacked weights, so this path and the member-by-member one share one copy of them.
    """

    def __init__(self, modules: Sequence[nn.Sequential]):
        self.count = len(modules)
        self.tensors: list[torch.Tensor] = []  # what the steps hold, for the memory estimate
        self.steps = []
        shared, flat = True, False  # shared: still the input itself, the same for every member
        for layers in zip(*modules, strict=True):
            step, shared, flat = self._group(list(layers), shared, flat)
            self.steps.append(step)
        self.shared = shared

    def __call__(self, x: torch.Tensor) -> torch.Tensor:
        """Logits (K, N, classes) of a batch (N, C, H, W)."""
        for step in self.steps:
            x = step(x)
        return x.expand(self.count, *x.shape) if self.shared else x

    def _group(self, layers: list[nn.Module], shared: bool, flat: bool):
        """(the step for one layer position, shared after it, flat after it)."""
        layer = layers[0]
        if isinstance(layer, nn.Conv2d):
            return self._conv(layers, shared), False, False
        if isinstance(layer, nn.Linear):
            return self._linear(layers, shared), False, True
        if isinstance(layer, BATCHNORM):
            return self._batchnorm(layers, shared, flat), False, flat
        if isinstance(layer, nn.Flatten) and not shared:
            return self._flatten(flat), False, True
        if isinstance(layer, PER_CHANNEL):
            return layer, shared, flat or isinstance(layer, nn.Flatten)
        raise TypeError(f"no grouped form for {type(layer).__name__}")

    def _stacked(self, layers: list[nn.Module], name: str) -> torch.Tensor:
        """The members' tensors `name` stacked (K, ...); each member's module now holds a view of its row."""
        stacked = torch.stack([getattr(layer, name) for layer in layers])
        for layer, own in zip(layers, stacked.unbind(), strict=True):
            setattr(layer, name, nn.Parameter(own, requires_grad=False))
        self.tensors.append(stacked)
        return stacked

    def _conv(self, layers: list[nn.Module], shared: bool):
        conv = layers[0]
        weight = self._stacked(layers, "weight").flatten(0, 1)  # (K*out, in, kh, kw)
        bias = self._stacked(layers, "bias").flatten()
        groups = 1 if shared else self.count  # the shared input is every member's: one plain convolution
        return lambda x: F.conv2d(x, weight, bias, conv.stride, conv.padding, conv.dilation, groups)

    def _linear(self, layers: list[nn.Module], shared: bool):
        k = self.count
        weight = self._stacked(layers, "weight")  # (K, out, in)
        bias = self._stacked(layers, "bias")  # (K, out)
        if shared:  # the flattened input (N, in): one matmul with every member's rows
            return lambda x: (
                F.linear(x, weight.flatten(0, 1), bias.flatten()).unflatten(1, (k, -1)).transpose(0, 1)
            )
        return lambda x: torch.baddbmm(bias.unsqueeze(1), x, weight.transpose(1, 2))

    def _batchnorm(self, layers: list[nn.Module], shared: bool, flat: bool):
        # In eval mode batch norm is a per-channel affine map: fold each member's into a scale and a shift.
        k = self.count
        scale = torch.stack([bn.weight * (bn.running_var + bn.eps).rsqrt() for bn in layers])
        shift = (
            torch.stack([bn.bias for bn in layers]) - torch.stack([bn.running_mean for bn in layers]) * scale
        )
        view = (k, 1, -1) if flat else (1, -1, 1, 1)
        scale, shift = scale.reshape(view), shift.reshape(view)
        self.tensors += [scale, shift]

        def batchnorm(x: torch.Tensor) -> torch.Tensor:
            if shared and not flat:  # each member normalises the image its own way: each gets its copy
                x = x.repeat(1, k, 1, 1)
            return torch.addcmul(shift, x, scale)  # a shared flat input (N, F) broadcasts to (K, N, F)

        return batchnorm

    def _flatten(self, flat: bool):
        if flat:  # a second flatten: already (K, N, features)
            return nn.Identity()
        k = self.count
        # (N, K*C, H, W) -> (K, N, C*H*W): each member's channels are one contiguous block.
        return lambda x: x.unflatten(1, (k, -1)).flatten(2).transpose(0, 1)


class MemberStack:
    """K members' networks that run one after another (sequential) or all at once (vectorized).

    Members of the same architecture form one GroupedNetwork; a stack of mixed architectures runs one per
    architecture. Both paths give the same logits to float32 rounding (within 1e-5 after the softmax).
    """

    def __init__(
        self,
        modules: Sequence[nn.Module],
        input_shape: tuple[int, ...],
        vectorize_max_batch: int | None = None,
    ):
        self.modules = list(modules)
        by_architecture: dict[str, list[int]] = {}
        for index, module in enumerate(self.modules):
            by_architecture.setdefault(repr(module), []).append(index)  # repr: every layer and its settings
        with torch.no_grad():
            self.groups = [
                (indices, GroupedNetwork([self.modules[i] for i in indices]))
                for indices in by_architecture.values()
            ]
        if vectorize_max_batch is None:
            flops = max(flops_per_sample(self.modules[indices[0]], input_shape) for indices, _ in self.groups)
            vectorize_max_batch = VECTORIZE_MAX_FLOPS // max(flops, 1)
        self.vectorize_max_batch = vectorize_max_batch

    def __len__(self) -> int:
        return len(self.modules)

    def vectorizes(self, batch_size: int, path: ExecutionPath = "auto") -> bool:
        if path not in ("auto", "vectorized", "sequential"):
            raise ValueError(f"path must be auto, vectorized or sequential, got {path!r}")
        if path == "auto":
            return len(self.modules) > 1 and batch_size <= self.vectorize_max_batch
        return path == "vectorized"

    @torch.inference_mode()
    def logits(self, x: torch.Tensor, path: ExecutionPath = "auto") -> torch.Tensor:
        """Every member's logits (K, N, classes) for a preprocessed batch (N, C, H, W)."""
        if not self.vectorizes(len(x), path):
            return torch.stack([module(x) for module in self.modules])
        if len(self.groups) == 1:
            return self.groups[0][1](x)
        parts = [(indices, network(x)) for indices, network in self.groups]
        out = x.new_empty(len(self.modules), *parts[0][1].shape[1:])
        for indices, logits in parts:
            out[indices] = logits
        return out

    @property
    def nbytes(self) -> int:
        """Bytes of the weights held, each shared storage counted once."""
        tensors = [t for module in self.modules for t in module.state_dict().values()]
        tensors += [t for _, network in self.groups for t in network.tensors]
        storages = {t.untyped_storage().data_ptr(): t.untyped_storage().nbytes() for t in tensors}
        return sum(storages.values())


def flops_per_sample(module: nn.Module, input_shape: tuple[int, ...]) -> int:
    """FLOPs of one sample through `module`: its convolutions and matmuls, as inspect_model counts them."""
    with FlopCounterMode(display=False) as counter, torch.inference_mode():
        module(torch.zeros(1, *input_shape))
    return int(counter.get_total_flops())


def ensemble_log_probs(member_logits: torch.Tensor, method: str) -> torch.Tensor:
    """Log-probabilities (N, classes) of the ensemble from its members' logits (K, N, classes)."""
    if method == "mean_probs":
        # log(mean_k softmax_k) computed in log space, so confident members do not underflow to log(0).
        return torch.logsumexp(F.log_softmax(member_logits, -1), 0) - math.log(len(member_logits))
    # mean_logits; and weights, whose one member is the averaged network.
    return F.log_softmax(member_logits.mean(0), -1)


class EnsemblePredictor:
    """Built once from members and a method (worth caching); maps preprocessed batches to probabilities."""

    def __init__(
        self,
        members: Sequence[Member],
        method: str = "mean_probs",
        *,
        train_batches: Iterable | None = None,
        vectorize_max_batch: int | None = None,
    ):
        check_members(members, method)
        self.method = method
        self.member_count = len(members)
        first = members[0]
        self.input_shape, self.num_classes, self.mean, self.std = (
            first.input_shape,
            first.num_classes,
            first.mean,
            first.std,
        )
        if method == "weights":
            modules = [average_model(members, train_batches)]
        else:
            modules = [member.build() for member in members]
        self.stack = MemberStack(modules, self.input_shape, vectorize_max_batch)

    def preprocess(self, x_raw) -> torch.Tensor:
        """Raw inputs (N×C×H×W at native size and pixel scale, e.g. a JSON array) to network inputs."""
        return preprocess(x_raw, self.mean, self.std, self.input_shape)

    @torch.inference_mode()
    def predict_log_proba(self, x: torch.Tensor, path: ExecutionPath = "auto") -> torch.Tensor:
        """Log-probabilities (N, classes) of a preprocessed batch (N, C, H, W)."""
        if x.dim() != 4 or tuple(x.shape[1:]) != self.input_shape:
            raise ValueError(
                f"inputs must be N×{'×'.join(map(str, self.input_shape))}, got {'×'.join(map(str, x.shape))}"
            )
        return ensemble_log_probs(self.stack.logits(x, path), self.method)

    @torch.inference_mode()
    def predict_proba(
        self, x: torch.Tensor, path: ExecutionPath = "auto", tta: Tta | None = None
    ) -> torch.Tensor:
        """Probabilities (N, classes) of a preprocessed batch (N, C, H, W); `tta` "flip": the mean of x's
        and of x mirrored's, as evaluation with training.augment.eval_flip computes them."""
        if tta == "flip":
            return mean_over_flip(lambda images: self.predict_log_proba(images, path).exp(), x)
        return self.predict_log_proba(x, path).exp()

    @property
    def nbytes(self) -> int:
        """Rough memory held, for a cache bounded in bytes."""
        return self.stack.nbytes


# ---------------------------------------------------------------- evaluation


def evaluate_ensemble(
    members: Sequence[Member],
    method: str,
    x: torch.Tensor,
    y: torch.Tensor,
    *,
    train_batches: Iterable | None = None,
    batch_size: int = 1024,
    predictor: EnsemblePredictor | None = None,
    inputs: Callable[[torch.Tensor], torch.Tensor] | None = None,
) -> dict[str, Any]:
    """Accuracy and mean negative log-likelihood of each member and of the ensemble on (x, y).

    `x` is network inputs, or raw images that `inputs` (a Splits' prepare) makes them of, batch by batch.
    Each member's logits are computed once per batch; the mean_probs and mean_logits ensembles are derived
    from them, the weights ensemble runs its own network. `predictor`, the members' already built for
    `method`, saves building (and averaging) them again.
    """
    if len(x) == 0:
        raise ValueError("cannot evaluate on an empty split")
    predictor = predictor or EnsemblePredictor(members, method, train_batches=train_batches)
    if method == "weights":
        stack = MemberStack([member.build() for member in members], predictor.input_shape)
    else:
        stack = predictor.stack
    member_correct = torch.zeros(len(members), dtype=torch.long)
    member_nll = torch.zeros(len(members), dtype=torch.float64)
    correct, nll = 0, 0.0
    with torch.inference_mode():
        for start in range(0, len(x), batch_size):
            xb, yb = x[start : start + batch_size], y[start : start + batch_size]
            if inputs is not None:
                xb = inputs(xb)
            logits = stack.logits(xb)
            log_probs = F.log_softmax(logits, -1)
            member_correct += (logits.argmax(-1) == yb).sum(1)
            member_nll -= log_probs.gather(2, yb.expand(len(members), -1).unsqueeze(2)).sum((1, 2)).double()
            if method == "weights":
                ensemble = predictor.predict_log_proba(xb)
            else:
                ensemble = ensemble_log_probs(logits, method)
            correct += int((ensemble.argmax(-1) == yb).sum())
            nll -= float(ensemble.gather(1, yb.unsqueeze(1)).sum())
    n = len(x)
    accuracies = [c / n for c in member_correct.tolist()]
    nlls = (member_nll / n).tolist()
    mean_accuracy = sum(accuracies) / len(accuracies)
    return {
        "method": method,
        "test_samples": n,
        "member_accuracies": accuracies,
        "mean_member_accuracy": mean_accuracy,
        "ensemble_accuracy": correct / n,
        "gain": correct / n - mean_accuracy,
        "member_nll": nlls,
        "mean_member_nll": sum(nlls) / len(nlls),
        "ensemble_nll": nll / n,
    }
