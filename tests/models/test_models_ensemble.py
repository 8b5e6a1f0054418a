"""models.ensemble: which members combine, weight averaging, both execution paths, evaluation on digits."""

import json
import math

import pytest
import torch
import torch.nn.functional as F
from torch import nn
from torch.utils.data import DataLoader, TensorDataset

from models.cnn import build_model
from models.datasets import load_splits, raw_arrays, split_indices
from models.ensemble import (
    METHODS,
    EnsemblePredictor,
    Member,
    average_model,
    average_weights,
    check_members,
    evaluate_ensemble,
)
from models.spec import SpecError
from tests.factories import job_spec, training
from worker.bookkeeping import evaluate

DIGITS = {"name": "digits"}
LENET5 = {"arch": "lenet5"}
# Both dropout modes: in eval mode inverted dropout is the identity, vanilla dropout scales by p_keep.
DROPOUT = {
    "layers": [
        {"type": "conv", "out_channels": 8, "kernel_size": 3, "padding": 1},
        {"type": "activation", "fn": "relu"},
        {"type": "maxpool", "kernel_size": 2},
        {"type": "dropout", "p": 0.3, "mode": "vanilla"},
        {"type": "flatten"},
        {"type": "linear", "out_features": 32},
        {"type": "dropout", "p": 0.5, "mode": "inverted"},
        {"type": "activation", "fn": "tanh"},
        {"type": "linear", "out_features": 10},
    ]
}
BATCHNORM = {
    "layers": [
        {"type": "conv", "out_channels": 8, "kernel_size": 3, "padding": 1},
        {"type": "batchnorm"},
        {"type": "activation", "fn": "relu"},
        {"type": "maxpool", "kernel_size": 2},
        {"type": "flatten"},
        {"type": "linear", "out_features": 32},
        {"type": "batchnorm"},
        {"type": "activation", "fn": "tanh"},
        {"type": "linear", "out_features": 10},
    ]
}
FLAT_OUT = [{"type": "flatten"}, {"type": "linear", "out_features": 10}]
# Networks that start on the shared input in each other way: batch norm of the image (each member
# normalises it its own way) and a repeated flatten; a linear layer on the flat image; batch norm of it.
NORMALISED_INPUT = {
    "layers": [{"type": "batchnorm"}, {"type": "avgpool", "kernel_size": 2}, {"type": "flatten"}, *FLAT_OUT]
}
LINEAR_FIRST = {
    "layers": [
        {"type": "flatten"},
        {"type": "linear", "out_features": 16},
        {"type": "activation", "fn": "leaky_relu"},
        {"type": "linear", "out_features": 10},
    ]
}
FLAT_BATCHNORM = {
    "layers": [{"type": "flatten"}, {"type": "batchnorm"}, {"type": "linear", "out_features": 10}]
}
NETWORKS = {
    "lenet5": (LENET5, (1, 32, 32)),
    "dropout": (DROPOUT, (1, 8, 8)),
    "batchnorm": (BATCHNORM, (1, 8, 8)),
    "normalised_input": (NORMALISED_INPUT, (2, 8, 8)),
    "linear_first": (LINEAR_FIRST, (1, 8, 8)),
    "flat_batchnorm": (FLAT_BATCHNORM, (1, 8, 8)),
}


def member_meta(model, input_shape, seed=0, num_classes=10, mean=(8.0,), std=(6.0,), member=0) -> dict:
    """What the worker stores next to a model's weights (worker.run_job.rebuild_info)."""
    spec = job_spec(dataset=DIGITS, model=model, training=training(seed=seed))
    return {
        "spec": spec.model_dump(mode="json"),
        "input_shape": list(input_shape),
        "num_classes": num_classes,
        "mean": list(mean),
        "std": list(std),
        "job_id": f"job-{seed}",
        "member": member,
        "seed": seed,
    }


