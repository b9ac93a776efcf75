"""int8 quantization: static/dynamic PTQ through ONNX Runtime, QAT as a Trainer callback,
fp32-vs-int8 measurement and sparse int8 size reports."""

from slimkit.quant.bn_fold import fold_batchnorm
from slimkit.quant.calibration import CALIBRATION_METHODS, calibration_batches, calibration_ranges
from slimkit.quant.measure import compare, onnx_accuracy, side_by_side_latency
from slimkit.quant.ptq import QuantizeResult, fp32_ops, quantize_dynamic_onnx, quantize_static_onnx
from slimkit.quant.qat import QAT, export_qat
from slimkit.quant.size import SizeReport, int8_weights, size_report

__all__ = [
    "CALIBRATION_METHODS", "QAT", "QuantizeResult", "SizeReport", "calibration_batches", "calibration_ranges", "compare",
    "export_qat", "fold_batchnorm", "fp32_ops", "int8_weights", "onnx_accuracy", "quantize_dynamic_onnx",
    "quantize_static_onnx", "side_by_side_latency", "size_report",
]
