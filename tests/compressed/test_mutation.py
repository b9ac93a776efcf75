import torch
from torch import nn

from slimkit.compressed import apply_mutation, choose_mutation, compress, kept_count
from slimkit.sparse.masking import apply_masks


def _compressed_linear(density=0.3, seed=0):
    torch.manual_seed(seed)
    model = nn.Sequential(nn.Linear(30, 20))
    apply_masks(model, {"0": torch.rand(20, 30) < density})
    layer = compress(model)["0"]
    return model, layer


def test_kept_count_matches_unstructured_rounding():
    assert kept_count(0.1, 1000) == 100
    assert kept_count(1e-9, 1000) == 1
    assert kept_count(1.0, 7) == 7


def test_choose_mutation_keeps_the_most_important_and_never_regrows_dropped():
    positions = torch.tensor([2, 5, 7, 11, 13])
    importance = torch.tensor([0.5, 0.1, 0.9, 0.1, 0.3])
    survivors, grown = choose_mutation(positions, importance, keep=3, total=5, numel=16, generator=torch.Generator())
    assert positions[survivors].tolist() == [2, 7, 13]
    assert len(grown) == 2 and not torch.isin(grown, positions).any()  # dropped 5 and 11 are excluded too


def test_ties_break_by_position():
    positions = torch.arange(6)
    survivors, _ = choose_mutation(positions, torch.zeros(6), keep=2, total=2, numel=6, generator=torch.Generator())
    assert survivors.tolist() == [0, 1]


def test_apply_mutation_moves_values_and_optimizer_state():
    model, layer = _compressed_linear()
    optimizer = torch.optim.SGD(model.parameters(), lr=0.1, momentum=0.9)
    model(torch.randn(8, 30)).sum().backward()
    optimizer.step()
    before_positions = layer.linear_indices()
    before_values = layer.values.detach().clone()
    before_momentum = optimizer.state[layer.values]["momentum_buffer"].clone()
    importance = layer.values.detach().abs()
    keep = layer.nnz - 10
    survivors, grown = choose_mutation(before_positions, importance, keep, layer.nnz, layer.weight_numel, torch.Generator())
    apply_mutation(layer, survivors, grown, optimizer)

    after = layer.linear_indices()
    assert layer.nnz == len(before_positions)
    assert torch.all(after[1:] > after[:-1])
    momentum = optimizer.state[layer.values]["momentum_buffer"]
    assert momentum.shape == layer.values.shape
    slot = {int(p): i for i, p in enumerate(after)}
    for old_slot in survivors.tolist():
        new_slot = slot[int(before_positions[old_slot])]
        assert layer.values[new_slot] == before_values[old_slot]
        assert momentum[new_slot] == before_momentum[old_slot]
    for position in grown.tolist():
        assert layer.values[slot[position]] == 0 and momentum[slot[position]] == 0
    # the rebuilt layer still trains: its gradient has the new size
    model(torch.randn(4, 30)).sum().backward()
    assert layer.values.grad.shape == layer.values.shape
    optimizer.step()


def test_a_nearly_dense_layer_swaps_at_most_its_inactive_positions():
    """ERK leaves small layers nearly dense: 120 of 150 kept, asked to drop 36 and regrow 36."""
    positions = torch.arange(120)
    survivors, grown = choose_mutation(positions, torch.rand(120), keep=84, total=120, numel=150,
                                       generator=torch.Generator().manual_seed(0))
    assert survivors.numel() == 90 and grown.numel() == 30
    assert set(grown.tolist()) == set(range(120, 150))
