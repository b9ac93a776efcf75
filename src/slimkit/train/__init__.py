"""One training loop with callback points, strict config, LR schedules and exact resume."""

from slimkit.train.callbacks import Callback, StepState
from slimkit.train.checkpoint import CheckpointError, load_checkpoint, save_checkpoint
from slimkit.train.config import StrictModel, TrainConfig
from slimkit.train.loop import Trainer, build_optimizer
from slimkit.train.schedule import lr_factor

__all__ = [
    "Callback", "CheckpointError", "StepState", "StrictModel", "TrainConfig", "Trainer", "build_optimizer",
    "load_checkpoint", "lr_factor", "save_checkpoint",
]
