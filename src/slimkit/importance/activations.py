"""Statistics of the inputs each layer sees on calibration data, collected with forward hooks.

Layer-wise criteria need, for every pruned layer, a summary of the rows X its weight multiplies
(Linear: the input features of every token or example; Conv2d: the unfolded patches, ordered like
``weight.reshape(out, -1)``): OBS/SparseGPT the Gram matrix Σ x xᵀ, Wanda the squared column norms
Σ x_j². `InputStatistics` collects either, in float64, for any forward pass run inside it: a whole
model (`run_calibration`) or one decoder block at a time (`slimkit.lm.oneshot`).
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator, Sequence

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from slimkit.importance.scorer import check_batch, check_num_batches, model_device
from slimkit.utils.progress import Progress

KINDS = ("gram", "sumsq")


def check_supported(name: str, layer: nn.Module) -> None:
    """Layer-wise statistics are defined for nn.Linear and ungrouped nn.Conv2d."""
    if isinstance(layer, nn.Conv2d):
        if layer.groups != 1:
            raise ValueError(f"layer {name!r} is a grouped convolution (groups={layer.groups}); OBS supports groups=1")
    elif not isinstance(layer, nn.Linear):
        raise ValueError(f"layer {name!r} is a {type(layer).__name__}; OBS supports nn.Linear and nn.Conv2d")


def input_rows(layer: nn.Module, x: Tensor) -> Tensor:
    """The layer's input as rows that the flattened weight multiplies: (rows, weight[0].numel())."""
    if isinstance(layer, nn.Linear):
        return x.reshape(-1, layer.in_features)
    if x.dim() == 3:  # unbatched (C, H, W)
        x = x.unsqueeze(0)
    mode = "constant" if layer.padding_mode == "zeros" else layer.padding_mode
    x = F.pad(x, layer._reversed_padding_repeated_twice, mode=mode)  # covers int, 'same' and 'valid' padding
    patches = F.unfold(x, layer.kernel_size, dilation=layer.dilation, stride=layer.stride)  # (N, C*kh*kw, L)
    return patches.transpose(1, 2).reshape(-1, patches.shape[1])


class InputStatistics:
    """Forward hooks that sum, per layer, Σ x xᵀ (``kind="gram"``) or Σ x_j² per column (``"sumsq"``).

    Use as a context manager: the hooks live inside the ``with`` block, and every forward pass of
    the layers run there is counted. Sums and the row count are float64 / int per layer name.
    """

    def __init__(self, layers: dict[str, nn.Module], kind: str = "gram") -> None:
        if kind not in KINDS:
            raise ValueError(f"kind must be one of {', '.join(KINDS)}, got {kind!r}")
        for name, layer in layers.items():
            check_supported(name, layer)
        self.layers, self.kind = layers, kind
        self.sums: dict[str, Tensor] = {}
        self.counts = dict.fromkeys(layers, 0)
        self._handles: list[torch.utils.hooks.RemovableHandle] = []

    def _hook_for(self, name: str, layer: nn.Module) -> Callable[[nn.Module, tuple, Tensor], None]:
        def hook(module: nn.Module, args: tuple, output: Tensor) -> None:
            rows = input_rows(layer, args[0].detach()).double()
            value = rows.T @ rows if self.kind == "gram" else rows.square().sum(0)
            self.sums[name] = self.sums[name] + value if name in self.sums else value
            self.counts[name] += rows.shape[0]

        return hook

    def __enter__(self) -> InputStatistics:
        self._handles = [layer.register_forward_hook(self._hook_for(name, layer)) for name, layer in self.layers.items()]
        return self

    def __exit__(self, *exc: object) -> None:
        for handle in self._handles:
            handle.remove()
        self._handles = []

    def _check_seen(self) -> None:
        missing = [name for name, count in self.counts.items() if count == 0]
        if missing:
            raise ValueError(f"layers {missing} received no input during calibration")

    def hessians(self) -> dict[str, Tensor]:
        """H = 2/N Σ x xᵀ per layer (needs ``kind="gram"``)."""
        if self.kind != "gram":
            raise ValueError("hessians need kind='gram'")
        self._check_seen()
        return {name: self.sums[name] * (2.0 / self.counts[name]) for name in self.layers}

    def column_norms(self) -> dict[str, Tensor]:
        """‖X_j‖₂ per input column j, over every row seen (float64)."""
        self._check_seen()
        squares = (s.diagonal() if self.kind == "gram" else s for s in (self.sums[n] for n in self.layers))
        return {name: value.sqrt() for name, value in zip(self.layers, squares)}


def _calibration_inputs(
    batches: Iterable[Sequence[Tensor]], num_batches: int, device: torch.device
) -> Iterator[Tensor]:
    check_num_batches(num_batches)
    for index, batch in enumerate(batches):
        if index == num_batches:
            return
        check_batch(batch)
        yield batch[0].to(device)


def run_in_eval_mode(model: nn.Module, inputs: Iterable[Tensor], task: Progress | None = None) -> int:
    """Forward every input without gradients in eval mode, restoring each module's own mode after."""
    modes = {module: module.training for module in model.modules()}
    model.eval()
    count = 0
    try:
        with torch.no_grad():
            for x in inputs:
                model(x)
                count += 1
                if task is not None:
                    task.update()
    finally:
        for module, training in modes.items():
            module.training = training
    return count


def run_calibration(
    model: nn.Module, batches: Iterable[Sequence[Tensor]], *, num_batches: int, desc: str, progress: str = "auto"
) -> int:
    """Forward the inputs of the first `num_batches` batches (eval mode, no grad); fails on no batch."""
    total = min(num_batches, len(batches)) if hasattr(batches, "__len__") else num_batches
    with Progress(total, desc, mode=progress, unit="batches") as task:
        count = run_in_eval_mode(model, _calibration_inputs(batches, num_batches, model_device(model)), task)
    if count == 0:
        raise ValueError(f"batches is empty: {desc} needs calibration data")
    return count
