"""MNIST, Fashion-MNIST and CIFAR-10 read from their published files in a local folder; nothing is downloaded.

The folders searched: the data directory's, then the system folder a Debian dataset package installs.

MNIST and Fashion-MNIST come as IDX files (raw or gzipped), CIFAR-10 as its binary version. The python
version of CIFAR-10 is refused: it is pickled, and unpickling a file can run arbitrary code.
"""

from __future__ import annotations

import gzip
import struct
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from models.spec import SpecError

IDX_FILES = (
    "train-images-idx3-ubyte",
    "train-labels-idx1-ubyte",
    "t10k-images-idx3-ubyte",
    "t10k-labels-idx1-ubyte",
)
CIFAR_FILES = (*(f"data_batch_{i}.bin" for i in range(1, 6)), "test_batch.bin")
CIFAR_RECORD = 1 + 3 * 32 * 32  # one label byte, then the red, green and blue 32x32 planes

# Folders tried in order under the data directory: torchvision's layout first, then a flat one.
FOLDERS = {
    "mnist": ("MNIST/raw", "mnist"),
    "fashion_mnist": ("FashionMNIST/raw", "fashion_mnist"),
    "cifar10": ("cifar-10-batches-bin", "cifar10"),
}


@dataclass(frozen=True)
class SystemPackage:
    """A Debian package that installs a dataset's files into a system folder."""

    name: str
    folder: Path


# The one search list besides the data directory. Only Fashion-MNIST is packaged (`apt-cache search
# dataset-`: no MNIST or CIFAR-10). A fixed path, not a setting: the package always installs there, and
# files anywhere else go in the data directory, which is searched first.
SYSTEM_PACKAGES = {
    "fashion_mnist": SystemPackage("dataset-fashion-mnist", Path("/usr/share/datasets/fashion-mnist")),
}


class DatasetUnavailable(SpecError):
    """A dataset's files are missing or unreadable."""


def locate(name: str, data_dir: Path | None) -> dict[str, Path]:
    """The dataset's files by published name, from the first folder that holds all of them: the data
    directory's folders (None: there is none), then the system folder of its Debian package, if any."""
    gaps = []
    for folder in search_folders(name, data_dir):
        found = _find_all(name, folder)
        if all(found.values()):
            return found
        if any(found.values()):
            gaps.append(f"{folder} lacks {', '.join(n for n, path in found.items() if not path)}")
    raise DatasetUnavailable(("dataset", "name"), "; ".join([_missing_message(name, data_dir), *gaps]))


def search_folders(name: str, data_dir: Path | None) -> list[Path]:
    """Where `name`'s files are looked for, in order: the data directory wins over the system folder."""
    folders = [data_dir / folder for folder in FOLDERS[name]] if data_dir is not None else []
    if name in SYSTEM_PACKAGES:
        folders.append(SYSTEM_PACKAGES[name].folder)
    return folders


def install_hint(name: str, data_dir: Path | None) -> str:
    """How to give this server the dataset: its Debian package, if there is one, or files in the data dir."""
    files = "the IDX files" if name != "cifar10" else "CIFAR-10's binary version"
    hint = f"put {files} in {_data_folders(name, data_dir)}"
    if name in SYSTEM_PACKAGES:
        hint = f"apt-get install {SYSTEM_PACKAGES[name].name}, or {hint}"
    return hint


def read_mnist(files: dict[str, Path]) -> tuple[np.ndarray, np.ndarray, int]:
    """(x N×1×28×28 uint8, y int64, test count): the official train images, then the official test ones."""
    x_train, x_test = (_read_idx(files[f"{p}-images-idx3-ubyte"], (28, 28)) for p in ("train", "t10k"))
    y_train, y_test = (_read_idx(files[f"{p}-labels-idx1-ubyte"], ()) for p in ("train", "t10k"))
    for images, labels in ((x_train, y_train), (x_test, y_test)):
        if len(images) != len(labels):
            raise _unreadable(files["train-images-idx3-ubyte"].parent, "image and label counts differ")
    x = np.concatenate([x_train, x_test])[:, None]
    y = np.concatenate([y_train, y_test]).astype(np.int64)
    _check_labels(y, files["train-labels-idx1-ubyte"].parent)
    return x, y, len(y_test)


