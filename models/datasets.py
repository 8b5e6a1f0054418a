"""The datasets a job can train on: one registry for validation, the catalog and the worker."""

from __future__ import annotations

import math
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path
from typing import NamedTuple

import numpy as np
import torch
import torch.nn.functional as F
from pydantic import BaseModel, TypeAdapter
from sklearn.model_selection import train_test_split

from models import image_files, uploads
from models.image_files import DatasetUnavailable as DatasetUnavailable  # public here, for the API
from models.presets import preset_input_size
from models.spec import (
    Cifar10Dataset,
    DatasetSpec,
    DigitsDataset,
    FashionMnistDataset,
    MnistDataset,
    ModelSpec,
    SyntheticDataset,
    UploadDataset,
)

_DATASET_SPEC = TypeAdapter(DatasetSpec)

Pair = tuple[torch.Tensor, torch.Tensor]


@dataclass(frozen=True)
class DatasetInfo:
    """What a network needs to know about a dataset; computed without loading it."""

    input_shape: tuple[int, int, int]
    num_classes: int
    native_shape: tuple[int, int, int]


@dataclass
class Splits:
    """Train/val/test images (x N×C×H×W at native size, as stored: uint8 for the built-in datasets; y N int64)
    on the CPU, and what makes network inputs of them: the input shape and the train statistics.

    The images stay small (a Fashion-MNIST image is 784 bytes, not 4 KiB as float32 at 32 px, or 200 KiB at
    AlexNet's 224 px); `prepare` turns each batch into network inputs where it trains, on the device.
    """

    train_raw: Pair
    val_raw: Pair
    test_raw: Pair
    mean: list[float]
    std: list[float]
    num_classes: int
    input_shape: tuple[int, int, int]
    native_shape: tuple[int, int, int]

    def prepare(self, x: torch.Tensor) -> torch.Tensor:
        """Network inputs (float32, resized, normalised) from raw images: ... × C × H × W, on any device."""
        return network_inputs(x, self.mean, self.std, self.input_shape)

    # A whole split as network inputs, prepared at once on the CPU: for tests and tools on small data. The
    # worker prepares batch by batch instead (worker/training.py), never holding a split at the input size.
    @property
    def train(self) -> Pair:
        return self.prepare(self.train_raw[0]), self.train_raw[1]

    @property
    def val(self) -> Pair:
        return self.prepare(self.val_raw[0]), self.val_raw[1]

    @property
    def test(self) -> Pair:
        return self.prepare(self.test_raw[0]), self.test_raw[1]

    def batches(self, x: torch.Tensor, batch_size: int, prepare=None) -> Iterator[torch.Tensor]:
        """Raw images x as network inputs, one batch at a time (`prepare`: another way to make them)."""
        prepare = prepare or self.prepare
        return (prepare(x[start : start + batch_size]) for start in range(0, len(x), batch_size))


class RawSize(NamedTuple):
    """How many samples a dataset has and the bytes of one pixel value as read: known without loading it."""

    samples: int
    itemsize: int


class RawData(NamedTuple):
    """A whole dataset at native size and pixel scale; the last `official_test` samples are its test set."""

    x: np.ndarray
    y: np.ndarray
    official_test: int = 0


@dataclass(frozen=True)
class DatasetEntry:
    """A registered dataset: its spec, metadata from the spec alone, and a loader of raw arrays."""

    spec: type[BaseModel]
    description: str
    # Each takes (spec, data directory); the directory is None where the caller has none (store.settings
    # holds it: models/ cannot import it), and only the datasets read from files need it.
    native_shape: Callable[[BaseModel, Path | None], tuple[int, int, int]]
    num_classes: Callable[[BaseModel, Path | None], int]
    load_raw: Callable[[BaseModel, Path | None], RawData]
    raw_size: Callable[[BaseModel, Path | None], RawSize]
    from_files: bool = False  # read from the data directory or a system folder, so it may be missing


# ---------------------------------------------------------------- raw data (cached per process)


@lru_cache(maxsize=1)
def _digits_raw() -> tuple[np.ndarray, np.ndarray]:
    """scikit-learn's digits as N×1×8×8 pixel values in 0..16 (uint8: they are integers), shipped with it."""
    from sklearn.datasets import load_digits

    digits = load_digits()
    return _read_only(digits.images[:, None].astype(np.uint8), digits.target.astype(np.int64))


