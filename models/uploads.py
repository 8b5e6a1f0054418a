"""Uploaded datasets (.npz with x and y): checked piece by piece, each step before the one that costs more.

Order: the zip's directory (names, declared sizes, compression ratios), then each .npy header (dtype,
shape, size), and only then the arrays themselves, read with allow_pickle=False. Nothing is inflated
until the declared sizes are known to be small enough, and zipfile never inflates a member past its
declared size (a member that lies about it fails its CRC check instead).
"""

from __future__ import annotations

import io
import math
import struct
import zipfile
import zlib
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path

import numpy as np
from numpy.lib import format as npy_format

from models.spec import SpecError

ENTRIES = ("x.npy", "y.npy")
# Deflate tops out near 1032:1; real image arrays compress far less (MNIST as uint8: about 5:1, mostly
# blank masks: tens). A member beyond this ratio is a bomb, refused before it is inflated.
MAX_COMPRESSION_RATIO = 200
MIN_SAMPLES = 10
MAX_CHANNELS = 16
SIDE_RANGE = (4, 512)
CLASS_RANGE = (2, 1000)
X_DTYPES = ("uint8", "float32", "float64")
# What zipfile, zlib and numpy raise for damaged or forged bytes (struct.error: truncated headers).
UNREADABLE = (
    zipfile.BadZipFile,
    zlib.error,
    struct.error,
    ValueError,
    OSError,
    EOFError,
    NotImplementedError,
)


class UploadError(ValueError):
    """An upload refused, with the reason; `loc` names the part (() the archive, ("x",) or ("y",))."""

    def __init__(self, loc: tuple, message: str, status: int = 422):
        super().__init__(message)
        self.loc = tuple(loc)
        self.message = message
        self.status = status


@dataclass(frozen=True)
class CheckedUpload:
    """A dataset that passed every check: x N×C×H×W (uint8 or float32, all finite), y int64 in 0..K-1."""

    x: np.ndarray
    y: np.ndarray
    num_classes: int

    @property
    def n(self) -> int:
        return len(self.y)

    @property
    def input_shape(self) -> tuple[int, int, int]:
        return tuple(self.x.shape[1:])


def check_upload(body: bytes, max_inflated_bytes: int) -> CheckedUpload:
    """The arrays of an uploaded .npz, or an UploadError saying what is wrong with it."""
    try:
        archive = zipfile.ZipFile(io.BytesIO(body))
    except UNREADABLE as exc:
        raise UploadError((), f"not a .npz (zip) archive: {exc}") from exc
    with archive:
        _check_directory(archive, max_inflated_bytes)
        x_shape = _check_header(archive, "x")
        y_shape = _check_header(archive, "y")
    _check_shapes(x_shape, y_shape)
    x, y = _read_arrays(body)
    x = _checked_x(x)
    y, num_classes = _checked_labels(y)
    return CheckedUpload(x=x.reshape(len(x), -1, *x.shape[-2:]), y=y, num_classes=num_classes)


def _check_directory(archive: zipfile.ZipFile, max_inflated_bytes: int) -> None:
    infos = archive.infolist()
    names = [info.filename for info in infos]
    if sorted(names) != sorted(ENTRIES):
        raise UploadError((), f"the archive must hold exactly x.npy and y.npy, not {names[:10]}")
    for info in infos:
        if info.flag_bits & 0x1:
            raise UploadError((), f"{info.filename} is encrypted")
        if info.compress_type not in (zipfile.ZIP_STORED, zipfile.ZIP_DEFLATED):
            raise UploadError((), f"{info.filename}: only stored or deflated members (as numpy writes)")
        ratio = info.file_size / max(info.compress_size, 1)
        if ratio > MAX_COMPRESSION_RATIO:
            raise UploadError(
                (), f"{info.filename} would inflate {ratio:.0f}-fold (at most {MAX_COMPRESSION_RATIO})"
            )
    inflated = sum(info.file_size for info in infos)
    if inflated > max_inflated_bytes:
        raise UploadError(
            (), f"the arrays are {inflated} bytes uncompressed; at most {max_inflated_bytes}", status=413
        )


def _check_header(archive: zipfile.ZipFile, key: str) -> tuple[int, ...]:
    """Shape from the .npy header (only its bytes are inflated); dtype and declared size checked."""
    info = archive.getinfo(f"{key}.npy")
    try:
        with archive.open(info) as member:
            shape, dtype = _read_header(member)
            header_bytes = member.tell()
    except UNREADABLE as exc:
        raise UploadError((key,), f"{key}.npy is not a readable .npy array: {exc}") from exc
    _check_dtype(key, dtype)
    data_bytes = math.prod(shape) * dtype.itemsize  # Python ints: a forged shape cannot overflow
    if header_bytes + data_bytes != info.file_size:
        raise UploadError(
            (key,),
            f"{key}.npy declares {info.file_size} bytes; its header describes {header_bytes + data_bytes}",
        )
    return tuple(shape)


def _read_header(member) -> tuple[tuple[int, ...], np.dtype]:
    """Shape and dtype from a .npy file's header, reading no further."""
    version = npy_format.read_magic(member)
    if version == (1, 0):
        shape, _, dtype = npy_format.read_array_header_1_0(member)
    elif version == (2, 0):
        shape, _, dtype = npy_format.read_array_header_2_0(member)
    else:
        raise ValueError(f"format version {version} is not supported (1.0 and 2.0 are)")
    return shape, dtype


