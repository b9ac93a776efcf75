"""The removal rules: threshold, fraction (with its tie-breaks), and refusing to remove everything."""

import pytest
import torch

from slimkit.efficiency import NEVER_LEARNED, select_removed

SCORES = torch.tensor([0, 2, 1, 0, NEVER_LEARNED, 0, 1], dtype=torch.int32)
FIRST = torch.tensor([3, 0, 0, 1, -1, 0, 2], dtype=torch.int32)


def test_threshold_removes_learned_examples_at_or_below_it():
    assert select_removed(SCORES, FIRST, forgetting_le=0).tolist() == [True, False, False, True, False, True, False]
    assert select_removed(SCORES, FIRST, forgetting_le=1).nonzero().reshape(-1).tolist() == [0, 2, 3, 5, 6]


def test_fraction_removes_least_forgotten_learned_earliest_first():
    removed = select_removed(SCORES, FIRST, fraction=0.3)  # int(0.3 * 7) = 2 examples
    assert removed.nonzero().reshape(-1).tolist() == [3, 5]  # count 0, learned in epochs 1 and 0
    removed = select_removed(SCORES, FIRST, fraction=0.5)  # 3: every count-0 example
    assert removed.nonzero().reshape(-1).tolist() == [0, 3, 5]
    assert not select_removed(SCORES, FIRST, fraction=0.9)[4]  # never learned goes last


def test_fraction_ties_are_seeded_not_by_index():
    scores = torch.zeros(1000, dtype=torch.int32)
    first = torch.zeros(1000, dtype=torch.int32)
    a = select_removed(scores, first, fraction=0.5, seed=0)
    assert torch.equal(a, select_removed(scores, first, fraction=0.5, seed=0))
    assert not torch.equal(a, select_removed(scores, first, fraction=0.5, seed=1))
    assert int(a.sum()) == 500 and 150 < int(a[:500].sum()) < 350


def test_rules_that_remove_everything_or_are_ambiguous_fail():
    learned_once = torch.zeros(4, dtype=torch.int32)
    with pytest.raises(ValueError, match="remove all 4"):
        select_removed(learned_once, learned_once, forgetting_le=0)
    with pytest.raises(ValueError, match="exactly one"):
        select_removed(SCORES, FIRST, forgetting_le=0, fraction=0.1)
    with pytest.raises(ValueError, match="remove_fraction"):
        select_removed(SCORES, FIRST, fraction=1.0)
