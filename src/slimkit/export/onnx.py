"""ONNX export and ONNX Runtime sessions.

Exporter choice (torch 2.14): the default `torch.onnx.export(..., dynamo=True)` path traces with
`torch.export` and needs `onnxscript` (installed with slimkit); it only implements opset >= 18.
The TorchScript exporter (`dynamo=False`) still works offline but is deprecated and warns on every
call, so it is kept only as a fallback (`exporter="torchscript"`, or automatically when onnxscript
is missing). Both write one self-contained `.onnx` file with a dynamic batch axis.
"""

from __future__ import annotations

import copy
import importlib.util
import logging
import os
import warnings
from pathlib import Path
from typing import Literal

import numpy as np
import torch
from torch import nn

from slimkit.compressed import compressed_layers, decompress
from slimkit.utils.fileio import atomic_write

INPUT_NAME = "input"
OUTPUT_NAME = "logits"
DEFAULT_OPSET = 18
Exporter = Literal["auto", "dynamo", "torchscript"]


class OnnxExportError(ValueError):
    """The model cannot be exported to ONNX (names the operator or reason when known)."""


def _require(module: str, purpose: str) -> None:
    if importlib.util.find_spec(module) is None:
        raise ModuleNotFoundError(f"{purpose} needs the '{module}' package: pip install {module}")


def _pick_exporter(exporter: Exporter) -> str:
    if exporter not in ("auto", "dynamo", "torchscript"):
        raise ValueError(f"exporter must be 'auto', 'dynamo' or 'torchscript', got {exporter!r}")
    if exporter == "auto":
        return "dynamo" if importlib.util.find_spec("onnxscript") is not None else "torchscript"
    return exporter


def _example_batch(example_input: torch.Tensor) -> torch.Tensor:
    """torch.export specialises a size-1 dimension to a constant, so export with batch >= 2."""
    if not isinstance(example_input, torch.Tensor) or example_input.dim() < 1:
        raise ValueError("example_input must be a batched tensor (N, ...)")
    if example_input.shape[0] >= 2:
        return example_input
    return example_input.expand(2, *example_input.shape[1:]).contiguous()


def _export_to(model: nn.Module, example: torch.Tensor, tmp: str, opset: int, exporter: str) -> None:
    common = dict(input_names=[INPUT_NAME], output_names=[OUTPUT_NAME], opset_version=opset)
    if exporter == "dynamo":
        batch = torch.export.Dim("batch", min=1, max=1 << 16)
        # The exporter logs its progress lines through `print`-like logging; keep library output quiet.
        logging.getLogger("torch.onnx").setLevel(logging.ERROR)
        program = torch.onnx.export(
            model, (example,), dynamo=True, dynamic_shapes=({0: batch},), external_data=False,
            verbose=False, **common,
        )
        program.save(tmp, external_data=False)
    else:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", (DeprecationWarning, FutureWarning, UserWarning))
            torch.onnx.export(
                model, (example,), tmp, dynamo=False, do_constant_folding=True,
                dynamic_axes={INPUT_NAME: {0: "batch"}, OUTPUT_NAME: {0: "batch"}}, **common,
            )


def export_onnx(
    model: nn.Module, example_input: torch.Tensor, path: str | Path, *, opset: int = DEFAULT_OPSET,
    exporter: Exporter = "auto",
) -> Path:
    """Export `model` (in eval mode, on CPU) to one ONNX file with a dynamic batch axis.

    The file is checked with `onnx.checker` and written atomically. Masked (parametrized) models
    export their effective weights, so pruned zeros are kept; compressed layers are exported as
    the plain layers they stand for (ONNX runtimes hold dense weights anyway, and the native
    sparse kernels cannot be traced). Returns the path written.
    """
    _require("onnx", "ONNX export")
    import onnx

    if opset < 13:
        raise ValueError(f"opset must be >= 13 (per-channel QDQ needs it), got {opset}")
    kind = _pick_exporter(exporter)
    if kind == "dynamo":
        _require("onnxscript", "the dynamo ONNX exporter")
        opset = max(opset, DEFAULT_OPSET)
    export_model = copy.deepcopy(model).cpu().eval()
    if compressed_layers(export_model):
        decompress(export_model, keep_masks=False)
    example = _example_batch(example_input.detach().cpu().float())
    try:
        with torch.no_grad():
            written = atomic_write(path, lambda tmp: _export_to(export_model, example, tmp, opset, kind))
    except RuntimeError as exc:  # torch.onnx.OnnxExporterError is a RuntimeError
        raise OnnxExportError(f"cannot export {type(model).__name__} to ONNX ({kind} exporter): {exc}") from exc
    try:
        onnx.checker.check_model(str(written), full_check=True)
    except onnx.checker.ValidationError as exc:
        raise OnnxExportError(f"exported model at {written} fails onnx.checker: {exc}") from exc
    return written


def ort_session(path: str | Path, *, threads: int | None = None):
    """An ONNX Runtime CPU session with all graph optimisations (threads: default torch's count)."""
    _require("onnxruntime", "running ONNX models")
    import onnxruntime as ort

    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"no ONNX model at {path}")
    options = ort.SessionOptions()
    options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    options.intra_op_num_threads = threads or torch.get_num_threads()
    options.inter_op_num_threads = 1
    options.log_severity_level = 3
    return ort.InferenceSession(os.fspath(path), sess_options=options, providers=["CPUExecutionProvider"])


def run_session(session, inputs: torch.Tensor | np.ndarray) -> np.ndarray:
    """Run a single-input, single-output session on a batch; returns the first output."""
    array = inputs.detach().cpu().numpy() if isinstance(inputs, torch.Tensor) else np.asarray(inputs)
    name = session.get_inputs()[0].name
    return session.run(None, {name: np.ascontiguousarray(array, dtype=np.float32)})[0]


def onnx_max_abs_diff(path: str | Path, model: nn.Module, example_input: torch.Tensor) -> float:
    """Largest absolute difference between the ONNX model (onnxruntime) and `model` (eval) outputs.

    Non-finite outputs raise OnnxExportError: a nan difference compares False with any tolerance,
    so returning it would let a model with nan/inf weights pass as exported correctly."""
    reference_model = copy.deepcopy(model).cpu().eval()
    with torch.no_grad():
        expected = reference_model(example_input.cpu().float()).numpy()
    got = run_session(ort_session(path), example_input)
    if got.shape != expected.shape:
        raise ValueError(f"ONNX output shape {got.shape} differs from the model's {expected.shape}")
    for source, output in (("PyTorch", expected), ("onnxruntime", got)):
        if not np.isfinite(output).all():
            raise OnnxExportError(f"cannot check {path}: the {source} output holds nan/inf (are the model's weights "
                                  "finite?)")
    return float(np.max(np.abs(got - expected)))