def random_member(model, input_shape, seed, **meta) -> Member:
    """Random weights from `seed`; BatchNorm gets random statistics and affine parameters so they matter."""
    torch.manual_seed(seed)
    net = build_model(model, input_shape, 10)
    with torch.no_grad():
        for module in net.modules():
            if isinstance(module, (nn.BatchNorm1d, nn.BatchNorm2d)):
                module.running_mean.normal_()
                module.running_var.uniform_(0.5, 2.0)
                module.weight.normal_()
                module.bias.normal_()
    return Member(net.state_dict(), member_meta(model, input_shape, seed, **meta))


def reference_probs(members: list[Member], method: str, x: torch.Tensor, train_batches=None) -> torch.Tensor:
    """The textbook definitions, one plain module per member."""
    with torch.no_grad():
        if method == "weights":
            return average_model(members, train_batches)(x).softmax(-1)
        logits = torch.stack([member.build()(x) for member in members])
    if method == "mean_probs":
        return logits.softmax(-1).mean(0)
    return logits.mean(0).softmax(-1)


# ---------------------------------------------------------------- both execution paths


@pytest.mark.parametrize("method", METHODS)
@pytest.mark.parametrize("network", NETWORKS)
def test_vectorized_and_sequential_paths_agree_with_the_definition(network, method):
    model, shape = NETWORKS[network]
    members = [random_member(model, shape, seed) for seed in range(3)]
    train_batches = [torch.randn(64, *shape)]
    predictor = EnsemblePredictor(members, method, train_batches=train_batches)
    for batch in (1, 33):
        x = torch.randn(batch, *shape)
        vectorized = predictor.predict_proba(x, "vectorized")
        sequential = predictor.predict_proba(x, "sequential")
        assert vectorized.shape == (batch, 10)
        torch.testing.assert_close(vectorized, sequential, atol=1e-5, rtol=0)
        expected = reference_probs(members, method, x, train_batches)
        torch.testing.assert_close(sequential, expected, atol=1e-5, rtol=0)
        torch.testing.assert_close(vectorized.sum(1), torch.ones(batch))


def test_members_of_different_architectures_average_their_predictions():
    members = [
        random_member(DROPOUT, (1, 8, 8), 0),
        random_member(BATCHNORM, (1, 8, 8), 1),
        random_member(DROPOUT, (1, 8, 8), 2),
    ]
    predictor = EnsemblePredictor(members, "mean_probs")
    x = torch.randn(5, 1, 8, 8)
    vectorized = predictor.predict_proba(x, "vectorized")
    torch.testing.assert_close(vectorized, predictor.predict_proba(x, "sequential"), atol=1e-5, rtol=0)
    torch.testing.assert_close(vectorized, reference_probs(members, "mean_probs", x), atol=1e-5, rtol=0)


def test_the_path_follows_the_work_per_call():
    lenet5 = EnsemblePredictor([random_member(LENET5, (1, 32, 32), seed) for seed in range(3)])
    assert lenet5.stack.vectorizes(1) and lenet5.stack.vectorizes(32) and not lenet5.stack.vectorizes(64)
    small = EnsemblePredictor([random_member(DROPOUT, (1, 8, 8), seed) for seed in range(3)])
    assert small.stack.vectorizes(256)  # ~20 kFLOP a sample: overhead dominates any batch
    conv64 = {"type": "conv", "out_channels": 64, "kernel_size": 3, "padding": 1}
    heavy = {"layers": [conv64, conv64, *FLAT_OUT]}
    big = EnsemblePredictor([random_member(heavy, (1, 32, 32), seed) for seed in range(2)])
    assert not big.stack.vectorizes(1)  # 75 MFLOP a sample: compute dominates even one
    alone = EnsemblePredictor([random_member(DROPOUT, (1, 8, 8), 0)])
    assert not alone.stack.vectorizes(1)  # nothing to group


def test_members_need_not_come_from_distinct_jobs():
    member = random_member(DROPOUT, (1, 8, 8), 0)
    x = torch.randn(3, 1, 8, 8)
    for method in METHODS:
        twice = EnsemblePredictor([member, member], method).predict_proba(x)
        torch.testing.assert_close(twice, EnsemblePredictor([member], method).predict_proba(x))