def read_cifar10(files: dict[str, Path]) -> tuple[np.ndarray, np.ndarray, int]:
    """(x N×3×32×32 uint8, y int64, test count): the five train batches, then the test batch."""
    records = []
    for name in CIFAR_FILES:
        data = np.fromfile(files[name], dtype=np.uint8)
        if data.size == 0 or data.size % CIFAR_RECORD:
            raise _unreadable(files[name], f"not a whole number of {CIFAR_RECORD}-byte records")
        records.append(data.reshape(-1, CIFAR_RECORD))
    table = np.concatenate(records)
    y = table[:, 0].astype(np.int64)
    _check_labels(y, files["test_batch.bin"].parent)
    return table[:, 1:].reshape(-1, 3, 32, 32), y, len(records[-1])


def _find_all(name: str, folder: Path) -> dict[str, Path | None]:
    """Each file the dataset needs, by published name, or None where it is not in `folder`."""
    if name == "cifar10":
        return {n: folder / n if (folder / n).is_file() else None for n in CIFAR_FILES}
    # The raw file is read faster than the gzipped one, so it wins when both are there.
    candidates = {n: (folder / n, folder / f"{n}.gz") for n in IDX_FILES}
    return {n: next((path for path in paths if path.is_file()), None) for n, paths in candidates.items()}


def _data_folders(name: str, data_dir: Path | None) -> str:
    """The data directory's folders for `name`, for a message (spelt out where there is no data dir)."""
    if data_dir is None:
        return f"a data directory's {' or '.join(f'{folder}/' for folder in FOLDERS[name])}"
    return " or ".join(f"{data_dir / folder}/" for folder in FOLDERS[name])


def _missing_message(name: str, data_dir: Path | None) -> str:
    where = _data_folders(name, data_dir)
    if name == "cifar10" and data_dir is not None:
        pickled = [data_dir / "cifar-10-batches-py", *(data_dir / f for f in FOLDERS[name])]
        if any((folder / "data_batch_1").is_file() for folder in pickled):
            return (
                f"cifar10: only the python version of CIFAR-10 is in {data_dir}; its files are pickled "
                "and trainyard never unpickles files (unpickling can run arbitrary code). Put the binary "
                f"version (cifar-10-binary.tar.gz, extracted: {', '.join(CIFAR_FILES)}) in {where}"
            )
        expected = ", ".join(CIFAR_FILES) + " (CIFAR-10 binary version)"
    else:
        expected = ", ".join(IDX_FILES) + " (each may end in .gz)"
    package = SYSTEM_PACKAGES.get(name)
    if package is not None:
        return (
            f"{name} is not on this server: install Debian's package (apt-get install {package.name}: "
            f"its files go to {package.folder}), or put {expected} in {where}. Nothing is downloaded "
            "(TRAINYARD_DATA_DIR sets the data directory)"
        )
    return (
        f"{name} is not in the data directory {data_dir or '(none given)'}: expected {expected} in {where}. "
        "Nothing is downloaded: put the files there (TRAINYARD_DATA_DIR sets the data directory)"
    )


def _read_idx(path: Path, item_shape: tuple[int, ...]) -> np.ndarray:
    """An IDX array of unsigned bytes: two zero bytes, 0x08, the dimension count, big-endian sizes, data."""
    with (gzip.open if path.suffix == ".gz" else open)(path, "rb") as f:
        data = f.read()
    ndim = 1 + len(item_shape)
    if len(data) < 4 + 4 * ndim or data[:4] != bytes([0, 0, 0x08, ndim]):
        raise _unreadable(path, f"not an IDX file of unsigned bytes with {ndim} dimensions")
    shape = struct.unpack(f">{ndim}I", data[4 : 4 + 4 * ndim])
    if shape[1:] != item_shape:
        raise _unreadable(path, f"items are {'x'.join(map(str, shape[1:]))}, expected {item_shape}")
    body = np.frombuffer(data, dtype=np.uint8, offset=4 + 4 * ndim)
    if body.size != np.prod(shape):
        raise _unreadable(path, f"holds {body.size} bytes of data, its header promises {np.prod(shape)}")
    return body.reshape(shape)


def _check_labels(y: np.ndarray, where: Path) -> None:
    if y.size and y.max() >= 10:
        raise _unreadable(where, f"a label is {y.max()}, but the dataset has 10 classes (0..9)")


def _unreadable(path: Path, why: str) -> DatasetUnavailable:
    return DatasetUnavailable(("dataset", "name"), f"cannot read {path}: {why}")
