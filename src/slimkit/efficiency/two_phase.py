"""Two-phase data-efficient training (MEST+DE): statistics on the full set, then the rest of the
same epoch budget on the subset without the least-forgotten examples, so the compute saved is real.

The switch happens at the start of epoch `stats_epochs` (0-based): the removal rule is applied to
the tracker's statistics and the training loader is restricted to the kept examples. The removed
mask and the switch are checkpointed; a resumed run re-applies them before its first epoch.
Step-scheduled sparsity methods (mutation stop, gradual pruning end) get the run's real step
count, so "75% of training" stays 75% of the steps actually taken.
"""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING, Any

import torch

from slimkit.efficiency.forgetting import ForgettingTracker
from slimkit.efficiency.subset import select_removed
from slimkit.methods import SparsityMethod
from slimkit.train import Callback

if TYPE_CHECKING:
    from slimkit.train.loop import Trainer

log = logging.getLogger("slimkit")


class TwoPhaseTraining(Callback):
    """Restricts training to the kept examples from epoch `stats_epochs` on.

    Register it after `tracker` (and after the sparsity method) in the trainer's callbacks.
    """

    def __init__(
        self,
        tracker: ForgettingTracker,
        *,
        stats_epochs: int,
        remove_forgetting_le: int | None = None,
        remove_fraction: float | None = None,
        seed: int = 0,
    ) -> None:
        if stats_epochs < 1:
            raise ValueError(f"stats_epochs must be >= 1, got {stats_epochs}")
        if (remove_forgetting_le is None) == (remove_fraction is None):
            raise ValueError("give exactly one of remove_forgetting_le and remove_fraction")
        if tracker.stop_epoch != stats_epochs:
            raise ValueError(f"the tracker records until epoch {tracker.stop_epoch}, the statistics phase "
                             f"lasts {stats_epochs} epochs")
        self.tracker = tracker
        self.stats_epochs = stats_epochs
        self.remove_forgetting_le, self.remove_fraction, self.seed = remove_forgetting_le, remove_fraction, seed
        self.removed: torch.Tensor | None = None  # bool mask over the training split, set at the switch
        self.planned_steps: int | None = None  # total optimizer steps of the whole run, set at the switch

    @property
    def kept_indices(self) -> torch.Tensor:
        if self.removed is None:
            raise ValueError("the statistics phase has not ended yet: nothing is removed")
        return torch.nonzero(~self.removed).reshape(-1)

    def on_train_start(self, trainer: Trainer) -> None:
        _check_loader(trainer)
        if self.removed is not None:  # resumed in phase 2
            self._restrict(trainer)

    def on_epoch_start(self, trainer: Trainer, epoch: int) -> None:
        if epoch < self.stats_epochs:
            return
        if self.removed is None:
            self.removed = select_removed(
                self.tracker.scores(), self.tracker.first_learned, forgetting_le=self.remove_forgetting_le,
                fraction=self.remove_fraction, seed=self.seed,
            )
            loader = trainer.loaders.train
            loader.set_indices(self.kept_indices)
            self.planned_steps = trainer.global_step + (trainer.config.epochs - epoch) * len(loader)
            log.info(f"data-efficient training: removed {int(self.removed.sum())} of {self.removed.numel()} "
                     f"examples after {self.stats_epochs} statistics epochs")
        self._restrict(trainer)

    def _restrict(self, trainer: Trainer) -> None:
        trainer.loaders.train.set_indices(self.kept_indices)
        for cb in trainer.callbacks:
            if isinstance(cb, SparsityMethod) and self.planned_steps is not None:
                cb.set_run_length(self.planned_steps)

    def on_epoch_end(self, trainer: Trainer, epoch: int, row: dict[str, Any]) -> None:
        row["examples_global"] = examples_per_epoch(trainer.loaders.train)
        row["data_phase"] = 1 if epoch < self.stats_epochs else 2

    def summary(self) -> dict[str, Any]:
        removed = 0 if self.removed is None else int(self.removed.sum())
        return {
            "stats_epochs": self.stats_epochs,
            "remove_forgetting_le": self.remove_forgetting_le,
            "remove_fraction": self.remove_fraction,
            "examples_removed": removed,
            "examples_kept": self.tracker.num_examples - removed,
        }

    def state_dict(self) -> dict[str, Any]:
        return {"removed": None if self.removed is None else self.removed.clone(), "planned_steps": self.planned_steps}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        removed = state["removed"]
        if removed is not None and removed.numel() != self.tracker.num_examples:
            raise ValueError(f"the saved subset covers {removed.numel()} examples, this split has "
                             f"{self.tracker.num_examples}")
        self.removed = None if removed is None else removed.bool().clone()
        self.planned_steps = state["planned_steps"]


def examples_per_epoch(loader: Any) -> int:
    """Examples one epoch of `loader` presents, summed over DDP ranks."""
    n = int(loader.num_examples)
    if getattr(loader, "drop_last", False):
        return len(loader) * loader.global_batch_size
    return n


def _check_loader(trainer: Trainer) -> None:
    loader = trainer.loaders.train
    if not (hasattr(loader, "set_indices") and hasattr(loader, "num_examples")):
        raise ValueError("two-phase training needs a training loader with set_indices (slimkit's BatchLoader), "
                         f"got {type(loader).__name__}")
