"""Inference latency: the median of repeated timed runs after warm-up (medians resist the noise
of a shared machine better than means)."""

from __future__ import annotations

import statistics
import time
from dataclasses import dataclass
from typing import Callable

import torch
from torch import nn

from slimkit.utils.progress import Progress


@dataclass
class LatencyReport:
    median_s: float
    p10_s: float
    p90_s: float
    repeats: int


def time_callable(
    fn: Callable[[], object], *, warmup: int = 5, repeats: int = 30, progress: str = "auto", desc: str = "latency"
) -> LatencyReport:
    """Median, p10 and p90 of `repeats` timed calls after `warmup` untimed ones; `progress` shows
    the calls (see `slimkit.utils.progress`)."""
    if repeats < 1:
        raise ValueError(f"repeats must be >= 1, got {repeats}")
    samples = []
    with Progress(warmup + repeats, desc, mode=progress, unit="runs") as task:
        for _ in range(warmup):
            fn()
            task.update()
        for _ in range(repeats):
            start = time.perf_counter()
            fn()
            samples.append(time.perf_counter() - start)
            task.update()
    deciles = statistics.quantiles(samples, n=10) if repeats > 1 else [samples[0]] * 9
    return LatencyReport(statistics.median(samples), deciles[0], deciles[-1], repeats)


def measure_latency(
    model: nn.Module, input_shape: tuple[int, ...], batch_size: int = 1, *, warmup: int = 5, repeats: int = 30,
    progress: str = "auto",
) -> LatencyReport:
    """Median forward latency of `model` in eval mode under `torch.inference_mode`."""
    was_training = model.training
    model.eval()
    param = next(model.parameters(), None)
    example = torch.randn((batch_size, *input_shape), device=param.device if param is not None else "cpu")
    try:
        with torch.inference_mode():
            return time_callable(lambda: model(example), warmup=warmup, repeats=repeats, progress=progress)
    finally:
        model.train(was_training)
