"""Checks of a model folder before anything is built from it.

`model.json` is small and hand-editable, yet it decides how large a model is built (the input
shape, the number of classes, the model's options). So nothing is trusted until it is checked:
the sidecar's fields by type and range, then the declared architecture, built on the meta device
(shapes only, no memory), against the tensors the safetensors header says the weights file holds.
Only then is the model built for real, so a 1 kB sidecar cannot ask for terabytes.
"""

from __future__ import annotations

import logging
import math
from pathlib import Path
from typing import Any, Callable

import torch
from safetensors import SafetensorError, safe_open
from torch import nn

from slimkit.data.base import DatasetInfo

log = logging.getLogger(__name__)

MAX_INPUT_ELEMENTS = 1 << 24  # values in one input example (64 MB as float32)
MAX_CLASSES = 1 << 20
MAX_MODEL_ELEMENTS = 1 << 32  # values in the declared (dense) model: 16 GiB as float32
# A compressed or channel-pruned model stores fewer values than its dense architecture holds; its
# dense size may exceed what the weights file stores by this factor (99.9% sparsity is ~500x).
MAX_DENSE_PER_STORED = 4096
MIN_DENSE_ALLOWANCE = 1 << 20


class ModelFileError(ValueError):
    """A saved model is missing, corrupt, or does not match its description."""


def _is_count(value: Any, low: int = 1) -> bool:
    return isinstance(value, int) and not isinstance(value, bool) and value >= low


def _is_number(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)


def _str_map(value: Any, values: Callable[[Any], bool]) -> bool:
    return isinstance(value, dict) and all(isinstance(k, str) and values(v) for k, v in value.items())


def check_sidecar(sidecar: dict[str, Any], path: Path) -> DatasetInfo:
    """Raise ModelFileError naming `path` and the field unless every field a model is built from
    has the right type and a sane size; returns the dataset description it holds."""

    def fail(problem: str) -> ModelFileError:
        return ModelFileError(f"{path}: {problem}")

    if not isinstance(sidecar.get("model"), str) or not sidecar["model"]:
        raise fail("'model' must be a model name")
    if not _str_map(sidecar.get("model_options", {}), lambda v: True):
        raise fail("'model_options' must be a mapping of option names to values")
    if not _str_map(sidecar.get("aliases", {}), lambda v: isinstance(v, str)):
        raise fail("'aliases' must map tensor names to tensor names")
    layers = sidecar.get("compressed_layers", {})
    if not (_str_map(layers, lambda v: isinstance(v, str)) or
            isinstance(layers, list) and all(isinstance(name, str) for name in layers)):
        raise fail("'compressed_layers' must map layer names to layouts")
    if not isinstance(sidecar.get("structured_pruned", False), bool):
        raise fail("'structured_pruned' must be true or false")
    dataset = sidecar.get("dataset")
    if not isinstance(dataset, dict):
        raise fail("'dataset' must be a mapping (name, input_shape, num_classes, mean, std)")
    shape, classes = dataset.get("input_shape"), dataset.get("num_classes")
    if not isinstance(shape, list) or not 1 <= len(shape) <= 4 or not all(_is_count(n) for n in shape):
        raise fail(f"'dataset.input_shape' must be 1 to 4 positive whole numbers, got {shape!r:.80}")
    if math.prod(shape) > MAX_INPUT_ELEMENTS:
        raise fail(f"'dataset.input_shape' {shape} asks for {math.prod(shape):,} values per example "
                   f"(at most {MAX_INPUT_ELEMENTS:,})")
    if not _is_count(classes) or classes > MAX_CLASSES:
        raise fail(f"'dataset.num_classes' must be a whole number from 1 to {MAX_CLASSES:,}, got {classes!r:.80}")
    stats = {key: dataset.get(key, [default]) for key, default in (("mean", 0.0), ("std", 1.0))}
    for key, values in stats.items():
        if not isinstance(values, list) or not values or not all(map(_is_number, values)):
            raise fail(f"'dataset.{key}' must be a list of finite numbers (one per channel)")
    if not isinstance(dataset.get("name"), str):
        raise fail("'dataset.name' must be a dataset name")
    return DatasetInfo(dataset["name"], tuple(shape), classes, tuple(stats["mean"]), tuple(stats["std"]))


def stored_shapes(weights: Path) -> dict[str, tuple[int, ...]]:
    """{tensor name: shape} from the safetensors header alone (no tensor data is read)."""
    try:
        with safe_open(str(weights), framework="pt") as stored:
            return {name: tuple(stored.get_slice(name).get_shape()) for name in stored.keys()}
    except (SafetensorError, OSError) as exc:
        raise ModelFileError(f"cannot read {weights}: {exc}") from None


def declared_shapes(build: Callable[[], nn.Module], describe: str) -> dict[str, tuple[int, ...]] | None:
    """{state-dict key: shape} of the model `build` makes, built on the meta device (no memory);
    None when the model cannot be built there (a custom model doing data-dependent work in
    `__init__`): the file's sizes are then checked by loading only."""
    try:
        with torch.device("meta"):
            model = build()
    except (TypeError, ValueError) as exc:  # unknown model name or option, invalid option value
        raise ModelFileError(f"{describe}: cannot build it: {exc}") from None
    except (NotImplementedError, RuntimeError) as exc:
        log.debug("%s: not checked on the meta device (%s)", describe, exc)
        return None
    return {key: tuple(value.shape) for key, value in model.state_dict().items()}


def check_weights_fit(
    declared: dict[str, tuple[int, ...]], stored: dict[str, tuple[int, ...]], sidecar: dict[str, Any], describe: str,
) -> None:
    """Raise ModelFileError unless the weights file can hold the declared model: aliases name
    stored tensors; a plain model's tensors match exactly; a compressed or channel-pruned one's
    are no larger than declared, and its dense size is within MAX_DENSE_PER_STORED of the file's."""
    for alias, source in sidecar.get("aliases", {}).items():
        if source not in stored or alias in stored:
            raise ModelFileError(f"{describe}: alias '{alias}' -> '{source}' does not name one stored tensor")
    stored = {**stored, **{alias: stored[source] for alias, source in sidecar.get("aliases", {}).items()}}
    dense, kept = sum(map(math.prod, declared.values())), sum(map(math.prod, stored.values()))
    if dense > MAX_MODEL_ELEMENTS:
        raise ModelFileError(f"{describe}: the model it declares holds {dense:,} values (at most {MAX_MODEL_ELEMENTS:,})")
    shrunk = bool(sidecar.get("compressed_layers")) or sidecar.get("structured_pruned", False)
    if not shrunk:
        missing, unexpected = sorted(set(declared) - set(stored)), sorted(set(stored) - set(declared))
        if missing or unexpected:
            what = f"lack {', '.join(missing[:3])}" if missing else f"hold unknown {', '.join(unexpected[:3])}"
            raise ModelFileError(f"{describe}: the stored weights {what}")
    for key in sorted(set(declared) & set(stored)):
        want, have = declared[key], stored[key]
        fits = have == want or shrunk and len(have) == len(want) and all(h <= w for h, w in zip(have, want))
        if not fits:
            raise ModelFileError(f"{describe}: '{key}' is stored with shape {list(have)}, the model has {list(want)}")
    if shrunk and dense > max(MAX_DENSE_PER_STORED * kept, MIN_DENSE_ALLOWANCE):
        raise ModelFileError(f"{describe}: the model it declares holds {dense:,} values, over {MAX_DENSE_PER_STORED}x "
                             f"the {kept:,} the weights file stores")
