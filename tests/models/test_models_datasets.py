"""Dataset metadata, splits by split_seed, train-only normalisation, preprocessing, synthetic data."""

import numpy as np
import pytest
import torch

from models import datasets
from models.datasets import dataset_info, load_splits, preprocess, raw_arrays, split_indices

LENET5 = {"arch": "lenet5"}
CUSTOM = {"layers": [{"type": "flatten"}, {"type": "linear", "out_features": 10}]}
SYNTHETIC = {"name": "synthetic", "channels": 3, "size": 16, "classes": 5, "samples": 200, "seed": 4}


def sizes(splits):
    return [len(y) for _, y in (splits.train, splits.val, splits.test)]


def test_dataset_info_needs_no_data():
    datasets._digits_raw.cache_clear()
    info = dataset_info({"name": "digits"}, LENET5)
    assert (info.input_shape, info.num_classes, info.native_shape) == ((1, 32, 32), 10, (1, 8, 8))
    assert datasets._digits_raw.cache_info().currsize == 0


@pytest.mark.parametrize(
    "dataset, model, shape",
    [
        ({"name": "digits"}, CUSTOM, (1, 8, 8)),
        ({"name": "digits"}, None, (1, 8, 8)),
        ({"name": "digits", "image_size": 20}, LENET5, (1, 20, 20)),
        ({"name": "digits"}, {"arch": "alexnet"}, (1, 32, 32)),
        ({"name": "synthetic", "size": 100, "channels": 3}, {"arch": "alexnet"}, (3, 224, 224)),
        ({"name": "synthetic", "size": 64}, {"arch": "alexnet"}, (1, 32, 32)),
    ],
)
def test_input_size_rule(dataset, model, shape):
    assert dataset_info(dataset, model).input_shape == shape


def test_digits_splits_add_up_and_are_resized_for_lenet5():
    splits = load_splits({"name": "digits"}, LENET5)
    assert sum(sizes(splits)) == 1797
    assert splits.val[1].numel() == splits.test[1].numel() == int(1797 * 0.15)
    for x, y in (splits.train, splits.val, splits.test):
        assert x.shape[1:] == (1, 32, 32) and x.dtype == torch.float32 and y.dtype == torch.int64
    assert splits.input_shape == (1, 32, 32) and splits.num_classes == 10


def test_train_split_is_normalised_with_its_own_statistics():
    splits = load_splits({"name": "digits"}, LENET5)
    x = splits.train[0]
    assert x.mean().item() == pytest.approx(0.0, abs=1e-5)
    assert x.std(unbiased=False).item() == pytest.approx(1.0, abs=1e-5)
    assert 0 < splits.mean[0] < 16 and splits.std[0] > 0


def test_split_depends_on_split_seed_only():
    torch.manual_seed(1)
    np.random.seed(1)
    a = load_splits({"name": "digits", "split_seed": 5}, CUSTOM)
    torch.manual_seed(2)
    np.random.seed(2)
    b = load_splits({"name": "digits", "split_seed": 5}, CUSTOM)
    c = load_splits({"name": "digits", "split_seed": 6}, CUSTOM)
    assert torch.equal(a.test[0], b.test[0]) and torch.equal(a.train[1], b.train[1])
    assert not torch.equal(a.test[0], c.test[0])


def test_split_indices_partition_the_dataset():
    train, val, test = split_indices({"name": "digits", "split_seed": 2})
    assert sorted(np.concatenate([train, val, test]).tolist()) == list(range(1797))


def test_split_is_stratified():
    splits = load_splits({"name": "digits"}, CUSTOM)
    counts = torch.bincount(splits.test[1], minlength=10)
    assert counts.min() >= 25 and counts.max() <= 29  # 269 test images over 10 near-equal classes


def test_train_fraction_shrinks_only_the_training_split():
    full = load_splits({"name": "digits"}, CUSTOM)
    half = load_splits({"name": "digits", "train_fraction": 0.5}, CUSTOM)
    assert len(half.train[1]) == len(full.train[1]) // 2
    assert torch.equal(half.test[1], full.test[1]) and torch.equal(half.val[1], full.val[1])
    again = load_splits({"name": "digits", "train_fraction": 0.5}, CUSTOM)
    assert torch.equal(half.train[0], again.train[0])


def test_preprocess_raw_inputs_exactly_as_training():
    splits = load_splits({"name": "digits"}, LENET5)
    x_raw, _ = raw_arrays({"name": "digits"})
    _, _, test_idx = split_indices({"name": "digits"})
    raw_test = x_raw[test_idx].tolist()  # what a client would send: nested lists at native size
    assert torch.allclose(
        preprocess(raw_test, splits.mean, splits.std, splits.input_shape), splits.test[0], atol=1e-6
    )
    with pytest.raises(ValueError):
        preprocess(torch.zeros(2, 3, 8, 8), splits.mean, splits.std, splits.input_shape)