# One synthetic dataset at a time: a large one is gigabytes (data_bytes counts one dataset per process).
@lru_cache(maxsize=1)
def _synthetic_raw(
    channels: int, size: int, classes: int, samples: int, seed: int
) -> tuple[np.ndarray, np.ndarray]:
    """Each class a smooth random template; samples are shifted, rescaled, noisy copies of it, as uint8."""
    rng = np.random.default_rng(seed)
    # Templates: coarse noise upsampled, so they are smooth blobs a small CNN can pick up.
    coarse = max(2, size // 8)
    margin = max(1, size // 8)  # room for random shifts of up to `margin` pixels each way
    templates = torch.from_numpy(rng.standard_normal((classes, channels, coarse, coarse), dtype=np.float32))
    big = F.interpolate(templates, size=size + 2 * margin, mode="bilinear", align_corners=False).numpy()
    big /= big.std()

    y = rng.permutation(np.arange(samples) % classes)  # balanced classes
    dy, dx = rng.integers(0, 2 * margin + 1, size=(2, samples))
    contrast = rng.uniform(0.5, 1.5, size=(samples, 1, 1, 1)).astype(np.float32)
    x = np.empty((samples, channels, size, size), dtype=np.uint8)
    # In chunks: the float32 working copy is of one chunk, never of the whole set (bench/memory.py).
    chunk = max(1, SYNTHETIC_CHUNK_VALUES // (channels * size * size))
    for start in range(0, samples, chunk):
        part = slice(start, min(start + chunk, samples))
        rows = dy[part, None] + np.arange(size)  # n×H
        cols = dx[part, None] + np.arange(size)  # n×W
        images = big[
            y[part, None, None, None],
            np.arange(channels)[None, :, None, None],
            rows[:, None, :, None],
            cols[:, None, None, :],
        ]
        # Per-sample contrast and strong pixel noise (twice the template's std) keep it from being solved
        # in one step: LeNet-5 needs a few epochs and stays short of 100% on held-out data.
        images *= contrast[part]
        images += 2.0 * rng.standard_normal(images.shape, dtype=np.float32)
        x[part] = np.clip(np.rint(images * SYNTHETIC_PIXELS_PER_UNIT + 128), 0, 255)
    return _read_only(x, y.astype(np.int64))


SYNTHETIC_CHUNK_VALUES = 1 << 24  # pixel values generated at once (64 MB as float32)
# As pixels: the values' std is about 2.2, so 18 pixel levels per unit leave 3 stds each side of 128 before
# clipping, at 40 levels per std.
SYNTHETIC_PIXELS_PER_UNIT = 18


def _files_raw(name: str, data_dir: Path | None) -> RawData:
    """MNIST, Fashion-MNIST or CIFAR-10 from the first folder that has it (data directory, then system)."""
    files = image_files.locate(name, _resolved(data_dir))
    return _read_files(name, tuple(files.items()))


@lru_cache(maxsize=2)
def _read_files(name: str, files: tuple[tuple[str, Path], ...]) -> RawData:
    """The files as uint8 pixels (a quarter of float32's memory), test set last; cached by the paths read,
    so files put in the data directory later win over the system folder's at the next load."""
    read = image_files.read_cifar10 if name == "cifar10" else image_files.read_mnist
    x, y, official_test = read(dict(files))
    return RawData(*_read_only(x, y), official_test)


def _resolved(data_dir: Path | None) -> Path | None:
    return None if data_dir is None else Path(data_dir).resolve()


def _in_data_dir(name: str, data_dir: Path | None) -> Path:
    if data_dir is None:
        raise DatasetUnavailable(("dataset", "name"), f"{name} is read from a data directory; none was given")
    return Path(data_dir).resolve()


def _upload_path(spec: BaseModel, data_dir: Path | None) -> Path:
    return uploads.stored_path(_in_data_dir("an uploaded dataset", data_dir), spec.id)


def _upload_size(header: tuple[tuple[int, ...], np.dtype]) -> RawSize:
    shape, dtype = header
    return RawSize(shape[0], dtype.itemsize)


def _read_only(*arrays: np.ndarray) -> tuple[np.ndarray, ...]:
    """Mark cached arrays read-only so no caller can change them for the next one."""
    for a in arrays:
        a.setflags(write=False)
    return arrays


def _from_files(
    name: str, spec: type[BaseModel], description: str, shape: tuple[int, int, int], samples: int
) -> DatasetEntry:
    """A 10-class dataset read from its published files: the data directory's, or its Debian package's."""
    package = image_files.SYSTEM_PACKAGES.get(name)
    system = f", or from Debian's package {package.name} ({package.folder})" if package else ""
    return DatasetEntry(
        spec=spec,
        description=f"{description} of the data directory{system}; never downloaded",
        native_shape=lambda s, data_dir: shape,
        num_classes=lambda s, data_dir: 10,
        load_raw=lambda s, data_dir: _files_raw(s.name, data_dir),
        raw_size=lambda s, data_dir: RawSize(samples, 1),  # the published sizes; read as uint8
        from_files=True,
    )


DATASETS: dict[str, DatasetEntry] = {
    "digits": DatasetEntry(
        spec=DigitsDataset,
        description="scikit-learn's 8x8 handwritten digits: 1797 images, 10 classes, pixel values 0..16",
        native_shape=lambda s, data_dir: (1, 8, 8),
        num_classes=lambda s, data_dir: 10,
        load_raw=lambda s, data_dir: RawData(*_digits_raw()),
        raw_size=lambda s, data_dir: RawSize(1797, 1),
    ),
    "synthetic": DatasetEntry(
        spec=SyntheticDataset,
        description="generated images: each class a smooth random template, shifted and noisy per sample",
        native_shape=lambda s, data_dir: (s.channels, s.size, s.size),
        num_classes=lambda s, data_dir: s.classes,
        load_raw=lambda s, data_dir: RawData(
            *_synthetic_raw(s.channels, s.size, s.classes, s.samples, s.seed)
        ),
        raw_size=lambda s, data_dir: RawSize(s.samples, 1),
    ),
    "mnist": _from_files(
        "mnist",
        MnistDataset,
        "MNIST handwritten digits: 60000 train + 10000 test images, 28x28 grey, 10 classes; "
        "IDX files, raw or .gz, in MNIST/raw/ or mnist/",
        (1, 28, 28),
        70_000,
    ),
    "fashion_mnist": _from_files(
        "fashion_mnist",
        FashionMnistDataset,
        "Fashion-MNIST clothing: 60000 train + 10000 test images, 28x28 grey, 10 classes; "
        "IDX files, raw or .gz, in FashionMNIST/raw/ or fashion_mnist/",
        (1, 28, 28),
        70_000,
    ),
    "cifar10": _from_files(
        "cifar10",
        Cifar10Dataset,
        "CIFAR-10 objects: 50000 train + 10000 test images, 32x32 colour, 10 classes; "
        "the binary version's .bin files in cifar-10-batches-bin/ or cifar10/",
        (3, 32, 32),
        60_000,
    ),
    # Its shape and classes are read from the stored file's header and labels: the API checked the id.
    "upload": DatasetEntry(
        spec=UploadDataset,
        description="a dataset uploaded with POST /v1/datasets (an .npz of x N×C×H×W or N×H×W and "
        "integer labels y), named by the id that answered",
        native_shape=lambda s, data_dir: uploads.stored_info(_upload_path(s, data_dir))[0],
        num_classes=lambda s, data_dir: uploads.stored_info(_upload_path(s, data_dir))[1],
        load_raw=lambda s, data_dir: RawData(*uploads.read_stored(_upload_path(s, data_dir))),
        raw_size=lambda s, data_dir: _upload_size(uploads.stored_x_header(_upload_path(s, data_dir))),
    ),
}


def ensure_available(dataset_spec: BaseModel | dict, data_dir: Path | None = None) -> None:
    """Raise DatasetUnavailable, naming the folders and files expected and how to install the dataset,
    unless it can be read."""
    dataset = _DATASET_SPEC.validate_python(dataset_spec)
    if DATASETS[dataset.name].from_files:
        image_files.locate(dataset.name, _resolved(data_dir))


class Availability(NamedTuple):
    """Whether this server has a dataset's files; where it lacks them, how to install them."""

    available: bool
    install: str | None = None


def availability(name: str, data_dir: Path | None = None) -> Availability:
    """Datasets shipped or generated are always there; a file-backed one where a folder holds its files."""
    if not DATASETS[name].from_files:
        return Availability(True)
    try:
        image_files.locate(name, _resolved(data_dir))
    except DatasetUnavailable:
        return Availability(False, image_files.install_hint(name, _resolved(data_dir)))
    return Availability(True)


# ---------------------------------------------------------------- metadata, splits, preprocessing


def dataset_info(
    dataset_spec: BaseModel | dict, model_spec: ModelSpec | dict | None = None, data_dir: Path | None = None
) -> DatasetInfo:
    """Input shape and class count for this dataset and model, from the specs (an upload: its header)."""
    dataset = _DATASET_SPEC.validate_python(dataset_spec)
    model = ModelSpec.model_validate(model_spec) if model_spec is not None else None
    entry = DATASETS[dataset.name]
    native = entry.native_shape(dataset, data_dir)
    if dataset.image_size is not None:
        size = dataset.image_size
    elif model is not None and model.arch is not None:
        size = preset_input_size(model.arch, native[-1])
    else:
        size = native[-1]
    classes = entry.num_classes(dataset, data_dir)
    return DatasetInfo(input_shape=(native[0], size, size), num_classes=classes, native_shape=native)


def load_splits(
    dataset_spec: BaseModel | dict, model_spec: ModelSpec | dict | None = None, data_dir: Path | None = None
) -> Splits:
    """Split by `split_seed` (not the training seed) and measure the train statistics at the input size.

    The splits keep the images as read (Splits.prepare makes network inputs of them). Datasets read from
    files are looked up in `data_dir` (the service's is settings.data_dir).
    """
    dataset = _DATASET_SPEC.validate_python(dataset_spec)
    info = dataset_info(dataset, model_spec, data_dir)
    raw = _load_raw(dataset, data_dir)
    train_idx, val_idx, test_idx = _split_indices(raw.y, dataset, raw.official_test)
    # Index copies (writable, unlike the cached arrays): data_bytes counts them beside the cache.
    pairs = [
        (torch.from_numpy(raw.x[idx]), torch.from_numpy(raw.y[idx])) for idx in (train_idx, val_idx, test_idx)
    ]
    mean, std = channel_stats(pairs[0][0], info.input_shape)
    return Splits(
        *pairs,
        mean=mean,
        std=std,
        num_classes=info.num_classes,
        input_shape=info.input_shape,
        native_shape=info.native_shape,
    )


def channel_stats(x: torch.Tensor, input_shape: tuple[int, int, int]) -> tuple[list[float], list[float]]:
    """Per-channel mean and std (population) of raw images x as the network sees them: resized to
    `input_shape`. Summed in float64 over chunks, so the images are never all held at the input size."""
    channels = input_shape[0]
    total = torch.zeros(channels, dtype=torch.float64)
    squares = torch.zeros(channels, dtype=torch.float64)
    chunk = max(1, STATS_CHUNK_VALUES // math.prod(input_shape))
    for start in range(0, len(x), chunk):
        resized = resize(x[start : start + chunk].float(), input_shape).double()
        total += resized.sum(dim=(0, 2, 3))
        squares += resized.square().sum(dim=(0, 2, 3))
    count = max(len(x), 1) * input_shape[1] * input_shape[2]
    mean = total / count
    std = (squares / count - mean.square()).clamp(min=0).sqrt()
    # A constant channel (its std rounding error) is only centred.
    std = torch.where(std > 1e-6 * mean.abs().clamp(min=1), std, torch.ones_like(std))
    return mean.tolist(), std.tolist()


STATS_CHUNK_VALUES = 1 << 22  # values resized at once while measuring the statistics (32 MB as float64)


def data_bytes(
    dataset_spec: BaseModel | dict, model_spec: ModelSpec | dict | None = None, data_dir: Path | None = None
) -> int:
    """Bytes of a job's images as a training process holds them, computed without loading them.

    load_splits keeps the raw arrays at native size as read (cached per process: uint8, or an upload's
    float32) and the splits' copies of them: twice the raw size. Network inputs are made a batch at a time,
    so the input size does not count. Counted for all samples (an upper bound where train_fraction or
    test_fraction leave some out). Python ints: a huge synthetic job cannot overflow.
    """
    dataset = _DATASET_SPEC.validate_python(dataset_spec)
    info = dataset_info(dataset, model_spec, data_dir)
    raw = DATASETS[dataset.name].raw_size(dataset, data_dir)
    return 2 * raw.samples * math.prod(info.native_shape) * raw.itemsize


def resize(x: torch.Tensor, input_shape: tuple[int, ...]) -> torch.Tensor:
    """Bilinear resize of an N×C×H×W batch to the network's H×W (unchanged when it already fits).

    F.interpolate's bilinear (align_corners=False, no antialiasing) is separable: each output row mixes two
    input rows and each column two columns, so it is two small matrix products with the 1-D interpolation
    matrices (made by F.interpolate itself: the same weights). Written so because it runs on every training
    batch: a batch of 64 28x28 images to 32x32 took 92 µs instead of 260 µs on the 2-core dev CPU, with
    the same numbers (to float rounding: equal for 28 -> 32, within 1e-5 relative elsewhere).
    """
    size = tuple(input_shape[-2:])
    if tuple(x.shape[-2:]) == size:
        return x
    rows = _interpolation_matrix(x.shape[-2], size[0], x.device, x.dtype)
    columns = _interpolation_matrix(x.shape[-1], size[1], x.device, x.dtype)
    return rows @ x @ columns.T


@lru_cache(maxsize=32)
def _interpolation_matrix(
    size_in: int, size_out: int, device: torch.device, dtype: torch.dtype
) -> torch.Tensor:
    """The (size_out × size_in) matrix of 1-D linear interpolation, align_corners=False."""
    identity = torch.eye(size_in, dtype=torch.float64)[None]  # size_in channels, each a unit signal
    weights = F.interpolate(identity, size=size_out, mode="linear", align_corners=False)[0]
    return weights.T.to(device=device, dtype=dtype).contiguous()


def normalize(x: torch.Tensor, mean: list[float], std: list[float]) -> torch.Tensor:
    """(x - mean) / std per channel of an N×C×H×W batch."""
    mean_t = torch.as_tensor(mean, dtype=x.dtype, device=x.device).view(1, -1, 1, 1)
    std_t = torch.as_tensor(std, dtype=x.dtype, device=x.device).view(1, -1, 1, 1)
    return (x - mean_t) / std_t


def network_inputs(
    x: torch.Tensor, mean: list[float], std: list[float], input_shape: tuple[int, int, int]
) -> torch.Tensor:
    """Raw images (... × C × H × W, native size, raw pixel scale, any dtype and device) to network inputs:
    float32, resized, normalised. Training, evaluation and predictions all make them here."""
    leading = x.shape[:-3]
    flat = x.reshape(-1, *x.shape[-3:]).float()
    return normalize(resize(flat, input_shape), mean, std).reshape(*leading, *input_shape)


def preprocess(x_raw, mean: list[float], std: list[float], input_shape: tuple[int, int, int]) -> torch.Tensor:
    """Raw inputs (N×C×H×W, native size, raw pixel scale) to network inputs, exactly as in training."""
    x = torch.as_tensor(x_raw, dtype=torch.float32)
    if x.dim() != 4 or x.shape[1] != input_shape[0]:
        raise ValueError(f"inputs must be N×{input_shape[0]}×H×W, got {'×'.join(map(str, x.shape))}")
    return network_inputs(x, mean, std, input_shape)


def split_indices(
    dataset_spec: BaseModel | dict, data_dir: Path | None = None
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Indices into the raw dataset of the train, val and test splits (sorted)."""
    dataset = _DATASET_SPEC.validate_python(dataset_spec)
    raw = _load_raw(dataset, data_dir)
    return _split_indices(raw.y, dataset, raw.official_test)


def raw_arrays(dataset_spec: BaseModel | dict, data_dir: Path | None = None) -> tuple[np.ndarray, np.ndarray]:
    """The whole dataset as read-only arrays: x N×C×H×W at native size and pixel scale, y int64.

    x is float32, or uint8 for datasets read from files; their official test set comes last.
    """
    raw = _load_raw(_DATASET_SPEC.validate_python(dataset_spec), data_dir)
    return raw.x, raw.y


def _load_raw(dataset: BaseModel, data_dir: Path | None) -> RawData:
    return DATASETS[dataset.name].load_raw(dataset, data_dir)


def _split_indices(
    y: np.ndarray, dataset: BaseModel, official_test: int = 0
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Train/val/test indices, stratified where the class counts allow, fixed by `split_seed`.

    A dataset with an official test set keeps it as the test split (or a `test_fraction` share of it)
    and carves val out of its official train set, so results compare with published ones.
    """
    rng = np.random.RandomState(dataset.split_seed)
    n = len(y)
    if official_test:
        rest, test = np.arange(n - official_test), np.arange(n - official_test, n)
        if dataset.test_fraction < 1.0:
            _, test = _take(test, y, max(1, int(official_test * dataset.test_fraction)), rng)
        val_count = max(1, int(len(rest) * dataset.val_fraction))
    else:
        rest, test = _take(np.arange(n), y, max(1, int(n * dataset.test_fraction)), rng)
        val_count = max(1, int(n * dataset.val_fraction))
    train, val = _take(rest, y, val_count, rng)
    if dataset.train_fraction < 1.0:
        train, _ = _take(train, y, len(train) - max(1, int(len(train) * dataset.train_fraction)), rng)
    return np.sort(train), np.sort(val), np.sort(test)


def _take(indices: np.ndarray, y: np.ndarray, count: int, rng: np.random.RandomState):
    """Split `count` of `indices` off (stratified if possible); returns (the rest, the ones taken)."""
    if count == 0:
        return indices, indices[:0]
    try:
        return train_test_split(indices, test_size=count, stratify=y[indices], random_state=rng)
    except ValueError:  # too few samples per class to stratify
        return train_test_split(indices, test_size=count, random_state=rng)
