"""Sequential layer-wise one-shot pruning of a decoder-only language model (the SparseGPT / Wanda recipe).

1. Run the model on N calibration sequences up to its first decoder block and keep that block's
   inputs (hidden states and the keyword arguments the model passes: attention mask, position
   embeddings ...); the rest of the model is not run.
2. For each block in order: run it on the kept inputs with hooks on its selected Linear layers
   (Wanda: ‖X_j‖₂ per input feature; SparseGPT: H = 2/N Σ x xᵀ), prune those layers, then run the
   **pruned** block again; its outputs are the next block's inputs. Later blocks are therefore
   calibrated on what the already-pruned layers produce, and only one block's statistics and the
   N sequences' hidden states are held at a time.

Criteria: ``magnitude`` (|W|), ``wanda`` (|W|·‖X_j‖₂, Sun et al. 2023), ``sparsegpt`` (the
layer-wise OBS solver of `slimkit.importance.obs`, which also updates the kept weights; Frantar &
Alistarh 2023). Schemes: ``"unstructured"`` with a sparsity (every output row keeps the same
count, round((1 - sparsity) · in_features), as in both papers) or N:M as ``"2:4"``, ``"4:8"``
(`slimkit.sparse` N:M masks). Layers: every ``nn.Linear`` inside the decoder blocks whose full name
matches a `targets` pattern and no `ignore` pattern (fnmatch); ``lm_head`` and the embeddings are
outside the blocks and stay dense. Pruned weights are exact zeros; the masks are returned (apply
them with `slimkit.sparse.apply_masks` to keep them during fine-tuning).
"""

from __future__ import annotations

import fnmatch
import inspect
import time
from collections.abc import Sequence
from dataclasses import dataclass, field

import torch
from torch import Tensor, nn
from torch.nn.utils import parametrize

from slimkit.importance import InputStatistics, get_criterion, obs_prune_weight, wanda_scores
from slimkit.sparse import make_scheme
from slimkit.sparse.schemes import NMScheme
from slimkit.utils.progress import progress as show_progress

CRITERIA = ("magnitude", "wanda", "sparsegpt")
_STATISTIC = {"wanda": "sumsq", "sparsegpt": "gram"}
BLOCK_PATHS = ("model.layers", "model.decoder.layers", "transformer.h", "gpt_neox.layers", "layers")


@dataclass(frozen=True)
class OneShotResult:
    """The keep-masks (full layer names) and what was done; `to_dict` is the JSON summary for a run."""

    criterion: str
    scheme: str
    sparsity: float
    masks: dict[str, Tensor] = field(repr=False)
    calibration: dict[str, int]
    seconds: float

    def layer_sparsity(self) -> dict[str, float]:
        return {name: 1.0 - float(mask.float().mean()) for name, mask in self.masks.items()}

    def to_dict(self) -> dict:
        return {
            "criterion": self.criterion, "scheme": self.scheme, "sparsity": self.sparsity,
            "calibration": dict(self.calibration), "seconds": self.seconds, "layers": self.layer_sparsity(),
        }


def parse_scheme(scheme: str, sparsity: float | None) -> tuple[NMScheme | None, float]:
    """("unstructured", s) -> (None, s); ("N:M", None or 1 - N/M) -> (the N:M scheme, 1 - N/M)."""
    if scheme == "unstructured":
        if sparsity is None or not 0.0 < float(sparsity) < 1.0:
            raise ValueError(f"unstructured pruning needs a sparsity in (0, 1), got {sparsity!r}")
        return None, float(sparsity)
    n, sep, m = scheme.partition(":")
    if not sep or not n.isdigit() or not m.isdigit():
        raise ValueError(f"scheme must be 'unstructured' or 'N:M' such as '2:4', got {scheme!r}")
    nm = make_scheme("nm", n=int(n), m=int(m))
    implied = 1.0 - nm.n / nm.m
    if sparsity is not None and abs(float(sparsity) - implied) > 1e-9:
        raise ValueError(f"scheme {scheme} means sparsity {implied}, got sparsity={sparsity}")
    return nm, implied


