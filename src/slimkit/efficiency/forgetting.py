"""Example forgetting statistics (Toneva et al., ICLR 2019) as a training callback.

Every time a training example is presented in a minibatch, the logits computed *before* that
step's update tell whether it is classified correctly. A forgetting event is a correct -> incorrect
transition between two consecutive presentations of the same example. Examples that are learned
once and never forgotten ("unforgettable") carry little information; examples never classified
correctly count as the most forgotten.

Why the records are replayed at epoch end instead of applied per step: under DDP every rank sees
only its slice of each global batch, and an example's previous presentation may have happened on
another rank. Each rank buffers (global batch, example index, correct) for the epoch; at epoch end
the buffers are gathered and replayed in global batch order, so every rank ends with the same
global statistics, equal to a single process that saw the same global batches. The buffer holds
one epoch of presentations; the statistics are O(N) small ints.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import torch
import torch.distributed as dist

from slimkit.train import Callback, StepState
from slimkit.utils import distributed

if TYPE_CHECKING:
    from slimkit.train.loop import Trainer

NEVER_LEARNED = torch.iinfo(torch.int32).max  # score of examples never classified correctly


class ForgettingTracker(Callback):
    """Counts forgetting events per training example.

    `num_examples` is the size of the training split (indices are positions in it). With
    `stop_epoch`, only epochs `< stop_epoch` are recorded (the statistics phase of two-phase
    training); without it, the whole run (Toneva's "all epochs" mode).
    """

    def __init__(self, num_examples: int, *, stop_epoch: int | None = None) -> None:
        if num_examples < 1:
            raise ValueError(f"num_examples must be >= 1, got {num_examples}")
        if stop_epoch is not None and stop_epoch < 1:
            raise ValueError(f"stop_epoch must be >= 1, got {stop_epoch}")
        self.num_examples = num_examples
        self.stop_epoch = stop_epoch
        self.last_correct = torch.full((num_examples,), -1, dtype=torch.int8)  # -1: not presented yet
        self.forgetting = torch.zeros(num_examples, dtype=torch.int32)
        self.first_learned = torch.full((num_examples,), -1, dtype=torch.int32)  # 0-based epoch, -1: never
        self.presentations = torch.zeros(num_examples, dtype=torch.int32)
        self.epochs_recorded = 0
        self._pending: list[torch.Tensor] = []  # (3, B) int64 rows: batch index, example index, correct

    # ---- recording -----------------------------------------------------------------------------
    def records(self, epoch: int) -> bool:
        return self.stop_epoch is None or epoch < self.stop_epoch

    def record(self, batch_index: int, indices: torch.Tensor, correct: torch.Tensor) -> None:
        """Buffer one (local) minibatch: `correct[i]` says whether example `indices[i]` was right."""
        indices = torch.as_tensor(indices).reshape(-1).long().cpu()
        correct = torch.as_tensor(correct).reshape(-1).cpu()
        if indices.numel() != correct.numel():
            raise ValueError(f"{indices.numel()} indices but {correct.numel()} correctness flags")
        if indices.numel() and (int(indices.min()) < 0 or int(indices.max()) >= self.num_examples):
            raise ValueError(f"example index outside the training split of {self.num_examples} examples")
        batch = torch.full_like(indices, batch_index)
        self._pending.append(torch.stack([batch, indices, correct.long()]))

    def on_after_forward(self, trainer: Trainer, step: StepState) -> None:
        if not self.records(step.epoch):
            return
        if step.indices is None:
            raise ValueError("forgetting statistics need example indices: the training loader must yield "
                             "(inputs, targets, indices) batches")
        with torch.no_grad():
            correct = step.outputs.detach().argmax(dim=1) == step.targets
        self.record(step.batch_index, step.indices, correct)

    def on_epoch_end(self, trainer: Trainer | None, epoch: int, row: dict[str, Any] | None = None) -> None:
        if not self.records(epoch):
            return
        self.flush(epoch)
        if row is not None:
            row["unforgettable"] = self.unforgettable_count()

    def flush(self, epoch: int) -> None:
        """Gather this epoch's presentations from every rank and apply them in global batch order."""
        local = torch.cat(self._pending, dim=1) if self._pending else torch.zeros((3, 0), dtype=torch.long)
        self._pending = []
        rows = _gather_in_batch_order(local)
        batches = rows[0]
        if batches.numel() == 0:
            self.epochs_recorded += 1
            return
        # Consecutive runs of one global batch; an example appears at most once per batch normally,
        # but a repeated one is applied presentation by presentation.
        bounds = torch.nonzero(batches[1:] != batches[:-1]).reshape(-1) + 1
        starts = [0, *bounds.tolist()]
        ends = [*bounds.tolist(), batches.numel()]
        for start, end in zip(starts, ends):
            idx, correct = rows[1, start:end], rows[2, start:end].bool()
            if idx.unique().numel() == idx.numel():
                self._apply(idx, correct, epoch)
            else:
                for i in range(idx.numel()):
                    self._apply(idx[i : i + 1], correct[i : i + 1], epoch)
        self.epochs_recorded += 1

    def _apply(self, idx: torch.Tensor, correct: torch.Tensor, epoch: int) -> None:
        previous = self.last_correct[idx]
        self.forgetting[idx] += ((previous == 1) & ~correct).int()
        newly = correct & (self.first_learned[idx] < 0)
        self.first_learned[idx[newly]] = epoch
        self.last_correct[idx] = correct.to(torch.int8)
        self.presentations[idx] += 1

    # ---- results -------------------------------------------------------------------------------
    @property
    def learned(self) -> torch.Tensor:
        return self.first_learned >= 0

    @property
    def never_learned(self) -> torch.Tensor:
        """Presented at least once and never classified correctly."""
        return (self.presentations > 0) & ~self.learned

    def scores(self) -> torch.Tensor:
        """Forgetting counts for sorting: examples not learned get `NEVER_LEARNED` (the maximum)."""
        return torch.where(self.learned, self.forgetting, torch.full_like(self.forgetting, NEVER_LEARNED))

    def unforgettable_count(self) -> int:
        """Learned at some presentation and never forgotten afterwards."""
        return int((self.learned & (self.forgetting == 0)).sum())

    def summary(self) -> dict[str, Any]:
        learned = self.learned
        return {
            "forgetting_epochs": self.epochs_recorded,
            "unforgettable": self.unforgettable_count(),
            "never_learned": int(self.never_learned.sum()),
            "forgotten_at_least_once": int((learned & (self.forgetting > 0)).sum()),
            "forgetting_events": int(self.forgetting.sum()),
        }

    # ---- checkpoint ----------------------------------------------------------------------------
    def state_dict(self) -> dict[str, Any]:
        pending = torch.cat(self._pending, dim=1) if self._pending else torch.zeros((3, 0), dtype=torch.long)
        return {
            "num_examples": self.num_examples,
            "last_correct": self.last_correct.clone(),
            "forgetting": self.forgetting.clone(),
            "first_learned": self.first_learned.clone(),
            "presentations": self.presentations.clone(),
            "epochs_recorded": self.epochs_recorded,
            "pending": pending,
        }

    def load_state_dict(self, state: dict[str, Any]) -> None:
        if int(state["num_examples"]) != self.num_examples:
            raise ValueError(f"forgetting statistics were saved for {state['num_examples']} examples, "
                             f"this training split has {self.num_examples}")
        self.last_correct = state["last_correct"].to(torch.int8).clone()
        self.forgetting = state["forgetting"].to(torch.int32).clone()
        self.first_learned = state["first_learned"].to(torch.int32).clone()
        self.presentations = state["presentations"].to(torch.int32).clone()
        self.epochs_recorded = int(state["epochs_recorded"])
        pending = state["pending"]
        self._pending = [pending.clone()] if pending.numel() else []


def _gather_in_batch_order(local: torch.Tensor) -> torch.Tensor:
    """All ranks' (3, n_r) records, concatenated in global order: batch by batch, rank 0's slice
    first (BatchLoader cuts each global batch into consecutive per-rank chunks)."""
    world = distributed.world_size()
    if world == 1:
        return local
    size = torch.tensor([local.shape[1]], dtype=torch.long)
    sizes = [torch.zeros_like(size) for _ in range(world)]
    dist.all_gather(sizes, size)
    longest = max(int(s) for s in sizes)
    padded = torch.zeros((3, longest), dtype=torch.long)
    padded[:, : local.shape[1]] = local
    gathered = [torch.zeros_like(padded) for _ in range(world)]
    dist.all_gather(gathered, padded)
    parts = [g[:, : int(n)] for g, n in zip(gathered, sizes)]
    rows = torch.cat(parts, dim=1)
    rank_of = torch.cat([torch.full((int(n),), r, dtype=torch.long) for r, n in enumerate(sizes)])
    order = torch.argsort(rows[0] * world + rank_of, stable=True)
    return rows[:, order]
