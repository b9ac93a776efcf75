"""Checkpoints: written atomically, read with `torch.load(weights_only=True)` (no code from a file
is ever executed), and validated so a damaged file gives a clear error instead of a stack trace."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch

from slimkit.utils.fileio import atomic_torch_save

FORMAT = "slimkit-checkpoint"
VERSION = 1
REQUIRED_KEYS = ("format", "version", "epoch", "global_step", "model", "optimizer", "rng", "history", "callbacks")


class CheckpointError(ValueError):
    """A checkpoint is missing, corrupt, or not a slimkit checkpoint."""


def save_checkpoint(path: str | Path, state: dict[str, Any]) -> Path:
    return atomic_torch_save(path, {"format": FORMAT, "version": VERSION, **state})


def load_checkpoint(path: str | Path, map_location: str | torch.device = "cpu") -> dict[str, Any]:
    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"no checkpoint at {path}")
    try:
        state = torch.load(path, map_location=map_location, weights_only=True)
    except Exception as exc:  # noqa: BLE001 - every failure here means an unusable file
        raise CheckpointError(f"checkpoint {path} is corrupt or unreadable ({type(exc).__name__}: {exc})") from exc
    if not isinstance(state, dict) or state.get("format") != FORMAT:
        raise CheckpointError(f"{path} is not a slimkit checkpoint")
    if state.get("version") != VERSION:
        raise CheckpointError(f"checkpoint {path} has version {state.get('version')}, this slimkit reads {VERSION}")
    missing = [key for key in REQUIRED_KEYS if key not in state]
    if missing:
        raise CheckpointError(f"checkpoint {path} lacks {', '.join(missing)}")
    return state
