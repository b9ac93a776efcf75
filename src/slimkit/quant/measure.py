"""fp32 vs int8 ONNX side by side: accuracy on a loader, file bytes, median latency per batch size.

Latency is measured with both sessions loaded and timed in alternating rounds, so load on this
shared machine hits both models alike; each figure is the median of its rounds.
"""

from __future__ import annotations

import statistics
import time
from pathlib import Path
from typing import Any, Iterable, Sequence

import numpy as np
import torch

from slimkit.export.onnx import ort_session, run_session
from slimkit.utils.progress import Progress, progress as show_progress


def onnx_accuracy(path_or_session, loader: Iterable, *, progress: str = "auto", desc: str = "onnx accuracy") -> float:
    """Top-1 accuracy (a fraction) of an ONNX model over (inputs, targets[, indices]) batches;
    `progress` shows the batches (see `slimkit.utils.progress`)."""
    session = ort_session(path_or_session) if isinstance(path_or_session, (str, Path)) else path_or_session
    correct = seen = 0
    for batch in show_progress(loader, desc=desc, mode=progress, unit="batches"):
        inputs, targets = batch[0], batch[1]
        logits = run_session(session, inputs)
        targets = targets.numpy() if isinstance(targets, torch.Tensor) else np.asarray(targets)
        correct += int((logits.argmax(axis=1) == targets).sum())
        seen += len(targets)
    if seen == 0:
        raise ValueError("the evaluation loader yielded no examples")
    return correct / seen


def side_by_side_latency(
    paths: dict[str, Path], input_shape: Sequence[int], batch_sizes: Sequence[int] = (1, 8), *,
    repeats: int = 30, warmup: int = 5, threads: int | None = None, progress: str = "auto",
) -> dict[str, dict[int, float]]:
    """{label: {batch size: median seconds}} with the models timed in alternating rounds;
    `progress` shows the rounds (see `slimkit.utils.progress`)."""
    if repeats < 1:
        raise ValueError(f"repeats must be >= 1, got {repeats}")
    sessions = {label: ort_session(path, threads=threads) for label, path in paths.items()}
    rng = np.random.default_rng(0)
    result: dict[str, dict[int, float]] = {label: {} for label in sessions}
    desc = "latency " + " vs ".join(sessions)
    with Progress(len(batch_sizes) * (warmup + repeats), desc, mode=progress, unit="rounds") as task:
        for batch in batch_sizes:
            x = rng.standard_normal((batch, *input_shape)).astype(np.float32)
            samples: dict[str, list[float]] = {label: [] for label in sessions}
            for _ in range(warmup):
                for session in sessions.values():
                    run_session(session, x)
                task.update()
            for _ in range(repeats):
                for label, session in sessions.items():
                    start = time.perf_counter()
                    run_session(session, x)
                    samples[label].append(time.perf_counter() - start)
                task.update()
            for label in sessions:
                result[label][batch] = statistics.median(samples[label])
    return result


def compare(
    fp32_path: Path, int8_path: Path, loader: Iterable | None, input_shape: Sequence[int], *,
    batch_sizes: Sequence[int] = (1, 8), repeats: int = 30, threads: int | None = None, progress: str = "auto",
) -> dict[str, Any]:
    """metrics.json-style figures for fp32 and int8 side by side (accuracies are fractions);
    `progress` shows the accuracy passes and latency rounds (see `slimkit.utils.progress`)."""
    out: dict[str, Any] = {
        "fp32_bytes": Path(fp32_path).stat().st_size,
        "int8_bytes": Path(int8_path).stat().st_size,
    }
    out["size_ratio"] = out["fp32_bytes"] / out["int8_bytes"]
    if loader is not None:
        out["fp32_acc"] = onnx_accuracy(fp32_path, loader, progress=progress, desc="fp32 accuracy")
        out["int8_acc"] = onnx_accuracy(int8_path, loader, progress=progress, desc="int8 accuracy")
        out["acc_drop_pt"] = 100 * (out["fp32_acc"] - out["int8_acc"])
    latency = side_by_side_latency({"fp32": fp32_path, "int8": int8_path}, input_shape, batch_sizes,
                                   repeats=repeats, threads=threads, progress=progress)
    for batch in batch_sizes:
        fp32, int8 = latency["fp32"][batch], latency["int8"][batch]
        out[f"latency_ms_b{batch}"] = {"fp32": fp32 * 1e3, "int8": int8 * 1e3, "speedup": fp32 / int8}
    return out
