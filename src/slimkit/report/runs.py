"""Finished run folders as data for reports: metrics, the per-epoch history and the saved
weights of every prunable layer, each viewed as a 2-D matrix (out x in*kh*kw)."""

from __future__ import annotations

import csv
import json
import re
from dataclasses import dataclass, field
from functools import cached_property
from pathlib import Path
from typing import Any, Sequence

import numpy as np

from slimkit.utils.run_folder import HISTORY_FILE, METRICS_FILE, SIDECAR_FILE, WEIGHTS_FILE



class ReportError(ValueError):
    """A folder given to a report is not a finished slimkit run (or its files cannot be read)."""


def _number(text: str) -> float | str | None:
    if text == "":
        return None  # a column this row did not have (e.g. imp rounds with different columns)
    try:
        return float(text)
    except ValueError:
        return text


def read_history(path: Path) -> list[dict[str, Any]]:
    """history.csv as rows of floats (None where a row has no value for a column)."""
    if not path.is_file():
        return []
    with open(path, newline="") as f:
        return [{key: _number(value) for key, value in row.items()} for row in csv.DictReader(f)]


def _to_matrix(weight) -> np.ndarray:
    array = weight.detach().float().cpu().numpy()
    return array.reshape(array.shape[0], -1) if array.ndim > 1 else array.reshape(1, -1)


@dataclass
class RunData:
    """One finished run folder. `layers` loads the saved model lazily (only figures need it)."""

    path: Path
    label: str
    metrics: dict[str, Any]
    history: list[dict[str, Any]] = field(default_factory=list)

    @property
    def columns(self) -> list[str]:
        seen: list[str] = []
        for row in self.history:
            seen += [key for key in row if key not in seen]
        return seen

    @property
    def x(self) -> np.ndarray:
        """The x value of every history row: the epoch, or the row number when the epochs
        restart (imp rounds) or are missing."""
        epochs = [row.get("epoch") for row in self.history]
        if any(not isinstance(e, float) for e in epochs) or any(b <= a for a, b in zip(epochs, epochs[1:])):
            return np.arange(1, len(epochs) + 1, dtype=float)
        return np.asarray(epochs, dtype=float)

    def column(self, name: str, fill: float = np.nan) -> np.ndarray:
        """One history column, aligned with `x`; `fill` where a row has no number."""
        values = [row.get(name) for row in self.history]
        return np.asarray([v if isinstance(v, float) else fill for v in values], dtype=float)

    def series(self, name: str) -> tuple[np.ndarray, np.ndarray]:
        """(x, y) of one history column, leaving out rows without a finite number."""
        y = self.column(name)
        keep = np.isfinite(y)
        return self.x[keep], y[keep]

    @property
    def has_model(self) -> bool:
        return (self.path / WEIGHTS_FILE).is_file() and (self.path / SIDECAR_FILE).is_file()

    @cached_property
    def layers(self) -> dict[str, np.ndarray]:
        """Weight of every Conv/Linear layer as a 2-D float matrix (out x in*kh*kw), read through
        `slimkit.export.load_model` (safetensors only; compressed and channel-pruned layers included)."""
        from slimkit.export import ModelFileError, load_model
        from slimkit.metrics.params import is_compressed, prunable_layers

        try:
            model, _ = load_model(self.path)
        except ModelFileError as exc:
            raise ReportError(f"{self.path}: cannot load the saved model: {exc}") from None
        return {
            name: _to_matrix(module.dense_weight() if is_compressed(module) else module.weight)
            for name, module in prunable_layers(model).items()
        }


def read_run(path: str | Path, label: str | None = None) -> RunData:
    """A finished run folder (it must hold metrics.json); the error names the folder otherwise."""
    folder = Path(path)
    if not folder.is_dir():
        raise ReportError(f"{folder} is not a folder: expected a finished slimkit run folder")
    metrics_path = folder / METRICS_FILE
    if not metrics_path.is_file():
        raise ReportError(f"{folder} has no {METRICS_FILE}: not a finished slimkit run")
    try:
        metrics = json.loads(metrics_path.read_text())
    except json.JSONDecodeError as exc:
        raise ReportError(f"{metrics_path} is not valid JSON: {exc}") from None
    if not isinstance(metrics, dict):
        raise ReportError(f"{metrics_path} does not hold a mapping of metrics")
    return RunData(folder, label or folder.name or str(folder), metrics, read_history(folder / HISTORY_FILE))


def run_labels(paths: Sequence[str | Path]) -> list[str]:
    """Short distinct labels: the folder names, with parent folders added until they differ."""
    parts = [Path(p).resolve().parts for p in paths]
    for depth in range(1, max((len(p) for p in parts), default=1) + 1):
        labels = ["/".join(p[-depth:]) for p in parts]
        if len(set(labels)) == len(labels):
            return labels
    return [f"{label} ({i + 1})" for i, label in enumerate(str(p) for p in paths)]  # the same folder twice


def read_runs(paths: Sequence[str | Path]) -> list[RunData]:
    if not paths:
        raise ReportError("a report needs at least one run folder")
    return [read_run(path, label) for path, label in zip(paths, run_labels(paths))]


def slug(text: str) -> str:
    """A file-name-safe version of a label."""
    return re.sub(r"[^A-Za-z0-9._-]+", "_", text).strip("._") or "run"
