"""Optional TensorBoard logging: every epoch's history row as scalars under `RUN/tensorboard/`.

Needs the `tensorboard` package (`pip install slimkit[tensorboard]`); `require_tensorboard()`
says so before any training starts. The x axis is the 1-based epoch, as in history.csv.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any

from slimkit.utils import distributed
from slimkit.train.callbacks import Callback

if TYPE_CHECKING:
    from slimkit.train.loop import Trainer


# history.csv column -> TensorBoard tag; other numeric columns go under "other/"
TAGS = {
    "train_loss": "loss/train", "val_loss": "loss/val", "test_loss": "loss/test",
    "train_acc": "accuracy/train", "val_acc": "accuracy/val", "test_acc": "accuracy/test",
    "lr": "lr", "density": "sparsity/density", "weights_moved": "masks/weights_moved",
    "mask_updates": "masks/mask_updates", "forward_flops": "sparsity/forward_flops",
    "epoch_time_s": "time/epoch_s", "examples_per_s": "time/examples_per_s", "train_examples": "data/train_examples",
}
SKIP = {"epoch", "round"}


class TensorBoardUnavailable(ImportError, ValueError):
    """`tensorboard: true` was asked for but the tensorboard package is not installed."""


def require_tensorboard() -> None:
    """Raise TensorBoardUnavailable (with the install command) unless SummaryWriter can be imported."""
    try:
        from torch.utils.tensorboard import SummaryWriter  # noqa: F401
    except ImportError as exc:
        raise TensorBoardUnavailable(
            "tensorboard logging (tensorboard: true / --tensorboard) needs the tensorboard package: "
            f"`pip install tensorboard` or `pip install slimkit[tensorboard]` ({exc})"
        ) from None


def tag_of(column: str) -> str | None:
    if column in SKIP:
        return None
    if column in TAGS:
        return TAGS[column]
    if column.startswith("moved/"):  # per-layer weights moved by dynamic sparse training
        return f"masks/{column}"
    return f"other/{column}"


class TensorBoardLogger(Callback):
    """Writes each epoch's history row (numbers only) to a TensorBoard event file in `log_dir`.
    Add it after the sparsity method so the row already holds density and weights moved."""

    def __init__(self, log_dir: str | Path) -> None:
        require_tensorboard()
        self.log_dir = Path(log_dir)
        self.writer = None

    def on_train_start(self, trainer: Trainer) -> None:
        if not distributed.is_main():
            return
        from torch.utils.tensorboard import SummaryWriter

        # On resume, drop events an interrupted run logged after its last checkpoint.
        self.writer = SummaryWriter(str(self.log_dir), purge_step=trainer.epoch + 1)

    def on_epoch_end(self, trainer: Trainer, epoch: int, row: dict[str, Any]) -> None:
        if self.writer is None:
            return
        for column, value in row.items():
            tag = tag_of(column)
            if tag is not None and isinstance(value, (int, float)) and not isinstance(value, bool):
                self.writer.add_scalar(tag, float(value), global_step=epoch + 1)
        self.writer.flush()  # a killed run keeps what it logged

    def on_train_end(self, trainer: Trainer) -> None:
        if self.writer is not None:
            self.writer.close()
            self.writer = None
