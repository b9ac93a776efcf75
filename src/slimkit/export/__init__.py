"""Saving and loading models (safetensors + JSON sidecar)."""

from slimkit.export.model_files import ModelFileError, load_model, read_sidecar, save_model

__all__ = ["ModelFileError", "load_model", "read_sidecar", "save_model"]
