"""Fashion-MNIST from Debian's package (/usr/share/datasets/fashion-mnist) with no data directory set up;
the data directory wins over it; a dataset on neither says how to install it."""

import numpy as np
import pytest

from models import image_files
from models.catalog import catalog
from models.datasets import DatasetUnavailable, ensure_available, load_splits, raw_arrays
from tests.idx_files import FASHION_MNIST_FOLDER, TEST, TRAIN, needs_fashion_mnist, write_mnist


@needs_fashion_mnist
def test_the_whole_fashion_mnist_is_found_in_the_system_folder(tmp_path):
    ensure_available({"name": "fashion_mnist"}, data_dir=tmp_path)  # an empty data directory
    x, y = raw_arrays({"name": "fashion_mnist"}, data_dir=tmp_path)
    assert x.shape == (70_000, 1, 28, 28) and x.dtype == np.uint8
    assert sorted(np.unique(y).tolist()) == list(range(10))
    assert np.bincount(y[:60_000]).tolist() == [6_000] * 10  # the published train set: 6000 per class
    splits = load_splits({"name": "fashion_mnist", "val_fraction": 0.1}, data_dir=tmp_path)
    assert (splits.num_classes, splits.native_shape) == (10, (1, 28, 28))
    assert len(splits.train[1]) + len(splits.val[1]) == 60_000 and len(splits.test[1]) == 10_000
    assert load_splits({"name": "fashion_mnist"}, data_dir=None).test[1].shape == (10_000,)  # no data dir


@needs_fashion_mnist
def test_the_data_directory_wins_over_the_system_folder(tmp_path):
    whole, _ = raw_arrays({"name": "fashion_mnist"}, data_dir=tmp_path)
    x_files, y_files = write_mnist(tmp_path / "fashion_mnist", gz=True)
    x, y = raw_arrays({"name": "fashion_mnist"}, data_dir=tmp_path)
    assert len(x) == TRAIN + TEST < len(whole)
    assert np.array_equal(x[:, 0], x_files) and np.array_equal(y, y_files)


def test_a_missing_dataset_says_how_to_install_it(tmp_path, monkeypatch):
    # This machine's package stands for one not installed: its folder moved somewhere empty.
    package = image_files.SystemPackage("dataset-fashion-mnist", tmp_path / "not-installed")
    monkeypatch.setitem(image_files.SYSTEM_PACKAGES, "fashion_mnist", package)
    data_dir = tmp_path / "data"
    with pytest.raises(DatasetUnavailable) as refused:
        ensure_available({"name": "fashion_mnist"}, data_dir)
    assert refused.value.loc == ("dataset", "name")
    message = str(refused.value)
    assert "apt-get install dataset-fashion-mnist" in message and str(package.folder) in message
    assert str(data_dir / "fashion_mnist") in message and "train-images-idx3-ubyte" in message
    fashion = {d["type"]: d for d in catalog(data_dir)["datasets"]}["fashion_mnist"]
    assert fashion["available"] is False
    assert fashion["install"] == (
        f"apt-get install dataset-fashion-mnist, or put the IDX files in "
        f"{data_dir / 'FashionMNIST' / 'raw'}/ or {data_dir / 'fashion_mnist'}/"
    )


def test_mnist_has_no_debian_package_so_the_hint_is_the_data_directory(tmp_path):
    mnist = {d["type"]: d for d in catalog(tmp_path)["datasets"]}["mnist"]
    assert mnist["available"] is False and "apt-get" not in mnist["install"]
    assert str(tmp_path / "mnist") in mnist["install"]
    write_mnist(tmp_path / "mnist", gz=False)
    entries = {d["type"]: d for d in catalog(tmp_path)["datasets"]}
    assert (entries["mnist"]["available"], entries["mnist"]["install"]) == (True, None)
    assert all(entries[name]["available"] for name in ("digits", "synthetic", "upload"))


@needs_fashion_mnist
def test_the_catalog_says_the_system_copy_is_available(tmp_path):
    assert FASHION_MNIST_FOLDER.is_dir()
    fashion = {d["type"]: d for d in catalog(tmp_path)["datasets"]}["fashion_mnist"]
    assert (fashion["available"], fashion["install"]) == (True, None)
    assert "dataset-fashion-mnist" in fashion["description"]
