"""Quantization-aware training as a `Trainer` callback, exported to the same int8 QDQ ONNX artefact
as static PTQ.

What is simulated (fake-quant, straight-through estimator; `slimkit.quant.qparams`):
- weights of every Conv/Linear: int8 symmetric per output channel, from the weight's own min/max
  (exactly ORT's per-channel weight formula, so export reproduces the trained codes);
- the input of every Conv/Linear: per-tensor uint8, range observed as an exponential moving
  average of batch min/max (Jacob et al. 2018), frozen after `freeze_observers_epoch` epochs;
- BatchNorm folded into the preceding conv before training (`slimkit.quant.bn_fold`).

Build the callback BEFORE the Trainer: folding may give a conv a new bias parameter, and the
Trainer's optimizer must see it. Weight fake-quant is a `torch.nn.utils.parametrize`
parametrization, registered after any sparsity mask, so a pruned weight's zeros stay exact zeros.
"""

from __future__ import annotations

import copy
from pathlib import Path
from typing import Any, Iterable

import torch
from torch import nn
from torch.nn.utils import parametrize

from slimkit.export.onnx import export_onnx
from slimkit.metrics.params import prunable_layers
from slimkit.sparse.masking import bake_mask
from slimkit.quant.bn_fold import fold_batchnorm
from slimkit.quant.ptq import QuantizeResult, quantize_static_onnx
from slimkit.quant.qparams import Grid, activation_grid, fake_quantize, per_channel_weight_qparams, scale_zero_point, weight_grid
from slimkit.train.callbacks import Callback


class WeightFakeQuant(nn.Module):
    """Parametrization: per-output-channel symmetric fake-quant of a weight."""

    def __init__(self, grid: Grid) -> None:
        super().__init__()
        self.grid = grid
        self.enabled = True

    def forward(self, weight: torch.Tensor) -> torch.Tensor:
        if not self.enabled:
            return weight
        scale, zero_point = per_channel_weight_qparams(weight, self.grid)
        return fake_quantize(weight, scale, zero_point, self.grid, axis=0)


class ActivationObserver(nn.Module):
    """EMA min/max of a tensor, and fake-quant of it on that range."""

    def __init__(self, grid: Grid, momentum: float = 0.01) -> None:
        super().__init__()
        if not 0 < momentum <= 1:
            raise ValueError(f"observer momentum must be in (0, 1], got {momentum}")
        self.grid, self.momentum = grid, momentum
        self.observing = True
        self.register_buffer("rmin", torch.zeros(()))
        self.register_buffer("rmax", torch.zeros(()))
        self.register_buffer("initialized", torch.zeros((), dtype=torch.bool))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.training and self.observing:
            with torch.no_grad():
                lo, hi = x.min().float(), x.max().float()
                if not bool(self.initialized):
                    self.rmin.copy_(lo), self.rmax.copy_(hi), self.initialized.fill_(True)
                else:
                    self.rmin.lerp_(lo, self.momentum), self.rmax.lerp_(hi, self.momentum)
        if not bool(self.initialized):
            return x
        scale, zero_point = scale_zero_point(self.rmin, self.rmax, self.grid)
        return fake_quantize(x, scale, zero_point, self.grid)


