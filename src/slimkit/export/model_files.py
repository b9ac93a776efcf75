"""Models on disk: `model.safetensors` (tensors only, nothing executable) plus `model.json`, a
sidecar that says how to rebuild the architecture (registry name, options, dataset shape)."""

from __future__ import annotations

import json
from dataclasses import asdict
from pathlib import Path
from typing import Any

from safetensors import SafetensorError
from safetensors.torch import load_file, save_file
from torch import nn

from slimkit import __version__
from slimkit.compressed import layouts_of, prepare_for_loading
from slimkit.data.base import DatasetInfo
from slimkit.export.model_checks import ModelFileError, check_sidecar, check_weights_fit, declared_shapes, stored_shapes
from slimkit.utils.fileio import atomic_write, atomic_write_json
from slimkit.utils.run_folder import SIDECAR_FILE, WEIGHTS_FILE, read_user_text
from slimkit.models.registry import build_model

FORMAT = "slimkit-model"
VERSION = 1


def _unique_state(model: nn.Module) -> dict[str, Any]:
    """State dict with tied tensors stored once: safetensors refuses shared storage."""
    seen: dict[int, str] = {}
    tensors, aliases = {}, {}
    for name, tensor in model.state_dict().items():
        key = tensor.untyped_storage().data_ptr() if tensor.numel() else id(tensor)
        if key in seen and tensors[seen[key]].shape == tensor.shape:
            aliases[name] = seen[key]
            continue
        seen[key] = name
        tensors[name] = tensor.detach().contiguous().cpu()
    return {"tensors": tensors, "aliases": aliases}


def save_model(
    model: nn.Module, out_dir: str | Path, *, name: str, info: DatasetInfo, options: dict[str, Any] | None = None,
    extra: dict[str, Any] | None = None,
) -> Path:
    """Write `model.safetensors` + `model.json` into `out_dir`; returns the weights path."""
    out = Path(out_dir)
    state = _unique_state(model)
    weights = atomic_write(out / WEIGHTS_FILE, lambda tmp: save_file(state["tensors"], tmp, metadata={"format": FORMAT}))
    sidecar = {
        "format": FORMAT,
        "version": VERSION,
        "model": name,
        "model_options": options or {},
        "dataset": {**asdict(info), "input_shape": list(info.input_shape)},
        "aliases": state["aliases"],
        # layers stored compressed (slimkit.compressed), with their layout: rebuilt as such when loading
        "compressed_layers": layouts_of(model),
        "slimkit_version": __version__,
        **(extra or {}),
    }
    atomic_write_json(out / SIDECAR_FILE, sidecar)
    return weights


def read_sidecar(path: str | Path) -> dict[str, Any]:
    path = Path(path)
    folder = path if path.is_dir() else path.parent
    sidecar_path = folder / SIDECAR_FILE
    try:
        sidecar = json.loads(read_user_text(sidecar_path, ModelFileError))
    except FileNotFoundError:
        raise ModelFileError(f"no {SIDECAR_FILE} in {folder}: not a slimkit model folder") from None
    except json.JSONDecodeError as exc:
        raise ModelFileError(f"{sidecar_path} is not valid JSON: {exc}") from None
    if not isinstance(sidecar, dict) or sidecar.get("format") != FORMAT:
        raise ModelFileError(f"{sidecar_path} is not a slimkit model description")
    return sidecar


def load_model(path: str | Path) -> tuple[nn.Module, dict[str, Any]]:
    """Rebuild and load a model saved by `save_model` (a run folder or a file inside it)."""
    path = Path(path)
    folder = path if path.is_dir() else path.parent
    sidecar = read_sidecar(folder)
    info = check_sidecar(sidecar, folder / SIDECAR_FILE)
    name, options = sidecar["model"], sidecar.get("model_options", {})
    # Sizes are checked on the meta device against the weights file's header before the model is built.
    stored = stored_shapes(folder / WEIGHTS_FILE)
    declared = declared_shapes(lambda: build_model(name, info, **options), f"{folder / SIDECAR_FILE}: model '{name}'")
    if declared is not None:
        check_weights_fit(declared, stored, sidecar,
                          f"weights in {folder / WEIGHTS_FILE} do not fit model '{name}' of {folder / SIDECAR_FILE}")
    model = build_model(name, info, **options)
    try:
        tensors = load_file(str(folder / WEIGHTS_FILE))
    except (SafetensorError, OSError) as exc:
        raise ModelFileError(f"cannot read {folder / WEIGHTS_FILE}: {exc}") from None
    for alias, source in sidecar.get("aliases", {}).items():
        tensors[alias] = tensors[source]
    try:
        prepare_for_loading(model, sidecar.get("compressed_layers", []))
        if sidecar.get("structured_pruned"):  # channel-pruned: reshape the built model to the saved widths
            from slimkit.structured.netslim import load_pruned_model

            load_pruned_model(model, tensors)
        model.load_state_dict(tensors, strict=True)
    except ValueError as exc:
        raise ModelFileError(f"{folder / SIDECAR_FILE}: {exc}") from None
    except RuntimeError as exc:
        raise ModelFileError(f"weights in {folder / WEIGHTS_FILE} do not fit model '{sidecar['model']}': {exc}") from None
    return model, sidecar
