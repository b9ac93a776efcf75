"""ForgettingTracker on scripted outputs: counts match a hand-computed sequence, and a tracker
saved mid-run and restored continues exactly."""

import pytest
import torch

from slimkit.efficiency import NEVER_LEARNED, ForgettingTracker
from slimkit.train import StepState

# Per epoch: batches of (example indices, correct flags), in presentation order (shuffled per epoch).
SCRIPT = [
    [([0, 1], [1, 0]), ([2, 3], [1, 0]), ([4], [1])],  # epoch 0
    [([3, 0], [1, 0]), ([4, 2], [1, 1]), ([1], [0])],  # epoch 1: 0 forgotten
    [([1, 2], [1, 0]), ([4, 0], [0, 1]), ([3], [0])],  # epoch 2: 2, 4, 3 forgotten
    [([2, 3, 4], [1, 1, 1]), ([0, 1], [0, 0])],         # epoch 3: 0, 1 forgotten
]
# Hand count: 0: 1 0 1 0 -> 2 events, first learned 0; 1: 0 0 1 0 -> 1, first 2; 2: 1 1 0 1 -> 1, first 0;
# 3: 0 1 0 1 -> 1, first 1; 4: 1 1 0 1 -> 1, first 0.
EXPECTED_FORGETTING = [2, 1, 1, 1, 1]
EXPECTED_FIRST = [0, 2, 0, 1, 0]


def _logits(correct: list[int], targets: torch.Tensor) -> torch.Tensor:
    """Two-class logits whose argmax equals the target exactly where `correct` says so."""
    predicted = torch.where(torch.tensor(correct, dtype=torch.bool), targets, 1 - targets)
    return torch.nn.functional.one_hot(predicted, 2).float()


def _feed(tracker: ForgettingTracker, epochs: range) -> None:
    for epoch in epochs:
        for b, (idx, correct) in enumerate(SCRIPT[epoch]):
            targets = torch.tensor(idx) % 2
            step = StepState(epoch, b, 0, torch.zeros(len(idx), 1), targets, torch.tensor(idx))
            step.outputs = _logits(correct, targets)
            tracker.on_after_forward(None, step)
        tracker.on_epoch_end(None, epoch, {})


def test_counts_match_hand_computed_sequence():
    tracker = ForgettingTracker(6)  # example 5 is never presented
    _feed(tracker, range(4))
    assert tracker.forgetting.tolist() == EXPECTED_FORGETTING + [0]
    assert tracker.first_learned.tolist() == EXPECTED_FIRST + [-1]
    assert tracker.presentations.tolist() == [4, 4, 4, 4, 4, 0]
    assert tracker.unforgettable_count() == 0
    assert tracker.never_learned.tolist() == [False] * 6  # never presented is not "never learned"
    assert tracker.epochs_recorded == 4


def test_never_learned_sort_as_most_forgotten():
    tracker = ForgettingTracker(3)
    for epoch, flags in enumerate([[1, 0, 1], [1, 0, 0], [1, 0, 1]]):
        tracker.record(0, torch.arange(3), torch.tensor(flags, dtype=torch.bool))
        tracker.on_epoch_end(None, epoch, None)
    assert tracker.never_learned.tolist() == [False, True, False]
    assert tracker.scores().tolist() == [0, NEVER_LEARNED, 1]
    assert tracker.unforgettable_count() == 1
    assert tracker.summary()["never_learned"] == 1


def test_repeated_example_in_one_batch_is_applied_in_order():
    tracker = ForgettingTracker(2)
    tracker.record(0, torch.tensor([0, 1, 0, 0]), torch.tensor([True, True, False, True]))
    tracker.on_epoch_end(None, 0, None)
    assert tracker.forgetting.tolist() == [1, 0]
    assert tracker.presentations.tolist() == [3, 1]
    assert int(tracker.last_correct[0]) == 1


def test_stop_epoch_ends_recording():
    tracker = ForgettingTracker(6, stop_epoch=2)
    _feed(tracker, range(4))
    reference = ForgettingTracker(6)
    _feed(reference, range(2))
    assert torch.equal(tracker.forgetting, reference.forgetting)
    assert tracker.epochs_recorded == 2 and tracker.presentations.tolist() == [2, 2, 2, 2, 2, 0]


def test_state_survives_a_restart_mid_run():
    uninterrupted = ForgettingTracker(6)
    _feed(uninterrupted, range(4))
    first = ForgettingTracker(6)
    _feed(first, range(2))
    state = first.state_dict()
    first.forgetting.fill_(99)  # the saved state must be a copy
    resumed = ForgettingTracker(6)
    resumed.load_state_dict(state)
    _feed(resumed, range(2, 4))
    for name in ("forgetting", "first_learned", "presentations", "last_correct"):
        assert torch.equal(getattr(resumed, name), getattr(uninterrupted, name)), name


def test_bad_input_is_rejected():
    tracker = ForgettingTracker(3)
    with pytest.raises(ValueError, match="outside the training split"):
        tracker.record(0, torch.tensor([3]), torch.tensor([True]))
    with pytest.raises(ValueError, match="indices"):
        step = StepState(0, 0, 0, torch.zeros(1, 1), torch.tensor([0]), None, outputs=torch.zeros(1, 2))
        tracker.on_after_forward(None, step)
    with pytest.raises(ValueError, match="saved for 3 examples"):
        ForgettingTracker(4).load_state_dict(tracker.state_dict())
    with pytest.raises(ValueError, match="num_examples"):
        ForgettingTracker(0)
