import pytest
import torch

from slimkit.compressed.structure import check_structure, from_linear, to_linear, transpose


def _random_structure(rows, cols, density, seed=0):
    g = torch.Generator().manual_seed(seed)
    mask = torch.rand(rows, cols, generator=g) < density
    mask[0] = False  # an empty row
    mask[-1] = True  # a full row
    linear = torch.nonzero(mask.flatten()).flatten()
    return mask, linear


def test_linear_positions_round_trip_through_csr():
    mask, linear = _random_structure(7, 11, 0.3)
    crow, col = from_linear(linear, (7, 11))
    assert crow.dtype == col.dtype == torch.int32
    assert torch.equal(to_linear(crow, col, 11), linear)
    dense = torch.sparse_csr_tensor(crow, col, torch.ones(len(col)), (7, 11)).to_dense()
    assert torch.equal(dense.bool(), mask)
    check_structure(crow, col, (7, 11), len(linear))


def test_transpose_structure_and_permutation():
    mask, linear = _random_structure(6, 9, 0.4, seed=1)
    crow, col = from_linear(linear, (6, 9))
    values = torch.arange(1.0, len(col) + 1)
    t = transpose(crow, col, (6, 9))
    dense_t = torch.sparse_csr_tensor(t.crow, t.col, values[t.perm.long()], (9, 6)).to_dense()
    dense = torch.sparse_csr_tensor(crow, col, values, (6, 9)).to_dense()
    assert torch.equal(dense_t, dense.T)


@pytest.mark.parametrize(
    "change, message",
    [
        (lambda crow, col: (crow.long(), col), "int32"),
        (lambda crow, col: (crow, col.long()), "int32"),
        (lambda crow, col: (crow, torch.where(col == col.max(), torch.tensor(99, dtype=torch.int32), col)), "out of range"),
        (lambda crow, col: (crow[:-1], col), "entries"),
        (lambda crow, col: (crow, col.flip(0)), "increasing"),
        (lambda crow, col: (torch.zeros_like(crow), col[:0]), "at least one"),
    ],
)
def test_bad_structures_are_named(change, message):
    _, linear = _random_structure(5, 8, 0.5)
    crow, col = change(*from_linear(linear, (5, 8)))
    with pytest.raises(ValueError, match=message):
        check_structure(crow, col, (5, 8))
