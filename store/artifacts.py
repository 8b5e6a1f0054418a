"""Weights and checkpoints as safetensors files: tensors plus JSON metadata, never pickle."""

from __future__ import annotations

import json
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from safetensors import safe_open
from safetensors.torch import save_file

META_KEY = "trainyard"


def _write_atomically(path: Path, tensors: dict[str, torch.Tensor], meta: dict[str, Any]) -> None:
    # A worker killed mid-write must leave the previous file intact, never a torn one.
    path.parent.mkdir(parents=True, exist_ok=True)
    partial = path.with_suffix(".partial")
    tensors = {name: t.detach().contiguous().cpu() for name, t in tensors.items()}
    save_file(tensors, str(partial), metadata={META_KEY: json.dumps(meta)})
    os.replace(partial, path)


def _read(path: Path) -> tuple[dict[str, torch.Tensor], dict[str, Any]]:
    with safe_open(str(path), framework="pt") as f:
        meta = json.loads((f.metadata() or {}).get(META_KEY, "{}"))
        return {name: f.get_tensor(name) for name in f.keys()}, meta


def save_weights(path: Path, state_dict: dict[str, torch.Tensor], meta: dict[str, Any]) -> None:
    """Final weights; `meta` carries what rebuilds the model (spec, input shape, classes, normalisation)."""
    _write_atomically(path, state_dict, meta)


def load_weights(path: Path) -> tuple[dict[str, torch.Tensor], dict[str, Any]]:
    return _read(path)


def read_meta(path: Path) -> dict[str, Any]:
    """A weights file's metadata alone: safetensors keeps it in the header, so no tensor is read."""
    with safe_open(str(path), framework="pt") as f:
        return json.loads((f.metadata() or {}).get(META_KEY, "{}"))


def read_shapes(path: Path, prefix: str = "") -> dict[str, torch.Tensor]:
    """The file's tensors (those under `prefix`, which is removed) as meta-device tensors: shapes and
    dtypes from the header, no data read."""
    with safe_open(str(path), framework="pt") as f:
        return {
            key.removeprefix(prefix): torch.empty(
                f.get_slice(key).get_shape(), dtype=_DTYPES[f.get_slice(key).get_dtype()], device="meta"
            )
            for key in f.keys()
            if key.startswith(prefix)
        }


_DTYPES = {
    "F32": torch.float32,
    "F16": torch.float16,
    "BF16": torch.bfloat16,
    "F64": torch.float64,
    "I64": torch.int64,
    "I32": torch.int32,
    "I16": torch.int16,
    "I8": torch.int8,
    "U8": torch.uint8,
    "BOOL": torch.bool,
}


def val_predictions_path(weights_path: Path | str) -> Path:
    """Where a run's validation predictions lie: beside its weights (member-0.safetensors ->
    member-0.val-predictions.safetensors), derived rather than stored, so every run row finds its own."""
    weights_path = Path(weights_path)
    stem = weights_path.name.removesuffix(".safetensors")
    return weights_path.with_name(f"{stem}.val-predictions.safetensors")


def save_val_predictions(path: Path, probs: torch.Tensor, labels: torch.Tensor, meta: dict[str, Any]) -> None:
    """The kept weights' class probabilities on the validation split (N x classes, float32) and its labels
    (N, int64): what ensemble selection scores candidates on, without the models or the test split."""
    _write_atomically(path, {"probs": probs.float(), "labels": labels.long()}, meta)


def load_val_predictions(path: Path) -> tuple[torch.Tensor, torch.Tensor]:
    """(probs, labels) as save_val_predictions wrote them; FileNotFoundError when there is no file."""
    if not path.is_file():
        raise FileNotFoundError(path)
    tensors, _ = _read(path)
    return tensors["probs"], tensors["labels"]


def load_checkpoint_model(path: Path) -> dict[str, torch.Tensor]:
    """The model's tensors of a checkpoint (a snapshot), without its optimizer state."""
    with safe_open(str(path), framework="pt") as f:
        return {k.removeprefix("model."): f.get_tensor(k) for k in f.keys() if k.startswith("model.")}


@dataclass
class TrainingState:
    """Everything a resumed attempt needs to continue exactly where the last one stopped."""

    epoch: int  # epochs completed
    step: int  # optimizer steps completed
    model: dict[str, torch.Tensor]
    optimizer: dict[str, Any]
    scheduler: dict[str, Any]
    rng: torch.Tensor
    extra: dict[str, Any] = field(default_factory=dict)  # best_val_acc, elapsed time, ...
    # The best epoch's weights so far, kept for training.keep "best" (worker/early_stopping.py).
    best: dict[str, torch.Tensor] | None = None


def _flatten_optimizer(state: dict[str, Any]) -> tuple[dict[str, torch.Tensor], dict[str, Any]]:
    tensors, plain = {}, {}
    for index, slots in state["state"].items():
        for slot, value in slots.items():
            if isinstance(value, torch.Tensor):
                tensors[f"optimizer.{index}.{slot}"] = value
            else:
                plain[f"{index}.{slot}"] = value
    return tensors, {"param_groups": state["param_groups"], "plain_state": plain}


def _unflatten_optimizer(tensors: dict[str, torch.Tensor], meta: dict[str, Any]) -> dict[str, Any]:
    state: dict[int, dict[str, Any]] = {}
    for key, value in tensors.items():
        index, slot = key.removeprefix("optimizer.").split(".", 1)
        state.setdefault(int(index), {})[slot] = value
    for key, value in meta["plain_state"].items():
        index, slot = key.split(".", 1)
        state.setdefault(int(index), {})[slot] = value
    return {"state": state, "param_groups": meta["param_groups"]}


BEST = "best."  # the prefix of a checkpoint's best-epoch weights, beside "model." and "optimizer."


def save_checkpoint(path: Path, state: TrainingState) -> None:
    optimizer_tensors, optimizer_meta = _flatten_optimizer(state.optimizer)
    tensors = {f"model.{k}": v for k, v in state.model.items()} | optimizer_tensors | {"rng": state.rng}
    tensors |= {f"{BEST}{k}": v for k, v in (state.best or {}).items()}
    meta = {
        "epoch": state.epoch,
        "step": state.step,
        "optimizer": optimizer_meta,
        "scheduler": state.scheduler,
        "extra": state.extra,
    }
    _write_atomically(path, tensors, meta)


def load_checkpoint(path: Path) -> TrainingState:
    tensors, meta = _read(path)
    model = {k.removeprefix("model."): v for k, v in tensors.items() if k.startswith("model.")}
    optimizer_tensors = {k: v for k, v in tensors.items() if k.startswith("optimizer.")}
    best = {k.removeprefix(BEST): v for k, v in tensors.items() if k.startswith(BEST)}
    return TrainingState(
        epoch=meta["epoch"],
        step=meta["step"],
        model=model,
        optimizer=_unflatten_optimizer(optimizer_tensors, meta["optimizer"]),
        scheduler=meta["scheduler"],
        rng=tensors["rng"],
        extra=meta["extra"],
        best=best or None,
    )


def job_dir(artifacts_dir: Path, job_id: str) -> Path:
    return artifacts_dir / "jobs" / job_id
