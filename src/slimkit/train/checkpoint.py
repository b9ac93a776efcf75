"""Checkpoints: written atomically, read with `torch.load(weights_only=True)` (no code from a file
is ever executed), and validated so a damaged or crafted file gives a clear error instead of a
stack trace or a run that silently starts at a nonsense epoch."""

from __future__ import annotations

import math
import reprlib
from pathlib import Path
from typing import Any

import torch

from slimkit.utils.fileio import atomic_torch_save

FORMAT = "slimkit-checkpoint"
VERSION = 1
REQUIRED_KEYS = ("format", "version", "epoch", "global_step", "model", "optimizer", "rng", "history", "callbacks")
HISTORY_ROW_KEYS = ("epoch", "test_loss", "test_acc")  # what finishing a run reads from the last row


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
        first_line = str(exc).strip().splitlines()[0] if str(exc).strip() else ""  # torch's texts run to pages
        raise CheckpointError(f"checkpoint {path} is corrupt or unreadable ({type(exc).__name__}: {first_line})") from exc
    if not isinstance(state, dict) or state.get("format") != FORMAT:
        raise CheckpointError(f"{path} is not a slimkit checkpoint")
    if state.get("version") != VERSION:
        raise CheckpointError(f"checkpoint {path} has version {state.get('version')}, this slimkit reads {VERSION}")
    missing = [key for key in REQUIRED_KEYS if key not in state]
    if missing:
        raise CheckpointError(f"checkpoint {path} lacks {', '.join(missing)}")
    problem = _first_problem(state)
    if problem:
        raise CheckpointError(f"checkpoint {path} is damaged or crafted: {problem}")
    return state


def _is_count(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool) and value >= 0


def _is_number(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)


def _first_problem(state: dict[str, Any]) -> str | None:
    """What is wrong with the fields the Trainer restores, or None (the checks are by type and
    range only; whether the tensors fit the model is checked when they are loaded into it)."""
    shown = reprlib.repr
    for key in ("epoch", "global_step"):
        if not _is_count(state[key]):
            return f"'{key}' must be a whole number >= 0, got {shown(state[key])}"
    model, optimizer, rng = state["model"], state["optimizer"], state["rng"]
    if not isinstance(model, dict) or not all(isinstance(k, str) and isinstance(v, torch.Tensor) for k, v in model.items()):
        return "'model' must map parameter names to tensors"
    if not isinstance(optimizer, dict) or not isinstance(optimizer.get("state"), dict) \
            or not isinstance(optimizer.get("param_groups"), list):
        return "'optimizer' must be an optimizer state dict (state, param_groups)"
    if not isinstance(rng, torch.Tensor) or rng.dtype != torch.uint8 or rng.dim() != 1:
        return f"'rng' must be a 1-D uint8 tensor (torch.get_rng_state()), got {shown(rng)}"
    if not isinstance(state["callbacks"], dict):
        return f"'callbacks' must map callback keys to their states, got {shown(state['callbacks'])}"
    for key, check, what in (("train_time_s", _is_number, "a finite number"), ("peak_rss_bytes", _is_count, "a count")):
        if key in state and not check(state[key]):
            return f"'{key}' must be {what}, got {shown(state[key])}"
    return _history_problem(state["history"], state["epoch"])


def _history_problem(history: Any, epoch: int) -> str | None:
    """A checkpoint is written after an epoch's row is appended: 1 to `epoch` rows of numbers."""
    if not isinstance(history, list) or not 1 <= len(history) <= epoch:
        count = len(history) if isinstance(history, list) else type(history).__name__
        return f"'history' must be a list of 1 to epoch={epoch} rows, got {count}"
    for index, row in enumerate(history):
        if not isinstance(row, dict) or not all(_is_number(row.get(key)) for key in HISTORY_ROW_KEYS):
            return f"history row {index + 1} must hold numbers for {', '.join(HISTORY_ROW_KEYS)}"
    return None
