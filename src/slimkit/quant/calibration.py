"""Calibration data and activation ranges for static quantization.

Ranges are computed by ONNX Runtime's calibrators on real batches, so the ranges slimkit reports
are the ones the int8 model uses:
- `minmax`: the observed extremes; nothing clipped, coarse steps when there are outliers.
- `percentile`: the 99.999th percentile of |x| (ORT default; symmetric histogram), clips rare outliers.
- `entropy`: the threshold minimising KL(fp32 histogram || quantized histogram), TensorRT's
  method (Migacz 2017); usually the tightest range on heavy-tailed activations.
"""

from __future__ import annotations

import itertools
import tempfile
from pathlib import Path
from typing import Iterable, Iterator

import numpy as np
import torch

from slimkit.utils.progress import Progress

CALIBRATION_METHODS = ("minmax", "percentile", "entropy")


def ort_calibration_method(name: str):
    from onnxruntime.quantization import CalibrationMethod

    methods = {"minmax": CalibrationMethod.MinMax, "percentile": CalibrationMethod.Percentile,
               "entropy": CalibrationMethod.Entropy}
    if name not in methods:
        raise ValueError(f"calibration must be one of {', '.join(CALIBRATION_METHODS)}, got {name!r}")
    return methods[name]


def calibration_batches(loader: Iterable, num_batches: int) -> list[np.ndarray]:
    """The inputs of the first `num_batches` batches of `loader` as float32 arrays.

    A loader batch may be a tensor or a tuple whose first item is the inputs.
    """
    if num_batches < 1:
        raise ValueError(f"calibration needs at least one batch, got calib_batches={num_batches}")
    arrays = []
    for batch in itertools.islice(loader, num_batches):
        inputs = batch[0] if isinstance(batch, (tuple, list)) else batch
        if isinstance(inputs, torch.Tensor):
            inputs = inputs.detach().cpu().numpy()
        arrays.append(np.ascontiguousarray(inputs, dtype=np.float32))
    if not arrays:
        raise ValueError("the calibration loader yielded no batches")
    return arrays


class BatchReader:
    """ORT `CalibrationDataReader` over prepared batches (ORT reads each batch once per pass).

    With a `task`, each batch counts as one step once ORT asks for the next one (it has run it).
    """

    def __init__(self, batches: list[np.ndarray], input_name: str, task: Progress | None = None) -> None:
        self.batches, self.input_name, self.task = batches, input_name, task
        self._iter: Iterator[np.ndarray] = iter(batches)
        self._handed_out = False

    def get_next(self) -> dict[str, np.ndarray] | None:
        if self._handed_out and self.task is not None:
            self.task.update()
        batch = next(self._iter, None)
        self._handed_out = batch is not None
        return None if batch is None else {self.input_name: batch}

    def rewind(self) -> None:
        self._iter = iter(self.batches)
        self._handed_out = False

    def __len__(self) -> int:
        return len(self.batches)


def input_name(onnx_path: str | Path) -> str:
    import onnx

    model = onnx.load(str(onnx_path), load_external_data=False)
    initializers = {t.name for t in model.graph.initializer}
    names = [i.name for i in model.graph.input if i.name not in initializers]
    if len(names) != 1:
        raise ValueError(f"slimkit quantizes single-input models; {onnx_path} has inputs {names}")
    return names[0]


def calibration_ranges(
    onnx_path: str | Path, batches: list[np.ndarray], method: str = "minmax", *,
    op_types: tuple[str, ...] | None = None, percentile: float = 99.999, num_bins: int = 2048, progress: str = "auto",
) -> dict[str, tuple[float, float]]:
    """{tensor name: (rmin, rmax)} that `method` picks for the inputs/outputs of `op_types` nodes.

    `progress` shows the calibration batches (see `slimkit.utils.progress`)."""
    from onnxruntime.quantization import create_calibrator

    extra = {"percentile": percentile, "num_bins": num_bins}
    with tempfile.TemporaryDirectory() as tmp:
        calibrator = create_calibrator(
            Path(onnx_path), list(op_types) if op_types else None, augmented_model_path=Path(tmp) / "augmented.onnx",
            calibrate_method=ort_calibration_method(method), extra_options=extra,
        )
        with Progress(len(batches), "int8 calibration", mode=progress, unit="batches") as task:
            calibrator.collect_data(BatchReader(batches, input_name(onnx_path), task))
        data = calibrator.compute_data()
    return {name: (float(np.asarray(r.range_value[0]).ravel()[0]), float(np.asarray(r.range_value[1]).ravel()[0]))
            for name, r in data.data.items()}
