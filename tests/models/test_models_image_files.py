"""MNIST, Fashion-MNIST and CIFAR-10 from tiny files in their published formats, written into tmp_path."""

import pickle

import numpy as np
import pytest
import torch

from models.datasets import (
    DatasetUnavailable,
    dataset_info,
    ensure_available,
    load_splits,
    raw_arrays,
    split_indices,
)
from models.image_files import CIFAR_FILES, IDX_FILES
from store.settings import Settings
from tests.idx_files import TEST, TRAIN, labels, write_mnist


def write_cifar(folder) -> np.ndarray:
    """Six batches; pixels: red plane = 10*label, green 100, blue 200. Answers the labels in file order."""
    all_labels = []
    for i, name in enumerate(CIFAR_FILES):
        y = labels(TRAIN // 5 if name != "test_batch.bin" else TEST, i)
        planes = np.stack([10 * y, np.full_like(y, 100), np.full_like(y, 200)], axis=1)
        records = np.concatenate([y[:, None], np.repeat(planes, 1024, axis=1)], axis=1).astype(np.uint8)
        folder.mkdir(parents=True, exist_ok=True)
        (folder / name).write_bytes(records.tobytes())
        all_labels.append(y)
    return np.concatenate(all_labels)


def test_mnist_from_torchvision_layout_gzipped(tmp_path):
    x_files, y_files = write_mnist(tmp_path / "MNIST" / "raw", gz=True)
    splits = load_splits({"name": "mnist"}, None, data_dir=tmp_path)
    assert (splits.input_shape, splits.num_classes, splits.native_shape) == ((1, 28, 28), 10, (1, 28, 28))
    for x, y in (splits.train, splits.val, splits.test):
        assert x.shape[1:] == (1, 28, 28) and x.dtype == torch.float32 and y.dtype == torch.int64
    # The official test set is the test split, whole and in order; val comes out of the train set.
    assert splits.test[1].tolist() == y_files[TRAIN:].tolist()
    assert len(splits.val[1]) == int(TRAIN * 0.15) and len(splits.train[1]) == TRAIN - int(TRAIN * 0.15)
    # Normalised with the train statistics, and every image still carries its own label.
    assert splits.train[0].mean().item() == pytest.approx(0.0, abs=1e-5)
    assert splits.train[0].std(unbiased=False).item() == pytest.approx(1.0, abs=1e-5)
    pixels = splits.test[0][:, 0, 5, 5] * splits.std[0] + splits.mean[0]
    assert torch.allclose(pixels, 20.0 * splits.test[1], atol=1e-3)


def test_mnist_flat_folder_raw_files_resized_for_lenet5(tmp_path):
    x_files, y_files = write_mnist(tmp_path / "mnist", gz=False)
    x, y = raw_arrays({"name": "mnist"}, data_dir=tmp_path)
    assert x.dtype == np.uint8 and x.shape == (TRAIN + TEST, 1, 28, 28)
    assert np.array_equal(x[:, 0], x_files) and np.array_equal(y, y_files)
    splits = load_splits({"name": "mnist"}, {"arch": "lenet5"}, data_dir=tmp_path)
    assert splits.train[0].shape[1:] == (1, 32, 32)


def test_fashion_mnist_found_through_the_environment(tmp_path, monkeypatch):
    write_mnist(tmp_path / "FashionMNIST" / "raw", gz=True)
    monkeypatch.setenv("TRAINYARD_DATA_DIR", str(tmp_path))
    data_dir = Settings().data_dir  # the environment reaches the datasets through the settings only
    ensure_available({"name": "fashion_mnist"}, data_dir)
    assert len(load_splits({"name": "fashion_mnist"}, data_dir=data_dir).test[1]) == TEST
    with pytest.raises(DatasetUnavailable):  # the same files do not count as MNIST
        ensure_available({"name": "mnist"}, data_dir)


def test_cifar10_binary_version(tmp_path):
    y_files = write_cifar(tmp_path / "cifar-10-batches-bin")
    assert dataset_info({"name": "cifar10"}).input_shape == (3, 32, 32)
    x, y = raw_arrays({"name": "cifar10"}, data_dir=tmp_path)
    assert x.shape == (TRAIN + TEST, 3, 32, 32) and np.array_equal(y, y_files)
    # Records are 1 label byte then the red, green and blue planes, row by row.
    assert np.array_equal(x[:, 0, 31, 31], 10 * y) and (x[:, 1] == 100).all() and (x[:, 2] == 200).all()
    splits = load_splits({"name": "cifar10"}, None, data_dir=tmp_path)
    assert len(splits.mean) == 3 and splits.test[1].tolist() == y_files[TRAIN:].tolist()


def test_official_test_set_stays_put_while_val_follows_split_seed(tmp_path):
    write_mnist(tmp_path / "mnist", gz=True)
    train_a, val_a, test_a = split_indices({"name": "mnist", "split_seed": 1}, data_dir=tmp_path)
    train_b, val_b, test_b = split_indices({"name": "mnist", "split_seed": 2}, data_dir=tmp_path)
    assert test_a.tolist() == test_b.tolist() == list(range(TRAIN, TRAIN + TEST))
    assert val_a.tolist() != val_b.tolist() and max(val_a.max(), val_b.max()) < TRAIN
    _, _, half = split_indices({"name": "mnist", "test_fraction": 0.5}, data_dir=tmp_path)
    assert len(half) == TEST // 2 and set(half) <= set(test_a)


def test_missing_files_are_refused_but_metadata_needs_none(tmp_path):
    info = dataset_info({"name": "mnist"}, {"arch": "lenet5"})
    assert (info.input_shape, info.num_classes) == ((1, 32, 32), 10)
    ensure_available({"name": "digits"}, data_dir=tmp_path)  # shipped in the package: nothing to check
    with pytest.raises(DatasetUnavailable) as refused:
        ensure_available({"name": "mnist"}, data_dir=tmp_path)
    assert refused.value.loc == ("dataset", "name")
    message = str(refused.value)
    assert str(tmp_path / "MNIST" / "raw") in message and str(tmp_path / "mnist") in message
    assert all(name in message for name in IDX_FILES) and ".gz" in message
    assert pickle.loads(pickle.dumps(refused.value)).loc == ("dataset", "name")  # crosses processes


def test_a_partial_copy_is_refused(tmp_path):
    write_mnist(tmp_path / "mnist", gz=False)
    (tmp_path / "mnist" / "t10k-labels-idx1-ubyte").unlink()
    with pytest.raises(DatasetUnavailable, match="mnist lacks t10k-labels-idx1-ubyte$"):
        load_splits({"name": "mnist"}, None, data_dir=tmp_path)


def test_cifar10_python_version_is_refused_with_the_reason(tmp_path):
    folder = tmp_path / "cifar-10-batches-py"
    folder.mkdir()
    for name in ("data_batch_1", "data_batch_2", "test_batch", "batches.meta"):
        (folder / name).write_bytes(pickle.dumps({"never": "opened"}))
    with pytest.raises(DatasetUnavailable) as refused:
        ensure_available({"name": "cifar10"}, data_dir=tmp_path)
    message = str(refused.value)
    assert "pickled" in message and "never unpickles" in message
    assert "binary version" in message and str(tmp_path / "cifar-10-batches-bin") in message


def test_a_file_in_another_format_is_refused(tmp_path):
    write_mnist(tmp_path / "mnist", gz=False)
    (tmp_path / "mnist" / "train-images-idx3-ubyte").write_bytes(b"<html>404 Not Found</html>")
    with pytest.raises(DatasetUnavailable, match="not an IDX file"):
        raw_arrays({"name": "mnist"}, data_dir=tmp_path)
