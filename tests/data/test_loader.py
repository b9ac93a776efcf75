import torch

from slimkit.data import Augmentation, BatchLoader, load_dataset, make_loaders
from slimkit.data.loader import augment_batch


def _splits():
    return load_dataset("synthetic")


def test_each_epoch_visits_every_example_once():
    splits = _splits()
    loader = BatchLoader(splits.train, splits.info, 100, shuffle=True)
    seen = torch.cat([b.indices for b in loader])
    assert len(loader) == 6
    assert torch.equal(seen.sort().values, torch.arange(512))


def test_order_is_a_function_of_seed_and_epoch():
    splits = _splits()
    order = lambda seed, epoch: torch.cat([b.indices for b in _at(BatchLoader(splits.train, splits.info, 64, shuffle=True, seed=seed), epoch)])
    assert torch.equal(order(0, 1), order(0, 1))
    assert not torch.equal(order(0, 1), order(0, 2))
    assert not torch.equal(order(0, 1), order(1, 1))


def _at(loader, epoch):
    loader.set_epoch(epoch)
    return list(loader)


def test_indices_match_targets_and_normalisation():
    splits = _splits()
    loader = BatchLoader(splits.train, splits.info, 512, shuffle=True)
    batch = next(iter(loader))
    assert torch.equal(batch.targets, splits.train.targets[batch.indices])
    assert abs(batch.inputs.mean().item()) < 1e-4 and abs(batch.inputs.std().item() - 1) < 1e-3


def test_subset_iterates_only_given_indices():
    splits = _splits()
    keep = torch.arange(0, 512, 3)
    loader = BatchLoader(splits.train, splits.info, 50, shuffle=True, indices=keep)
    seen = torch.cat([b.indices for b in loader])
    assert torch.equal(seen.sort().values, keep)


def test_ranks_split_each_global_batch():
    splits = _splits()
    full = list(BatchLoader(splits.train, splits.info, 64, shuffle=True, seed=5))
    ranks = [list(BatchLoader(splits.train, splits.info, 32, shuffle=True, seed=5, rank=r, world_size=2)) for r in (0, 1)]
    assert len(ranks[0]) == len(full)
    for whole, part0, part1 in zip(full, *ranks):
        assert torch.equal(torch.cat([part0.indices, part1.indices]), whole.indices)


def test_augmentation_crop_and_flip():
    x = torch.zeros(64, 1, 6, 6)
    x[:, :, 2, 3] = 1.0
    gen = torch.Generator().manual_seed(0)
    out = augment_batch(x, Augmentation(crop_padding=2, hflip=True), gen)
    assert out.shape == x.shape
    positions = {tuple(torch.nonzero(img[0])[0].tolist()) for img in out if img.sum() > 0}
    assert len(positions) > 5  # the bright pixel moved around
    assert out.sum() <= x.sum()  # pixels can only leave the frame, never appear


def test_eval_loaders_are_not_augmented_or_shuffled():
    splits = _splits()
    loaders = make_loaders(splits, 64)
    first = next(iter(loaders.test))
    assert torch.equal(first.indices, torch.arange(first.indices.numel()))
