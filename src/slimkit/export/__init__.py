"""Saving and loading models (safetensors + JSON sidecar); ONNX export and ONNX Runtime sessions."""

from slimkit.export.model_files import ModelFileError, load_model, read_sidecar, save_model
from slimkit.export.onnx import OnnxExportError, export_onnx, onnx_max_abs_diff, ort_session, run_session

__all__ = [
    "ModelFileError", "OnnxExportError", "export_onnx", "load_model", "onnx_max_abs_diff", "ort_session", "read_sidecar",
    "run_session", "save_model",
]