def test_memory_estimate_counts_weights_shared_by_both_paths_once():
    one_model = 61_706 * 4  # lenet5's float32 parameters
    members = [random_member(LENET5, (1, 32, 32), seed) for seed in range(3)]
    assert 3 * one_model <= EnsemblePredictor(members, "mean_probs").nbytes < 3.1 * one_model
    assert one_model <= EnsemblePredictor(members, "weights").nbytes < 1.1 * one_model


# ---------------------------------------------------------------- refusals


@pytest.mark.parametrize(
    ("meta", "message"),
    [
        ({"input_shape": (1, 16, 16)}, "input_shape: [1, 16, 16] vs [1, 8, 8]"),
        ({"num_classes": 26}, "num_classes: 26 vs 10"),
        ({"mean": (7.5,)}, "preprocessing mean: [7.5] vs [8]"),
        ({"std": (5.0,)}, "preprocessing std: [5] vs [6]"),
    ],
    ids=["input_shape", "num_classes", "mean", "std"],
)
@pytest.mark.parametrize("method", METHODS)
def test_members_fed_differently_are_refused_naming_the_member(meta, message, method):
    members = [random_member(DROPOUT, (1, 8, 8), seed) for seed in range(2)]
    fields = dict(meta)
    odd = random_member(DROPOUT, fields.pop("input_shape", (1, 8, 8)), 2, **fields)
    with pytest.raises(SpecError) as refused:
        EnsemblePredictor([*members, odd], method)
    assert refused.value.loc == ("members", 2)
    assert refused.value.message == f"member 2 differs from member 0 in {message}"


@pytest.mark.parametrize(
    ("other", "difference"),
    [
        ({"arch": "lenet5", "activation": "relu"}, 'layer 1: {"type": "activation", "fn": "relu"} vs'),
        ({"arch": "lenet5", "batchnorm": True}, "architecture: 15 layers vs 12"),
    ],
    ids=["activation", "batchnorm"],
)
def test_weights_of_different_architectures_are_refused(other, difference):
    members = [random_member(LENET5, (1, 32, 32), 0), random_member(LENET5, (1, 32, 32), 1)]
    odd = random_member(other, (1, 32, 32), 2)
    with pytest.raises(SpecError) as refused:
        EnsemblePredictor([*members, odd], "weights")
    assert refused.value.loc == ("members", 2)
    assert refused.value.message.startswith("member 2 differs from member 0 in ")
    assert difference in refused.value.message
    EnsemblePredictor([*members, odd], "mean_probs")  # averaging predictions needs no common architecture


def test_lenet5_and_its_layer_list_average_as_one_architecture():
    preset = random_member(LENET5, (1, 32, 32), 0)
    written_out = {"layers": [layer.model_dump() for layer in preset.layers()]}
    check_members([preset, random_member(written_out, (1, 32, 32), 1)], "weights")


def test_unknown_method_and_empty_ensembles_are_refused():
    with pytest.raises(SpecError) as refused:
        check_members([random_member(DROPOUT, (1, 8, 8), 0)], "median")
    assert refused.value.loc == ("method",)
    with pytest.raises(SpecError) as refused:
        check_members([], "mean_probs")
    assert refused.value.loc == ("members",)


# ---------------------------------------------------------------- the weights ensemble


def test_weights_ensemble_is_the_parameter_mean():
    members = [random_member(LENET5, (1, 32, 32), seed) for seed in range(3)]
    by_hand = {
        key: (members[0].state_dict[key] + members[1].state_dict[key] + members[2].state_dict[key]) / 3
        for key in members[0].state_dict
    }
    averaged = average_weights(members)
    assert averaged.keys() == by_hand.keys()
    for key in by_hand:
        torch.testing.assert_close(averaged[key], by_hand[key])
    net = build_model(LENET5, (1, 32, 32), 10).eval()
    net.load_state_dict(by_hand)
    x = torch.randn(4, 1, 32, 32)
    with torch.no_grad():
        expected = net(x).softmax(-1)
    for path in ("vectorized", "sequential"):
        predicted = EnsemblePredictor(members, "weights").predict_proba(x, path)
        torch.testing.assert_close(predicted, expected, atol=1e-6, rtol=0)


