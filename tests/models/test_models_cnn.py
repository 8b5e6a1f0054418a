"""build_model (presets and layer lists) and inspect_model (meta-device shapes, params, FLOPs, errors)."""

import pickle
import resource

import pytest
import torch
from torch import nn

from models.cnn import ModelShapeError, build_model, inspect_model
from models.dropout import Dropout
from tests.factories import job_spec

DIGITS = {"name": "digits"}
LENET5_PARAMS = (
    (1 * 5 * 5 + 1) * 6  # conv1: 156
    + (6 * 5 * 5 + 1) * 16  # conv2: 2416
    + (16 * 5 * 5 + 1) * 120  # conv3: 48120
    + (120 + 1) * 84  # fc: 10164
    + (84 + 1) * 10  # output: 850
)
# Multiply-adds per sample; FLOPs count each as two.
LENET5_MACS = 6 * 28 * 28 * 25 + 16 * 10 * 10 * 150 + 120 * 400 + 120 * 84 + 84 * 10

LAYERS = [
    {"type": "conv", "out_channels": 8, "kernel_size": 3, "padding": 1},
    {"type": "batchnorm"},
    {"type": "activation", "fn": "relu"},
    {"type": "maxpool", "kernel_size": 2},
    {"type": "dropout", "p": 0.2, "mode": "vanilla"},
    {"type": "flatten"},
    {"type": "linear", "out_features": 32},
    {"type": "batchnorm"},
    {"type": "activation", "fn": "tanh"},
    {"type": "linear", "out_features": 10},
]
EXPECTED_TYPES = [
    nn.Conv2d,
    nn.BatchNorm2d,
    nn.ReLU,
    nn.MaxPool2d,
    Dropout,
    nn.Flatten,
    nn.Linear,
    nn.BatchNorm1d,
    nn.Tanh,
    nn.Linear,
]


# ---------------------------------------------------------------- build_model


def test_lenet5_forward_shape_and_classic_layout():
    model = build_model({"arch": "lenet5"}, (1, 32, 32), 10)
    assert model(torch.randn(2, 1, 32, 32)).shape == (2, 10)
    assert sum(p.numel() for p in model.parameters()) == LENET5_PARAMS == 61_706
    assert sum(isinstance(m, nn.Tanh) for m in model) == 4
    assert sum(isinstance(m, nn.AvgPool2d) for m in model) == 2


def test_layer_list_maps_one_to_one():
    model = build_model({"layers": LAYERS}, (1, 8, 8), 10)
    assert [type(m) for m in model] == EXPECTED_TYPES
    assert model[0].in_channels == 1 and model[6].in_features == 8 * 4 * 4
    assert model[4].mode == "vanilla" and model[4].p == 0.2
    assert model(torch.randn(3, 1, 8, 8)).shape == (3, 10)


def test_activation_none_makes_lenet5_affine():
    torch.manual_seed(0)
    model = build_model({"arch": "lenet5", "activation": "none"}, (1, 32, 32), 10).double().eval()
    x, y = torch.randn(2, 1, 1, 32, 32, dtype=torch.float64)
    a = 0.3
    with torch.no_grad():
        assert torch.allclose(model(a * x + (1 - a) * y), a * model(x) + (1 - a) * model(y), atol=1e-12)
        tanh = build_model({"arch": "lenet5"}, (1, 32, 32), 10).double().eval()
        assert not torch.allclose(tanh(a * x + (1 - a) * y), a * tanh(x) + (1 - a) * tanh(y), atol=1e-6)


@pytest.mark.parametrize(
    "fn, module", [("relu", nn.ReLU), ("sigmoid", nn.Sigmoid), ("leaky_relu", nn.LeakyReLU)]
)
def test_activation_overrides_lenet5_nonlinearity(fn, module):
    model = build_model({"arch": "lenet5", "activation": fn}, (1, 32, 32), 10)
    assert sum(isinstance(m, module) for m in model) == 4 and not any(isinstance(m, nn.Tanh) for m in model)


def test_alexnet_small_variant_builds_and_forwards():
    model = build_model({"arch": "alexnet"}, (3, 32, 32), 10)
    assert sum(isinstance(m, nn.Conv2d) for m in model) == 5
    assert sum(isinstance(m, nn.Linear) for m in model) == 3
    assert [m.p for m in model if isinstance(m, Dropout)] == [0.5, 0.5]
    assert model(torch.randn(2, 3, 32, 32)).shape == (2, 10)


def test_alexnet_imagenet_variant_builds_and_forwards():
    model = build_model({"arch": "alexnet"}, (3, 224, 224), 10, {"dropout": 0.3, "dropout_mode": "vanilla"})
    convs = [m for m in model if isinstance(m, nn.Conv2d)]
    assert [c.out_channels for c in convs] == [96, 256, 384, 384, 256]
    assert (convs[0].kernel_size, convs[0].stride) == ((11, 11), (4, 4))
    assert [m.out_features for m in model if isinstance(m, nn.Linear)] == [4096, 4096, 10]
    assert [(m.p, m.mode) for m in model if isinstance(m, Dropout)] == [(0.3, "vanilla")] * 2
    with torch.no_grad():
        assert model.eval()(torch.randn(1, 3, 224, 224)).shape == (1, 10)


