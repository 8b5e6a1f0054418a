"""Uploaded .npz datasets: good ones come back as N×C×H×W; hostile or broken ones are refused, with why."""

from __future__ import annotations

import io
import struct
import zipfile

import numpy as np
import pytest

from models.datasets import dataset_info, load_splits
from models.uploads import CheckedUpload, UploadError, check_upload, save_checked, stored_path

LIMIT = 2**30
RNG = np.random.default_rng(0)


def npz(compressed: bool = False, **arrays) -> bytes:
    buffer = io.BytesIO()
    (np.savez_compressed if compressed else np.savez)(buffer, **arrays)
    return buffer.getvalue()


def labels(n: int = 40, classes: int = 4) -> np.ndarray:
    return np.arange(n) % classes


def zip_of(entries: dict[str, bytes], compression: int = zipfile.ZIP_STORED) -> bytes:
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", compression) as archive:
        for name, data in entries.items():
            archive.writestr(name, data)
    return buffer.getvalue()


def npy(array: np.ndarray) -> bytes:
    buffer = io.BytesIO()
    np.save(buffer, array, allow_pickle=True)
    return buffer.getvalue()


def refused(body: bytes, *words: str, limit: int = LIMIT) -> UploadError:
    with pytest.raises(UploadError) as caught:
        check_upload(body, limit)
    for word in words:
        assert word in caught.value.message, caught.value.message
    return caught.value


@pytest.mark.parametrize(
    "x, shape",
    [
        (RNG.integers(0, 256, (40, 3, 8, 8), dtype=np.uint8), (3, 8, 8)),
        (RNG.integers(0, 256, (40, 12, 10), dtype=np.uint8), (1, 12, 10)),
        (RNG.standard_normal((40, 2, 6, 6)).astype(np.float32), (2, 6, 6)),
        (RNG.standard_normal((40, 5, 5)), (1, 5, 5)),  # float64
    ],
)
@pytest.mark.parametrize("compressed", [False, True])
def test_good_uploads_come_back_as_nchw(x, shape, compressed):
    y = labels().astype(np.uint8)
    upload = check_upload(npz(compressed, x=x, y=y), LIMIT)
    assert (upload.n, upload.input_shape, upload.num_classes) == (40, shape, 4)
    assert upload.y.dtype == np.int64 and upload.x.dtype in (np.uint8, np.float32)
    np.testing.assert_allclose(upload.x.reshape(x.shape), x.astype(upload.x.dtype))


def test_a_stored_upload_trains_like_any_dataset(tmp_path):
    x = RNG.integers(0, 256, (60, 9, 9), dtype=np.uint8)
    upload = check_upload(npz(x=x, y=labels(60, 3)), LIMIT)
    dataset_id = "ab" * 16
    save_checked(upload, stored_path(tmp_path, dataset_id))
    spec = {"name": "upload", "id": dataset_id, "image_size": 16}
    assert dataset_info(spec, data_dir=tmp_path).native_shape == (1, 9, 9)
    assert dataset_info(spec, data_dir=tmp_path).num_classes == 3
    splits = load_splits(spec, {"arch": "lenet5"}, data_dir=tmp_path)
    assert splits.train[0].shape[1:] == (1, 16, 16)
    assert sum(len(part[1]) for part in (splits.train, splits.val, splits.test)) == 60


def test_not_a_zip():
    assert refused(b"\x93NUMPY not a zip at all", "not a .npz").status == 422


def test_an_extra_entry():
    body = zip_of({"x.npy": npy(np.zeros((10, 4, 4), np.uint8)), "y.npy": npy(labels(10, 2)), "run.py": b""})
    refused(body, "exactly x.npy and y.npy")


@pytest.mark.parametrize("name", ["../x.npy", "/x.npy", "sub/x.npy", "x.npy/"])
def test_path_entries(name):
    refused(zip_of({name: npy(np.zeros((10, 4, 4), np.uint8)), "y.npy": npy(labels(10, 2))}), "exactly")


def test_a_zip_bomb_is_refused_before_inflating():
    # 64 MiB of zeros deflate to ~64 KiB: refused by ratio from the directory alone.
    zeros = np.zeros((2**16, 1, 32, 32), np.uint8)
    body = zip_of({"x.npy": npy(zeros), "y.npy": npy(labels(2**16, 2))}, zipfile.ZIP_DEFLATED)
    assert len(body) < 2**20
    refused(body, "x.npy would inflate")


def test_arrays_over_the_inflated_limit_are_a_413():
    body = npz(x=RNG.integers(0, 256, (40, 1, 16, 16), dtype=np.uint8), y=labels())
    assert refused(body, "uncompressed", limit=5000).status == 413


def lie_about_size(body: bytes, name: str, size: int) -> bytes:
    """The archive with `name`'s uncompressed size changed in both its local and central headers."""
    data = bytearray(body)
    with zipfile.ZipFile(io.BytesIO(body)) as archive:
        info = archive.getinfo(name)
    struct.pack_into("<I", data, info.header_offset + 22, size)  # local file header
    central = data.find(b"PK\x01\x02")
    while central >= 0:  # the central directory entry with this name
        name_length = struct.unpack_from("<H", data, central + 28)[0]
        if data[central + 46 : central + 46 + name_length] == name.encode():
            struct.pack_into("<I", data, central + 24, size)
            break
        central = data.find(b"PK\x01\x02", central + 4)
    return bytes(data)