class QAT(Callback):
    """Fake-quant training of `model` (modified in place when the callback is built)."""

    def __init__(
        self, model: nn.Module, *, reduce_range: bool = True, activation_dtype: str = "uint8", momentum: float = 0.01,
        freeze_observers_epoch: int | None = None, fold_bn: bool = True,
    ) -> None:
        self.model = model
        self.settings = dict(reduce_range=reduce_range, activation_dtype=activation_dtype)
        self.freeze_observers_epoch = freeze_observers_epoch
        self.folded = fold_batchnorm(model) if fold_bn else []
        self.layers = prunable_layers(model)
        if not self.layers:
            raise ValueError(f"{type(model).__name__} has no Conv/Linear layer to quantize")
        self.observers: dict[str, ActivationObserver] = {}
        self._hooks = []
        for name, layer in self.layers.items():
            parametrize.register_parametrization(layer, "weight", WeightFakeQuant(weight_grid(reduce_range)), unsafe=True)
            observer = ActivationObserver(activation_grid(activation_dtype), momentum)
            param = next(layer.parameters())
            self.observers[name] = observer.to(param.device)
            self._hooks.append(layer.register_forward_pre_hook(self._quantize_input(name)))

    def _quantize_input(self, name: str):
        def hook(module: nn.Module, args: tuple[Any, ...]):
            observer = self.observers[name]
            observer.train(module.training)
            return (observer(args[0]), *args[1:])

        return hook

    def on_epoch_start(self, trainer, epoch: int) -> None:
        observing = self.freeze_observers_epoch is None or epoch < self.freeze_observers_epoch
        for observer in self.observers.values():
            observer.observing = observing

    def activation_ranges(self) -> dict[str, tuple[float, float]]:
        """{layer name: (rmin, rmax)} of each Conv/Linear input as observed."""
        return {name: (float(o.rmin), float(o.rmax)) for name, o in self.observers.items() if bool(o.initialized)}

    def state_dict(self) -> dict[str, Any]:
        return {name: o.state_dict() for name, o in self.observers.items()}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        for name, observer_state in state.items():
            self.observers[name].load_state_dict(observer_state)

    def float_model(self) -> nn.Module:
        """A plain copy of the trained model: folded weights (masks applied), no fake-quant, no hooks."""
        clean = copy.deepcopy(self.model)
        for layer in prunable_layers(clean).values():
            layer._forward_pre_hooks.clear()
            if parametrize.is_parametrized(layer, "weight"):
                for p in layer.parametrizations.weight:
                    if isinstance(p, WeightFakeQuant):
                        p.enabled = False
                # Not remove_parametrizations: it edits the parametrized class, which this copy
                # shares with the live model, so a second call (or the model itself) would break.
                bake_mask(layer)
        return clean


def _onnx_layer_inputs(onnx_path: Path, layer_names: Iterable[str]) -> dict[str, str]:
    """{layer name: name of its input tensor in the ONNX graph}, matched through the weight
    initializer names the exporter keeps (`<layer>.weight`)."""
    import onnx

    wanted = {f"{name}.weight": name for name in layer_names}
    found = {}
    for node in onnx.load(str(onnx_path)).graph.node:
        if node.op_type in ("Conv", "Gemm", "MatMul") and len(node.input) > 1 and node.input[1] in wanted:
            found[wanted[node.input[1]]] = node.input[0]
    return found


def export_qat(
    callback: QAT, example_input: torch.Tensor, fp32_path: str | Path, int8_path: str | Path, loader: Iterable, *,
    calib_batches: int = 8, progress: str = "auto",
) -> QuantizeResult:
    """Write the QAT model as fp32 ONNX and as int8 QDQ ONNX with the ranges learned in training.

    Conv/Linear inputs get the observed QAT ranges; tensors QAT did not simulate (outputs before
    the next layer's input) are calibrated min-max on `calib_batches` batches of `loader`.
    """
    ranges = callback.activation_ranges()
    if not ranges:
        raise ValueError("QAT observers have seen no data yet: train (or run a forward pass in train mode) first")
    fp32_path = export_onnx(callback.float_model(), example_input, fp32_path)
    tensors = _onnx_layer_inputs(fp32_path, ranges)
    overrides = {tensors[name]: [{"rmin": torch.tensor(lo).numpy(), "rmax": torch.tensor(hi).numpy()}]
                 for name, (lo, hi) in ranges.items() if name in tensors}
    result = quantize_static_onnx(
        fp32_path, int8_path, loader, calib_batches=calib_batches, calibration="minmax", tensor_overrides=overrides,
        progress=progress, **callback.settings,
    )
    result.mode = "qat"
    result.settings["qat_overridden_tensors"] = len(overrides)
    return result