def decoder_blocks(model: nn.Module) -> tuple[str, nn.ModuleList]:
    """The decoder blocks and their path: the first of `BLOCK_PATHS` that is an nn.ModuleList."""
    for path in BLOCK_PATHS:
        try:
            blocks = model.get_submodule(path)
        except AttributeError:
            continue
        if isinstance(blocks, nn.ModuleList) and len(blocks) > 0:
            return path, blocks
    raise ValueError(f"cannot find the decoder blocks of {type(model).__name__}: none of {', '.join(BLOCK_PATHS)} "
                     "is a non-empty nn.ModuleList")


def select_linears(
    model: nn.Module, *, targets: Sequence[str] = ("*",), ignore: Sequence[str] = ("lm_head",)
) -> list[dict[str, nn.Linear]]:
    """Per decoder block, its nn.Linear layers (full names) matching a target and no ignore pattern.

    Every target pattern must match at least one decoder Linear, so a misspelt one is an error.
    """
    path, blocks = decoder_blocks(model)
    selected: list[dict[str, nn.Linear]] = []
    used = dict.fromkeys(targets, False)
    for index, block in enumerate(blocks):
        chosen = {}
        for local, module in block.named_modules():
            name = f"{path}.{index}.{local}"
            if not isinstance(module, nn.Linear):
                continue
            hits = [pattern for pattern in targets if fnmatch.fnmatchcase(name, pattern)]
            used.update(dict.fromkeys(hits, True))
            if hits and not any(fnmatch.fnmatchcase(name, pattern) for pattern in ignore):
                chosen[name] = module
        selected.append(chosen)
    unused = [pattern for pattern, hit in used.items() if not hit]
    if unused:
        raise ValueError(f"targets {unused} match no nn.Linear inside the decoder blocks ({path}.N.*)")
    return selected


@dataclass
class _BlockInput:
    """One calibration batch at a block's entry: the hidden states and the other call arguments."""

    args: tuple
    kwargs: dict

    def call(self, block: nn.Module) -> Tensor:
        output = block(*self.args, **self.kwargs)
        return output[0] if isinstance(output, (tuple, list)) else output

    def with_hidden(self, hidden: Tensor) -> _BlockInput:
        if self.args:
            return _BlockInput((hidden, *self.args[1:]), self.kwargs)
        return _BlockInput(self.args, {**self.kwargs, "hidden_states": hidden})


class _Captured(Exception):
    """Raised by the capture hook to stop the model after the first block's inputs are kept."""


def capture_block_inputs(model: nn.Module, first_block: nn.Module, calibration: Tensor, batch_size: int) -> list:
    """Run `model` on each batch of `calibration` token ids until `first_block` and keep its inputs."""
    kept: list[_BlockInput] = []

    def hook(module: nn.Module, args: tuple, kwargs: dict) -> None:
        kept.append(_BlockInput(tuple(args), dict(kwargs)))
        raise _Captured

    options = {"use_cache": False} if "use_cache" in inspect.signature(model.forward).parameters else {}
    device = next(model.parameters()).device
    handle = first_block.register_forward_pre_hook(hook, with_kwargs=True)
    try:
        for start in range(0, calibration.shape[0], batch_size):
            try:
                model(calibration[start : start + batch_size].to(device), **options)
            except _Captured:
                continue
            raise RuntimeError("the model finished without calling its first decoder block")
    finally:
        handle.remove()
    return kept


def _row_mask(scores: Tensor, nm: NMScheme | None, sparsity: float) -> Tensor:
    """Keep the highest scores of every row: N:M groups, or round((1 - sparsity) · cols) per row."""
    if nm is not None:
        return nm.make_mask(scores, None)
    cols = scores.shape[1]
    keep = round((1.0 - sparsity) * cols)
    if keep == cols:
        return torch.ones_like(scores, dtype=torch.bool)
    if keep == 0:
        raise ValueError(f"sparsity {sparsity} leaves no weight in rows of {cols} columns")
    return make_scheme("nm", n=keep, m=cols).make_mask(scores, None)  # one group per row: top-keep per row