def test_a_declared_size_that_lies_is_refused():
    x = np.zeros((4096, 1, 32, 32), np.uint8)  # 4 MiB inflating from a few KiB
    honest = zip_of({"x.npy": npy(x), "y.npy": npy(labels(4096, 2))}, zipfile.ZIP_DEFLATED)
    with zipfile.ZipFile(io.BytesIO(honest)) as archive:
        compressed = archive.getinfo("x.npy").compress_size
    # Declares a sane ratio; its header still says 4096×1×32×32, which does not fit that size.
    refused(lie_about_size(honest, "x.npy", compressed * 10), "declares")


def test_a_member_longer_than_it_declares_is_never_inflated_past_it():
    # Header and declared size agree (10×4×4), but the deflated data goes on for 4 MiB more.
    x = npy(np.zeros((10, 4, 4), np.uint8))
    body = zip_of({"x.npy": x + bytes(2**22), "y.npy": npy(labels(10, 2))}, zipfile.ZIP_DEFLATED)
    refused(lie_about_size(body, "x.npy", len(x)), "Bad CRC-32")


@pytest.mark.parametrize("compressed", [False, True])
def test_damaged_archives_are_refused_never_crash(compressed):
    body = npz(compressed, x=RNG.integers(0, 256, (40, 1, 6, 6), dtype=np.uint8), y=labels())
    rng = np.random.default_rng(1)
    for _ in range(300):
        damaged = bytearray(body)
        for position in rng.integers(0, len(body), rng.integers(1, 4)):
            damaged[position] = rng.integers(0, 256)
        cut = len(body) if rng.random() < 0.8 else int(rng.integers(0, len(body)))
        try:
            check_upload(bytes(damaged[:cut]), LIMIT)
        except UploadError:
            pass  # refused with a reason; accepted is fine too where the bytes hit were padding


def test_a_pickled_object_array_is_never_loaded():
    x = np.empty((10, 4, 4), dtype=object)
    refused(zip_of({"x.npy": npy(x), "y.npy": npy(labels(10, 2))}), "object")
    y = np.array([{"a": 1}] * 10, dtype=object)
    refused(zip_of({"x.npy": npy(np.zeros((10, 4, 4), np.uint8)), "y.npy": npy(y)}), "object")


def test_a_pickle_posing_as_npy():
    refused(zip_of({"x.npy": b"\x80\x04\x95cos\nsystem\n.", "y.npy": npy(labels(10, 2))}), "not a readable")


@pytest.mark.parametrize(
    "x, y, words",
    [
        (np.zeros((40, 8), np.uint8), labels(), ("x is 40×8",)),
        (np.zeros((40, 1, 1, 8, 8), np.uint8), labels(), ("x is 40×1×1×8×8",)),
        (np.zeros((40, 8, 8), np.uint8), labels().reshape(20, 2), ("y is 20×2",)),
        (np.zeros((40, 8, 8), np.uint8), labels(39), ("40 samples", "39 labels")),
        (np.zeros((8, 8, 8), np.uint8), labels(8, 2), ("at least 10",)),
        (np.zeros((40, 17, 8, 8), np.uint8), labels(), ("17 channels",)),
        (np.zeros((40, 3, 8), np.uint8), labels(), ("must be 4..512",)),
        (np.zeros((40, 8, 8), np.int16), labels(), ("x is int16",)),
        (np.zeros((40, 8, 8), np.uint8), labels().astype(np.float32), ("integers",)),
    ],
)
def test_wrong_shapes_and_dtypes(x, y, words):
    refused(npz(x=x, y=y), *words)


def test_non_finite_values():
    x = RNG.standard_normal((40, 8, 8)).astype(np.float32)
    x[3, 2, 1], x[5, 0, 0] = np.nan, np.inf
    refused(npz(x=x, y=labels()), "2 values")
    refused(npz(x=np.full((40, 8, 8), 1e300), y=labels()), "float32's range")


@pytest.mark.parametrize(
    "y, words",
    [
        (labels() - 1, ("found -1",)),
        (np.zeros(40, np.int64), ("1 classes",)),
        (labels() * 1000, ("3001 classes",)),
        (np.where(labels() == 2, 3, labels()), ("classes 2 have no samples",)),
    ],
)
def test_labels_out_of_range_or_missing_classes(y, words):
    refused(npz(x=np.zeros((40, 8, 8), np.uint8), y=y), *words)


def test_checked_upload_is_what_is_stored(tmp_path):
    upload = check_upload(npz(x=np.arange(40 * 16, dtype=np.uint8).reshape(40, 4, 4), y=labels()), LIMIT)
    path = stored_path(tmp_path, "cd" * 16)
    save_checked(upload, path)
    again = check_upload(path.read_bytes(), LIMIT)
    assert isinstance(again, CheckedUpload) and again.input_shape == (1, 4, 4)
    np.testing.assert_array_equal(again.x, upload.x)