def _check_dtype(key: str, dtype: np.dtype) -> None:
    if dtype.hasobject or dtype.fields is not None or dtype.subdtype is not None:
        raise UploadError((key,), f"{key} holds {dtype}: objects and records are refused (never unpickled)")
    if key == "x" and not (
        (dtype.kind == "u" and dtype.itemsize == 1) or (dtype.kind == "f" and dtype.itemsize in (4, 8))
    ):
        raise UploadError(("x",), f"x is {dtype}; it must be one of {', '.join(X_DTYPES)}")
    if key == "y" and dtype.kind not in "iu":
        raise UploadError(("y",), f"y is {dtype}; labels must be integers")


def _check_shapes(x_shape: tuple[int, ...], y_shape: tuple[int, ...]) -> None:
    if len(x_shape) not in (3, 4):
        raise UploadError(("x",), f"x is {_dims(x_shape)}; it must be N×C×H×W or N×H×W")
    if len(y_shape) != 1:
        raise UploadError(("y",), f"y is {_dims(y_shape)}; it must be one label per sample (N)")
    if x_shape[0] != y_shape[0]:
        raise UploadError((), f"x has {x_shape[0]} samples but y has {y_shape[0]} labels")
    if x_shape[0] < MIN_SAMPLES:
        raise UploadError(("x",), f"{x_shape[0]} samples; at least {MIN_SAMPLES} are needed to split")
    channels = x_shape[1] if len(x_shape) == 4 else 1
    if not 1 <= channels <= MAX_CHANNELS:
        raise UploadError(("x",), f"x has {channels} channels; 1 to {MAX_CHANNELS} are allowed")
    low, high = SIDE_RANGE
    if not all(low <= side <= high for side in x_shape[-2:]):
        raise UploadError(("x",), f"images are {_dims(x_shape[-2:])}; height and width must be {low}..{high}")


def _read_arrays(body: bytes) -> tuple[np.ndarray, np.ndarray]:
    try:
        with np.load(io.BytesIO(body), allow_pickle=False) as npz:
            return npz["x"], npz["y"]
    except UNREADABLE as exc:  # a pickle, or bytes that lied about what they hold
        raise UploadError((), f"the arrays cannot be read safely: {exc}") from exc


def _checked_x(x: np.ndarray) -> np.ndarray:
    """uint8 as it is; floats as float32 (what training uses), which must all be finite."""
    if x.dtype.kind == "u":
        return np.ascontiguousarray(x, dtype=np.uint8)
    with np.errstate(over="ignore"):  # float64 beyond float32's range becomes inf, refused below
        x = np.ascontiguousarray(x, dtype=np.float32)
    bad = int(x.size - np.count_nonzero(np.isfinite(x)))
    if bad:
        raise UploadError(("x",), f"x has {bad} values that are NaN, infinite or beyond float32's range")
    return x


def _checked_labels(y: np.ndarray) -> tuple[np.ndarray, int]:
    low, high = CLASS_RANGE
    if y.min() < 0:
        raise UploadError(("y",), f"labels must be 0..K-1; found {y.min()}")
    num_classes = int(y.max()) + 1
    if not low <= num_classes <= high:
        raise UploadError(
            ("y",), f"labels 0..{num_classes - 1} make {num_classes} classes; {low}..{high} are allowed"
        )
    y = y.astype(np.int64)
    missing = np.flatnonzero(np.bincount(y, minlength=num_classes) == 0)
    if len(missing):
        shown = ", ".join(map(str, missing[:20])) + (" ..." if len(missing) > 20 else "")
        raise UploadError(
            ("y",), f"classes {shown} have no samples; every class 0..{num_classes - 1} needs some"
        )
    return y, num_classes


def _dims(shape: tuple[int, ...]) -> str:
    return "×".join(map(str, shape)) or "a scalar"


# ---------------------------------------------------------------- stored uploads (read by jobs)


def stored_path(data_dir: Path, dataset_id: str) -> Path:
    """Where an upload is kept; the id is a hex uuid (the spec's pattern), so it cannot leave the folder."""
    return Path(data_dir) / "uploads" / f"{dataset_id}.npz"


def save_checked(upload: CheckedUpload, path: Path) -> None:
    """The checked arrays, uncompressed, written whole before they appear under their name."""
    path.parent.mkdir(parents=True, exist_ok=True)
    partial = path.with_suffix(".partial")
    with open(partial, "wb") as file:
        np.savez(file, x=upload.x, y=upload.y)
    partial.replace(path)


def stored_x_header(path: Path) -> tuple[tuple[int, ...], np.dtype]:
    """Shape (N×C×H×W) and dtype of a stored upload's images, from the header alone."""
    if not path.is_file():
        raise SpecError(("dataset", "id"), f"no uploaded dataset {path.stem}")
    with zipfile.ZipFile(path) as archive, archive.open("x.npy") as member:
        return _read_header(member)


@lru_cache(maxsize=16)  # uploads never change once stored
def stored_info(path: Path) -> tuple[tuple[int, int, int], int]:
    """(input shape C×H×W, number of classes) of a stored upload, without reading its images."""
    shape, _ = stored_x_header(path)
    with np.load(path, allow_pickle=False) as npz:
        num_classes = int(npz["y"].max()) + 1
    return tuple(shape[1:]), num_classes


@lru_cache(maxsize=2)
def read_stored(path: Path) -> tuple[np.ndarray, np.ndarray]:
    """x N×C×H×W and y of a stored upload (read-only: they are cached for the next job)."""
    if not path.is_file():
        raise SpecError(("dataset", "id"), f"no uploaded dataset {path.stem}")
    with np.load(path, allow_pickle=False) as npz:
        x, y = npz["x"], npz["y"]
    for array in (x, y):
        array.setflags(write=False)
    return x, y
