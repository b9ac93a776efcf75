"""Post-training int8 quantization of ONNX models through ONNX Runtime.

Static: QDQ format, weights int8 symmetric per output channel, activations per tensor from
calibration on real batches. Defaults are measured on this project's CPU (x86-64 AVX2, no VNNI;
see docs/quantization.md): uint8 activations with 7-bit weights (`reduce_range=True`) run
ResNet-18 ~2.6x faster than fp32 ORT at batch 8, while S8S8 QDQ (int8 activations) ran no faster
than fp32 there, because ORT has no fast S8S8 conv kernel without VNNI. `reduce_range` keeps
u8 x s8 products from saturating int16 in the AVX2 kernel. Pass `activation_dtype="int8"`,
`reduce_range=False` for the S8S8 artefact (e.g. for VNNI/ARM targets).

Dynamic: weights of MatMul/Gemm (Linear) and LSTM/GRU quantized offline, activations quantized
per batch at run time; Conv is left in fp32 (ORT's ConvInteger path is slower than fp32).

Ops ORT cannot quantize run in fp32 between DequantizeLinear/QuantizeLinear pairs (documented
fallback); `fp32_ops` names them so a report can say which.
"""

from __future__ import annotations

import logging
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterable

from slimkit.utils.fileio import atomic_write
from slimkit.quant.calibration import BatchReader, calibration_batches, input_name, ort_calibration_method
from slimkit.utils.progress import Progress

# Ops that only move or reshape data: never "unquantized compute".
_LAYOUT_OPS = {"Reshape", "Flatten", "Squeeze", "Unsqueeze", "Transpose", "Shape", "Gather", "Concat", "Identity",
               "Constant", "QuantizeLinear", "DequantizeLinear", "Slice", "Split", "Cast"}
DYNAMIC_OP_TYPES = ("MatMul", "Gemm", "LSTM", "GRU")


@dataclass
class QuantizeResult:
    path: Path
    mode: str
    settings: dict[str, Any] = field(default_factory=dict)
    fp32_ops: list[str] = field(default_factory=list)  # compute op types left in float


def _quiet_ort_logging() -> None:
    import onnxruntime as ort  # a dependency of slimkit: no fallback needed

    logging.getLogger("onnxruntime").setLevel(logging.WARNING)
    ort.set_default_logger_severity(3)


def preprocess(fp32_path: str | Path, out_path: str | Path) -> Path:
    """ORT's `quant_pre_process`: shape inference + graph optimisation (e.g. Conv+BN folding) so
    calibration sees the graph that will be quantized."""
    from onnxruntime.quantization.shape_inference import quant_pre_process

    quant_pre_process(str(fp32_path), str(out_path), skip_symbolic_shape=False)
    return Path(out_path)


def fp32_ops(int8_path: str | Path) -> list[str]:
    """Compute op types in a quantized model that take no quantized input (they run in float)."""
    import onnx

    graph = onnx.load(str(int8_path)).graph
    dequantized = {n.output[0] for n in graph.node if n.op_type == "DequantizeLinear"}
    integer_ops = {"QLinearConv", "QLinearMatMul", "MatMulInteger", "ConvInteger", "DynamicQuantizeLinear",
                   "DynamicQuantizeLSTM", "MatMulIntegerToFloat", "DynamicQuantizeMatMul"}
    left = set()
    for node in graph.node:
        if node.op_type in _LAYOUT_OPS or node.op_type in integer_ops or node.domain not in ("", "ai.onnx"):
            continue
        if not any(name in dequantized for name in node.input):
            left.add(node.op_type)
    return sorted(left)


def quantize_static_onnx(
    fp32_path: str | Path, out_path: str | Path, loader: Iterable, *, calib_batches: int = 32,
    calibration: str = "minmax", activation_dtype: str = "uint8", reduce_range: bool = True, per_channel: bool = True,
    percentile: float = 99.999, op_types: list[str] | None = None, tensor_overrides: dict[str, Any] | None = None,
    progress: str = "auto",
) -> QuantizeResult:
    """Static QDQ int8 model of `fp32_path`, calibrated on `calib_batches` batches of `loader`;
    `progress` shows the calibration batches (see `slimkit.utils.progress`)."""
    from onnxruntime.quantization import QuantFormat, QuantType, quantize_static

    if activation_dtype not in ("uint8", "int8"):
        raise ValueError(f"activation_dtype must be 'uint8' or 'int8', got {activation_dtype!r}")
    method = ort_calibration_method(calibration)
    batches = calibration_batches(loader, calib_batches)
    _quiet_ort_logging()
    extra: dict[str, Any] = {"CalibPercentile": percentile, "ActivationSymmetric": False, "WeightSymmetric": True}
    if tensor_overrides:
        extra["TensorQuantOverrides"] = tensor_overrides
    with tempfile.TemporaryDirectory() as tmp:
        pre = preprocess(fp32_path, Path(tmp) / "pre.onnx")
        task = Progress(len(batches), "int8 calibration", mode=progress, unit="batches")
        reader = BatchReader(batches, input_name(pre), task)

        def write(target: str) -> None:
            quantize_static(
                str(pre), target, reader, quant_format=QuantFormat.QDQ, per_channel=per_channel,
                reduce_range=reduce_range, weight_type=QuantType.QInt8,
                activation_type=QuantType.QUInt8 if activation_dtype == "uint8" else QuantType.QInt8,
                calibrate_method=method, op_types_to_quantize=op_types, extra_options=extra,
            )

        with task:
            path = atomic_write(out_path, write)
    _check(path)
    settings = dict(calibration=calibration, calib_batches=len(batches), activation_dtype=activation_dtype,
                    weight_dtype="int8", per_channel=per_channel, reduce_range=reduce_range, format="QDQ")
    return QuantizeResult(path, "static", settings, fp32_ops(path))


def quantize_dynamic_onnx(
    fp32_path: str | Path, out_path: str | Path, *, per_channel: bool = True, reduce_range: bool = True,
    op_types: tuple[str, ...] = DYNAMIC_OP_TYPES,
) -> QuantizeResult:
    """Dynamic int8: Linear/LSTM/GRU weights stored int8, activations quantized per batch."""
    from onnxruntime.quantization import QuantType, quantize_dynamic

    _quiet_ort_logging()
    with tempfile.TemporaryDirectory() as tmp:
        pre = preprocess(fp32_path, Path(tmp) / "pre.onnx")
        path = atomic_write(out_path, lambda target: quantize_dynamic(
            str(pre), target, weight_type=QuantType.QInt8, per_channel=per_channel, reduce_range=reduce_range,
            op_types_to_quantize=list(op_types),
        ))
    _check(path)
    settings = dict(weight_dtype="int8", per_channel=per_channel, reduce_range=reduce_range, op_types=list(op_types))
    return QuantizeResult(path, "dynamic", settings, fp32_ops(path))


def _check(path: Path) -> None:
    import onnx

    onnx.checker.check_model(str(path))