def test_weights_ensemble_recomputes_batchnorm_statistics_on_the_training_inputs():
    members = [random_member(BATCHNORM, (1, 8, 8), seed) for seed in range(3)]
    x = torch.randn(200, 1, 8, 8) * 2 + 1
    loader = DataLoader(TensorDataset(x, torch.zeros(200, dtype=torch.long)), batch_size=200)
    averaged = average_model(members, loader)
    weights = average_weights(members)
    first_bn, second_bn = averaged[1], averaged[6]

    # By hand: the averaged network in training mode on one batch of all the training inputs.
    h = F.conv2d(x, weights["0.weight"], weights["0.bias"], padding=1)
    mean, var = h.mean((0, 2, 3)), h.var((0, 2, 3))
    torch.testing.assert_close(first_bn.running_mean, mean, atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(first_bn.running_var, var, atol=1e-5, rtol=1e-5)
    channel = (1, -1, 1, 1)
    h = (h - mean.view(channel)) / (h.var((0, 2, 3), unbiased=False).view(channel) + 1e-5).sqrt()
    h = h * weights["1.weight"].view(channel) + weights["1.bias"].view(channel)
    h = F.linear(F.max_pool2d(h.relu(), 2).flatten(1), weights["5.weight"], weights["5.bias"])
    torch.testing.assert_close(second_bn.running_mean, h.mean(0), atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(second_bn.running_var, h.var(0), atol=1e-5, rtol=1e-5)

    # Not the mean of the members' statistics, which describe other networks' activations.
    assert not torch.allclose(first_bn.running_mean, weights["1.running_mean"], atol=1e-2)
    assert not averaged.training
    with pytest.raises(ValueError, match="train_batches"):
        average_model(members)


# ---------------------------------------------------------------- evaluation on digits

TINY = {
    "layers": [
        {"type": "conv", "out_channels": 6, "kernel_size": 3, "padding": 1},
        {"type": "activation", "fn": "relu"},
        {"type": "maxpool", "kernel_size": 2},
        {"type": "flatten"},
        {"type": "linear", "out_features": 10},
    ]
}


def train_digits_member(splits, seed: int, epochs: int) -> list[Member]:
    """A few epochs of plain SGD from `seed`; answers the weights after each of the last two epochs."""
    torch.manual_seed(seed)
    net = build_model(TINY, splits.input_shape, splits.num_classes)
    optimizer = torch.optim.SGD(net.parameters(), lr=0.05, momentum=0.9)
    x, y = splits.train
    meta = member_meta(TINY, splits.input_shape, seed, mean=splits.mean, std=splits.std)
    snapshots = []
    for epoch in range(epochs):
        net.train()
        order = torch.randperm(len(x), generator=torch.Generator().manual_seed(seed * 100 + epoch))
        for batch in order.split(64):
            optimizer.zero_grad()
            F.cross_entropy(net(x[batch]), y[batch]).backward()
            optimizer.step()
        if epoch >= epochs - 2:
            state = {key: value.detach().clone() for key, value in net.state_dict().items()}
            snapshots.append(Member(state, meta | {"epoch": epoch + 1}))
    return snapshots


@pytest.fixture(scope="module")
def digits():
    """Five members trained from seeds 0..4, and the last two epochs' snapshots of the first."""
    splits = load_splits(DIGITS, TINY)
    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # steps this small only pay threads' synchronisation, a lot on a busy CPU
    try:
        runs = [train_digits_member(splits, seed, epochs=3) for seed in range(5)]
    finally:
        torch.set_num_threads(threads)
    return splits, [run[-1] for run in runs], runs[0]


def test_evaluation_agrees_with_single_model_evaluation(digits):
    splits, members, _ = digits
    x, y = splits.test
    report = evaluate_ensemble(members, "mean_probs", x, y, batch_size=100)
    json.dumps(report)
    singles = [evaluate(member.build(), x, y) for member in members]
    assert report["member_accuracies"] == pytest.approx([acc for _, acc in singles])
    assert report["member_nll"] == pytest.approx([loss for loss, _ in singles], rel=1e-5)
    assert report["mean_member_accuracy"] == pytest.approx(sum(acc for _, acc in singles) / len(singles))
    probs = EnsemblePredictor(members, "mean_probs").predict_proba(x)
    assert report["ensemble_accuracy"] == pytest.approx((probs.argmax(1) == y).float().mean().item())
    true_class_probs = probs[torch.arange(len(y)), y]
    assert report["ensemble_nll"] == pytest.approx(-true_class_probs.log().mean().item(), rel=1e-5)
    assert report["gain"] == pytest.approx(report["ensemble_accuracy"] - report["mean_member_accuracy"])
    assert report["test_samples"] == len(y) and report["method"] == "mean_probs"
    # The lecture's claim, on genuinely trained members: the ensemble beats its average member.
    assert report["ensemble_accuracy"] >= report["mean_member_accuracy"]
    assert report["ensemble_nll"] < report["mean_member_nll"]


def test_mean_logits_evaluation_follows_the_averaged_logits(digits):
    splits, members, _ = digits
    x, y = splits.test
    report = evaluate_ensemble(members, "mean_logits", x, y)
    with torch.no_grad():
        logits = torch.stack([member.build()(x) for member in members]).mean(0)
    assert report["ensemble_accuracy"] == pytest.approx((logits.argmax(1) == y).float().mean().item())
    assert report["ensemble_nll"] == pytest.approx(F.cross_entropy(logits, y).item(), rel=1e-5)


def test_a_member_repeated_weighs_twice(digits):
    # Greedy selection with replacement answers a run as often as it chose it: the mean counts each time.
    splits, members, _ = digits
    x, y = splits.test
    a, b = members[0], members[1]
    with torch.no_grad():
        pa, pb = (member.build()(x).softmax(1) for member in (a, b))
    weighted = (2 * pa + pb) / 3
    check_members([a, a, b], "mean_probs")
    for path in ("vectorized", "sequential"):
        probs = EnsemblePredictor([a, a, b], "mean_probs").predict_proba(x, path=path)
        torch.testing.assert_close(probs, weighted, rtol=1e-5, atol=1e-6)
    report = evaluate_ensemble([a, a, b], "mean_probs", x, y)
    assert report["ensemble_accuracy"] == pytest.approx((weighted.argmax(1) == y).sum().item() / len(y))
    assert (
        len(report["member_accuracies"]) == 3
        and report["member_accuracies"][0] == report["member_accuracies"][1]
    )


def test_snapshots_of_one_run_average_their_weights(digits):
    splits, _, snapshots = digits
    x, y = splits.test
    report = evaluate_ensemble(snapshots, "weights", x, y)
    loss, accuracy = evaluate(average_model(snapshots), x, y)
    assert report["ensemble_accuracy"] == pytest.approx(accuracy)
    assert report["ensemble_nll"] == pytest.approx(loss, rel=1e-5)
    assert report["member_accuracies"] == pytest.approx([evaluate(s.build(), x, y)[1] for s in snapshots])
    assert report["ensemble_accuracy"] > 0.8


def test_raw_pixels_are_preprocessed_as_in_training(digits):
    splits, members, _ = digits
    raw_x, _ = raw_arrays(DIGITS)
    _, _, test_index = split_indices(DIGITS)
    predictor = EnsemblePredictor(members)
    torch.testing.assert_close(predictor.preprocess(raw_x[test_index].tolist()), splits.test[0])
    lenet = EnsemblePredictor([random_member(LENET5, (1, 32, 32), 0, mean=splits.mean, std=splits.std)])
    assert lenet.preprocess(raw_x[:2].copy()).shape == (2, 1, 32, 32)  # resized as load_splits does
    with pytest.raises(ValueError, match="N×1×8×8"):
        predictor.predict_proba(torch.zeros(2, 1, 32, 32))
    probs = predictor.predict_proba(predictor.preprocess(raw_x[:1].copy()))
    assert math.isclose(probs.sum().item(), 1.0, rel_tol=1e-6)