def _prune_layer(layer: nn.Linear, criterion: str, nm: NMScheme | None, sparsity: float,
                 statistic: Tensor | None, damp: float, block_size: int) -> Tensor:
    """Prune one layer in place; `statistic` is its Hessian (sparsegpt) or input-feature norms (wanda)."""
    weight = layer.weight.detach()
    if criterion == "sparsegpt":
        new, mask = obs_prune_weight(
            weight, statistic, 1.0 - sparsity, damp=damp, method="sparsegpt", block=block_size,
            nm=None if nm is None else (nm.n, nm.m),
        )
    else:
        if criterion == "wanda":
            scores = wanda_scores(weight, statistic.to(weight.device))
        else:
            scores = get_criterion("magnitude").per_tensor(weight, None)
        mask = _row_mask(scores, nm, sparsity)
        new = weight * mask
    with torch.no_grad():
        layer.weight.copy_(new)
    return mask


def _block_statistics(block: nn.Module, layers: dict[str, nn.Linear], criterion: str,
                      inputs: list[_BlockInput]) -> dict[str, Tensor | None]:
    """Run the block on every kept input with hooks on `layers`; each layer's statistic (or None)."""
    if criterion not in _STATISTIC:
        return dict.fromkeys(layers)
    with InputStatistics(layers, _STATISTIC[criterion]) as stats:
        for item in inputs:
            item.call(block)
    return stats.hessians() if criterion == "sparsegpt" else stats.column_norms()


def prune_oneshot(
    model: nn.Module, calibration: Tensor, *, criterion: str = "wanda", scheme: str = "unstructured",
    sparsity: float | None = 0.5, targets: Sequence[str] = ("*",), ignore: Sequence[str] = ("lm_head",),
    batch_size: int = 1, damp: float = 0.01, block_size: int = 128, progress: str = "auto",
) -> OneShotResult:
    """Prune `model`'s decoder Linears in place, block by block, on `calibration` token ids (N, seq_len).

    `criterion`: magnitude, wanda or sparsegpt; `scheme`: "unstructured" (with `sparsity`) or "N:M"
    (sparsity implied); `targets` / `ignore`: fnmatch patterns on full layer names
    (``"*.mlp.*"``, ``"model.layers.0.*"``). `batch_size` sequences go through a block at once;
    `damp` and `block_size` are SparseGPT's dampening and mask-selection block. Runs without
    gradients in eval mode on the model's device; modes are restored after. Returns the masks.
    """
    if criterion not in CRITERIA:
        raise ValueError(f"unknown one-shot criterion {criterion!r}; choose one of {', '.join(CRITERIA)}")
    nm, sparsity = parse_scheme(scheme, sparsity)
    if calibration.dim() != 2 or calibration.dtype != torch.long or calibration.shape[0] == 0:
        raise ValueError(f"calibration must be (N >= 1, seq_len) int64 token ids, got {tuple(calibration.shape)} "
                         f"{calibration.dtype}")
    if not isinstance(batch_size, int) or batch_size < 1:
        raise ValueError(f"batch_size must be a positive integer, got {batch_size!r}")
    selected = select_linears(model, targets=targets, ignore=ignore)
    for name, layer in ((n, l) for layers in selected for n, l in layers.items()):
        if parametrize.is_parametrized(layer, "weight"):
            raise ValueError(f"layer {name!r} has a parametrized (masked) weight; prune a plain model one-shot")
        if nm is not None:
            nm.check_layer(name, layer)
    start_time = time.perf_counter()
    _, blocks = decoder_blocks(model)
    modes = {module: module.training for module in model.modules()}
    model.eval()
    masks: dict[str, Tensor] = {}
    try:
        with torch.no_grad():
            inputs = capture_block_inputs(model, blocks[0], calibration, batch_size)
            for block, layers in show_progress(list(zip(blocks, selected)), desc="one-shot blocks", mode=progress,
                                               unit="blocks"):
                statistics = _block_statistics(block, layers, criterion, inputs)
                for name, layer in layers.items():
                    masks[name] = _prune_layer(layer, criterion, nm, sparsity, statistics[name], damp, block_size)
                del statistics
                inputs = [item.with_hidden(item.call(block)) for item in inputs]  # the pruned block's outputs
    finally:
        for module, training in modes.items():
            module.training = training
    calibration_info = {"sequences": int(calibration.shape[0]), "seq_len": int(calibration.shape[1])}
    return OneShotResult(criterion, scheme, sparsity, masks, calibration_info, time.perf_counter() - start_time)
