"""Weights and checkpoints as safetensors objects in the artifact store (store/objects.py): tensors plus
JSON metadata, never pickle.

Each function takes an Artifact (a store and a key), or a Path for a file on this host's disk.
"""

from __future__ import annotations

import json
import struct
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from safetensors import safe_open
from safetensors.torch import load as load_bytes
from safetensors.torch import save_file

from store.objects import Artifact

META_KEY = "trainyard"


def _artifact(where: Artifact | Path) -> Artifact:
    return where if isinstance(where, Artifact) else Artifact.file(where)


def _write_atomically(where: Artifact | Path, tensors: dict[str, torch.Tensor], meta: dict[str, Any]) -> None:
    # A worker killed mid-write must leave the previous object intact, never a torn one: the store
    # publishes what was written only once it is whole.
    artifact = _artifact(where)
    tensors = {name: t.detach().contiguous().cpu() for name, t in tensors.items()}
    with artifact.store.writing(artifact.key) as path:
        save_file(tensors, str(path), metadata={META_KEY: json.dumps(meta)})


def _read(where: Artifact | Path) -> tuple[dict[str, torch.Tensor], dict[str, Any]]:
    artifact = _artifact(where)
    local = artifact.store.local_path(artifact.key)
    if local is not None:  # mapped, not read whole
        if not local.is_file():
            raise FileNotFoundError(local)
        with safe_open(str(local), framework="pt") as f:
            meta = json.loads((f.metadata() or {}).get(META_KEY, "{}"))
            return {name: f.get_tensor(name) for name in f.keys()}, meta
    data = artifact.store.read_bytes(artifact.key)
    return load_bytes(data), _meta_of(_header_of(data[:8], lambda length: data[8 : 8 + length]))


def read_header(where: Artifact | Path) -> dict[str, Any]:
    """The safetensors header (each tensor's dtype, shape and offsets; "__metadata__"), read alone: its
    8-byte little-endian length, then that many bytes of JSON (two ranged reads of an object store)."""
    artifact = _artifact(where)
    store, key = artifact.store, artifact.key
    return _header_of(store.read_range(key, 0, 8), lambda length: store.read_range(key, 8, length))


def _header_of(prefix: bytes, read_json) -> dict[str, Any]:
    if len(prefix) < 8:
        raise ValueError("not a safetensors file: shorter than its header's length")
    (length,) = struct.unpack("<Q", prefix)
    return json.loads(read_json(length))


def _meta_of(header: dict[str, Any]) -> dict[str, Any]:
    return json.loads((header.get("__metadata__") or {}).get(META_KEY, "{}"))


def save_weights(path: Artifact | Path, state_dict: dict[str, torch.Tensor], meta: dict[str, Any]) -> None:
    """Final weights; `meta` carries what rebuilds the model (spec, input shape, classes, normalisation)."""
    _write_atomically(path, state_dict, meta)


def load_weights(path: Artifact | Path) -> tuple[dict[str, torch.Tensor], dict[str, Any]]:
    return _read(path)


def read_meta(path: Artifact | Path) -> dict[str, Any]:
    """A weights file's metadata alone: safetensors keeps it in the header, so no tensor is read."""
    return _meta_of(read_header(path))


def read_shapes(path: Artifact | Path, prefix: str = "") -> dict[str, torch.Tensor]:
    """The file's tensors (those under `prefix`, which is removed) as meta-device tensors: shapes and
    dtypes from the header, no data read."""
    return {
        key.removeprefix(prefix): torch.empty(entry["shape"], dtype=_DTYPES[entry["dtype"]], device="meta")
        for key, entry in read_header(path).items()
        if key != "__metadata__" and key.startswith(prefix)
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


def val_predictions_path(weights: Artifact | Path) -> Artifact | Path:
    """Where a run's validation predictions lie: beside its weights (member-0.safetensors ->
    member-0.val-predictions.safetensors), derived rather than stored, so every run row finds its own."""
    name = weights.name.removesuffix(".safetensors") + ".val-predictions.safetensors"
    return weights.sibling(name) if isinstance(weights, Artifact) else weights.with_name(name)


def save_val_predictions(
    path: Artifact | Path, probs: torch.Tensor, labels: torch.Tensor, meta: dict[str, Any]
) -> None:
    """The kept weights' class probabilities on the validation split (N x classes, float32) and its labels
    (N, int64): what ensemble selection scores candidates on, without the models or the test split."""
    _write_atomically(path, {"probs": probs.float(), "labels": labels.long()}, meta)


def load_val_predictions(path: Artifact | Path) -> tuple[torch.Tensor, torch.Tensor]:
    """(probs, labels) as save_val_predictions wrote them; FileNotFoundError when there is no file."""
    tensors, _ = _read(path)
    return tensors["probs"], tensors["labels"]


def load_checkpoint_model(path: Artifact | Path) -> dict[str, torch.Tensor]:
    """The model's tensors of a checkpoint (a snapshot), without its optimizer state."""
    tensors, _ = _read(path)
    return {k.removeprefix("model."): v for k, v in tensors.items() if k.startswith("model.")}


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


def save_checkpoint(path: Artifact | Path, state: TrainingState) -> None:
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


def load_checkpoint(path: Artifact | Path) -> TrainingState:
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


def job_prefix(job_id: str) -> str:
    """The folder of a job's objects in the store: its weights, checkpoints and validation predictions."""
    return f"jobs/{job_id}/"


def job_key(job_id: str, name: str) -> str:
    return job_prefix(job_id) + name


def ensemble_key(ensemble_id: str) -> str:
    """An ensemble's averaged weights (method weights)."""
    return f"ensembles/{ensemble_id}.safetensors"
