"""The batch transforms of training.augment on small tensors: flip mask, pad-and-crop shift, seeded draws."""

from __future__ import annotations

import torch

from models.augment import (
    augment_batch,
    batch_generator,
    flip,
    flip_mask,
    mean_over_flip,
    translate,
    translation_offsets,
)
from models.spec import AugmentSpec


def numbered(n: int = 4, channels: int = 2, size: int = 5) -> torch.Tensor:
    """Every pixel a different number, so any move of content shows."""
    return torch.arange(n * channels * size * size, dtype=torch.float32).view(n, channels, size, size)


def test_the_flip_mirrors_exactly_the_chosen_samples():
    x = numbered()
    mask = torch.tensor([True, False, False, True])
    flipped = flip(x, mask)
    for i, chosen in enumerate(mask):
        assert torch.equal(flipped[i], x[i].flip(-1) if chosen else x[i])


def test_translation_shifts_each_sample_by_its_offsets_padding_with_the_edge():
    x = numbered()
    offsets = torch.tensor([[0, 0], [1, 0], [0, -2], [-1, 2]])  # (down, right)
    shifted = translate(x, offsets)
    assert shifted.shape == x.shape
    for i, (dy, dx) in enumerate(offsets.tolist()):
        for r in range(5):
            for c in range(5):
                # Content moves by (dy, dx); what comes in from outside is the nearest edge pixel.
                source = (min(max(r - dy, 0), 4), min(max(c - dx, 0), 4))
                assert torch.equal(shifted[i, :, r, c], x[i, :, source[0], source[1]]), (i, r, c)
    assert torch.equal(shifted[0], x[0])


def test_the_shift_is_pad_and_crop_not_a_roll():
    x = numbered(1, 1, 5)
    shifted = translate(x, torch.tensor([[0, 2]]))
    assert torch.equal(shifted[0, 0, :, 2:], x[0, 0, :, :3])
    assert torch.equal(shifted[0, 0, :, :2], x[0, 0, :, :1].expand(5, 2))  # the left edge, not the right


def test_offsets_stay_within_the_bound_and_reach_it():
    offsets = translation_offsets(2000, 2, batch_generator(0, 0, 0))
    assert offsets.min() == -2 and offsets.max() == 2


def test_the_same_seed_epoch_and_step_draw_the_same_and_another_step_draws_otherwise():
    spec = AugmentSpec(flip=True, translate=2)
    x = numbered(64, 1, 8)
    first = augment_batch(x, spec, batch_generator(3, 1, 5))
    assert torch.equal(first, augment_batch(x, spec, batch_generator(3, 1, 5)))
    for other in (batch_generator(3, 1, 6), batch_generator(3, 2, 5), batch_generator(4, 1, 5)):
        assert not torch.equal(first, augment_batch(x, spec, other))
    masks = {tuple(flip_mask(64, batch_generator(3, 1, step)).tolist()) for step in range(5)}
    assert len(masks) == 5


def test_an_augmentation_that_changes_nothing_leaves_the_batch_alone():
    x = numbered()
    assert torch.equal(augment_batch(x, AugmentSpec(), batch_generator(0, 0, 0)), x)


def test_flip_averaging_is_the_mean_over_each_image_and_its_mirror():
    x = numbered()

    def predict(images):  # depends on left-right order
        return images[..., 0].sum((1, 2)).view(-1, 1)

    expected = (predict(x) + predict(x.flip(-1))) / 2
    assert torch.equal(mean_over_flip(predict, x), expected)
