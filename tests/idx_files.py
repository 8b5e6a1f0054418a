"""Tiny MNIST-format datasets in the published IDX files, written where a test needs them."""

from __future__ import annotations

import gzip
import os
import struct

import numpy as np
import pytest

from models.datasets import availability
from models.image_files import IDX_FILES, SYSTEM_PACKAGES

TRAIN, TEST = 40, 12  # images in the official train and test sets of the tiny copies


def write_idx(path, array: np.ndarray) -> None:
    """An IDX file: two zero bytes, 0x08 (unsigned bytes), the dimension count, big-endian sizes, data."""
    header = bytes([0, 0, 0x08, array.ndim]) + struct.pack(f">{array.ndim}I", *array.shape)
    data = header + array.astype(np.uint8).tobytes()
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(gzip.compress(data) if path.suffix == ".gz" else data)


def labels(count: int, offset: int) -> np.ndarray:
    return (np.arange(count) + offset) % 10


def digit_images(y: np.ndarray) -> np.ndarray:
    """Each image a constant 20*label, except its top-left pixel: its index, to tell images apart."""
    x = np.repeat(20 * y, 28 * 28).reshape(-1, 28, 28)
    x[:, 0, 0] = np.arange(len(y))
    return x


def write_mnist(folder, gz: bool) -> tuple[np.ndarray, np.ndarray]:
    """Tiny MNIST files in `folder`; answers the images and labels in file order, train then test."""
    y_train, y_test = labels(TRAIN, 0), labels(TEST, 3)
    x_train, x_test = digit_images(y_train), digit_images(y_test)
    suffix = ".gz" if gz else ""
    for name, array in zip(IDX_FILES, (x_train, y_train, x_test, y_test), strict=True):
        write_idx(folder / f"{name}{suffix}", array)
    return np.concatenate([x_train, x_test]), np.concatenate([y_train, y_test])


# The whole Fashion-MNIST, from Debian's package. `make test` (so CI) installs it first, and there a
# missing package fails the tests; a developer's machine without root may lack it: skipped, saying how.
FASHION_MNIST_FOLDER = SYSTEM_PACKAGES["fashion_mnist"].folder
_system_copy = availability("fashion_mnist", data_dir=None)
needs_fashion_mnist = pytest.mark.skipif(
    not _system_copy.available and not os.environ.get("CI"),
    reason=f"Fashion-MNIST is not installed: {_system_copy.install} (make test does it as root)",
)