def test_lenet5_dropout_and_batchnorm_options():
    model = build_model({"arch": "lenet5", "batchnorm": True}, (1, 32, 32), 10, {"dropout": 0.4})
    types = [type(m) for m in model]
    for i, t in enumerate(types):
        if t is nn.Conv2d:
            assert types[i + 1] is nn.BatchNorm2d
    assert [m.p for m in model if isinstance(m, Dropout)] == [0.4, 0.4]
    assert types.index(Dropout) == types.index(nn.Linear) - 1  # dropout sits before each fc layer


@pytest.mark.parametrize("init", ["xavier", "kaiming"])
def test_init_schemes_zero_the_biases(init):
    model = build_model({"arch": "lenet5", "init": init}, (1, 32, 32), 10)
    for m in model:
        if isinstance(m, (nn.Conv2d, nn.Linear)):
            assert torch.count_nonzero(m.bias) == 0 and m.weight.std() > 0


def test_build_is_deterministic_under_a_seed():
    torch.manual_seed(3)
    a = build_model({"arch": "lenet5"}, (1, 32, 32), 10)
    torch.manual_seed(3)
    b = build_model({"arch": "lenet5"}, (1, 32, 32), 10)
    assert all(torch.equal(p, q) for p, q in zip(a.parameters(), b.parameters(), strict=True))


def test_preset_too_small_for_its_input_points_at_the_arch():
    with pytest.raises(ModelShapeError) as err:
        build_model({"arch": "lenet5"}, (1, 8, 8), 10)
    assert err.value.loc == ("model", "arch")


# ---------------------------------------------------------------- inspect_model


def test_inspect_lenet5_counts_params_and_flops():
    summary = inspect_model(job_spec(model={"arch": "lenet5"}))
    assert summary.params == 61_706
    assert summary.flops_per_sample == 2 * LENET5_MACS
    assert summary.input_shape == (1, 32, 32) and summary.output_shape == (10,) and summary.num_classes == 10


def test_pool_below_one_pixel_points_at_that_layer():
    layers = [
        {"type": "conv", "out_channels": 16},
        {"type": "maxpool"},
        {"type": "maxpool"},
        {"type": "maxpool"},
        {"type": "flatten"},
        {"type": "linear", "out_features": 10},
    ]
    with pytest.raises(ModelShapeError) as err:
        inspect_model(job_spec(model={"layers": layers}))
    assert err.value.loc == ("model", "layers", 3)
    assert "maxpool 2x2 on a 16x1x1 feature map" in err.value.message
    assert isinstance(err.value, ValueError)


def test_wrong_class_count_points_at_last_layer():
    layers = [
        {"type": "flatten"},
        {"type": "linear", "out_features": 32},
        {"type": "activation", "fn": "relu"},
        {"type": "linear", "out_features": 7},
    ]
    with pytest.raises(ModelShapeError) as err:
        inspect_model(job_spec(model={"layers": layers}))
    assert err.value.loc == ("model", "layers", 3)
    assert err.value.message == "the last layer outputs 7 features but the dataset has 10 classes"


def test_feature_map_output_points_at_last_layer():
    with pytest.raises(ModelShapeError) as err:
        inspect_model(job_spec(model={"layers": [{"type": "conv", "out_channels": 10, "kernel_size": 8}]}))
    assert err.value.loc == ("model", "layers", 0) and "flatten" in err.value.message


def test_linear_without_flatten_is_a_clear_error():
    layers = [{"type": "conv", "out_channels": 16, "kernel_size": 3}, {"type": "linear", "out_features": 10}]
    with pytest.raises(ModelShapeError) as err:
        inspect_model(job_spec(model={"layers": layers}))
    assert err.value.loc == ("model", "layers", 1)
    assert err.value.message == "linear expects a flat input but gets 16x6x6; add a flatten layer before it"


def test_conv_after_flatten_is_a_clear_error():
    layers = [{"type": "flatten"}, {"type": "conv", "out_channels": 4}]
    with pytest.raises(ModelShapeError) as err:
        inspect_model(job_spec(model={"layers": layers}))
    assert err.value.loc == ("model", "layers", 1) and "64 features" in err.value.message


def test_preset_with_too_small_image_size_points_at_image_size():
    with pytest.raises(ModelShapeError) as err:
        inspect_model(job_spec(model={"arch": "lenet5"}, dataset={"name": "digits", "image_size": 8}))
    assert err.value.loc == ("dataset", "image_size") and "lenet5" in err.value.message


def test_inspect_alexnet_picks_its_layout_from_the_data_size():
    small = inspect_model(job_spec(model={"arch": "alexnet"}))
    large = inspect_model(
        job_spec(model={"arch": "alexnet"}, dataset={"name": "synthetic", "channels": 3, "size": 100})
    )
    assert small.input_shape == (1, 32, 32) and large.input_shape == (3, 224, 224)
    assert large.params > 50_000_000 > small.params


def test_inspect_allocates_no_parameter_memory():
    # A 16384 -> 65536 linear layer has 1.07e9 parameters (4 GiB in float32).
    layers = [
        {"type": "flatten"},
        {"type": "linear", "out_features": 65536},
        {"type": "linear", "out_features": 10},
    ]
    before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    summary = inspect_model(job_spec(model={"layers": layers}, dataset={"name": "synthetic", "size": 128}))
    grown_kib = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - before
    assert summary.params == 16384 * 65536 + 65536 + 65536 * 10 + 10
    assert grown_kib < 256 * 1024


def test_model_shape_error_survives_pickling():
    err = pickle.loads(pickle.dumps(ModelShapeError(("model", "layers", 2), "too small")))
    assert (err.loc, err.message, str(err)) == (("model", "layers", 2), "too small", "too small")