def test_synthetic_shapes_and_classes():
    splits = load_splits(SYNTHETIC, CUSTOM)
    assert sum(sizes(splits)) == 200
    assert splits.train[0].shape[1:] == (3, 16, 16) and len(splits.mean) == 3
    assert set(splits.train[1].tolist()) == set(range(5))


def test_synthetic_is_deterministic_from_its_seed():
    a = load_splits(SYNTHETIC, CUSTOM)
    datasets._synthetic_raw.cache_clear()
    b = load_splits(SYNTHETIC, CUSTOM)
    c = load_splits({**SYNTHETIC, "seed": 5}, CUSTOM)
    assert torch.equal(a.train[0], b.train[0]) and torch.equal(a.test[1], b.test[1])
    assert not torch.equal(a.train[0], c.train[0])


def test_raw_arrays_are_cached_and_protected():
    datasets._digits_raw.cache_clear()
    load_splits({"name": "digits"}, CUSTOM)
    load_splits({"name": "digits", "split_seed": 3}, LENET5)
    assert datasets._digits_raw.cache_info().hits >= 1
    x, y = raw_arrays({"name": "digits"})
    assert x.shape == (1797, 1, 8, 8) and x.max() == 16 and y.shape == (1797,)
    with pytest.raises(ValueError):
        x[0, 0, 0, 0] = 1.0


def test_tiny_synthetic_falls_back_to_a_random_split():
    splits = load_splits({"name": "synthetic", "classes": 50, "samples": 60, "size": 8}, None)
    assert sum(sizes(splits)) == 60 and min(sizes(splits)) >= 1


def held_bytes(dataset, model=None, data_dir=None) -> int:
    """What load_splits leaves in memory: the cached raw images and the three splits' tensors."""
    x_raw, _ = raw_arrays(dataset, data_dir)
    splits = load_splits(dataset, model, data_dir)
    return x_raw.nbytes + sum(x.nbytes for x, _ in (splits.train_raw, splits.val_raw, splits.test_raw))


@pytest.mark.parametrize(
    "dataset, model",
    [
        ({"name": "digits"}, LENET5),  # resized 8 -> 32 a batch at a time: not held at 32 px
        ({"name": "digits"}, CUSTOM),  # at native size
        (SYNTHETIC, {"arch": "alexnet"}),  # 3 channels, 16 -> 32
    ],
)
def test_data_bytes_is_what_the_splits_hold_computed_without_loading(dataset, model):
    datasets._synthetic_raw.cache_clear()
    expected = datasets.data_bytes(dataset, model)
    assert datasets._synthetic_raw.cache_info().currsize == 0  # nothing loaded to know it
    assert expected == held_bytes(dataset, model)


def test_data_bytes_of_an_upload_from_its_header(tmp_path):
    from models.uploads import check_upload, save_checked, stored_path
    from tests.models.test_models_uploads import LIMIT, npz

    x = np.random.default_rng(0).integers(0, 256, (50, 3, 10, 10), dtype=np.uint8)
    y = np.arange(50) % 5
    save_checked(check_upload(npz(x=x, y=y), LIMIT), stored_path(tmp_path, "ef" * 16))
    spec = {"name": "upload", "id": "ef" * 16, "image_size": 12}
    assert datasets.data_bytes(spec, data_dir=tmp_path) == 2 * 50 * 3 * 10 * 10  # the cache and the splits
    assert datasets.data_bytes(spec, data_dir=tmp_path) == held_bytes(spec, data_dir=tmp_path)


def test_data_bytes_scales_with_samples_not_with_the_input_size_without_generating_them():
    huge = {"name": "synthetic", "channels": 3, "size": 224, "samples": 1_000_000}
    # uint8 at 224 px, cached and split: 301 GB, known without a pixel generated.
    assert datasets.data_bytes(huge, {"arch": "alexnet"}) == 1_000_000 * 2 * 3 * 224 * 224
    # CIFAR-10 for AlexNet at 224 px: held at 32 px (368 MB), not at 224 (36 GB as float32).
    assert datasets.data_bytes({"name": "cifar10", "image_size": 224}) == 60_000 * 2 * 3 * 32 * 32


@pytest.mark.parametrize("name", ["mnist", "fashion_mnist", "cifar10"])
def test_the_published_sample_counts_match_the_files_where_this_machine_has_them(name):
    if not datasets.availability(name).available:
        pytest.skip(f"{name} is not installed here")
    x, _ = raw_arrays({"name": name})
    assert datasets.DATASETS[name].raw_size(None, None) == (len(x), x.itemsize)
