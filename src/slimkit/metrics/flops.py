"""FLOPs from torch.utils.flop_counter (which counts 2 FLOPs per multiply-accumulate).

Dense FLOPs are what torch's counter reports for one forward pass. Sparse FLOPs count only the
multiplications by nonzero weights: each weight of a Conv/Linear layer is used the same number of
times in a forward pass, so a layer's counted FLOPs scale exactly with its weight density.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import torch
from torch import nn
from torch.utils.flop_counter import FlopCounterMode

from slimkit.metrics.params import is_compressed, prunable_layers, weight_counts


@dataclass
class FlopReport:
    dense: int  # FLOPs (= 2 x MACs) of one forward pass at the given batch size
    sparse: int  # the same, counting only multiplications by nonzero weights
    per_layer: dict[str, tuple[int, int]] = field(default_factory=dict)  # name -> (dense, sparse)

    @property
    def macs_dense(self) -> int:
        return self.dense // 2


@torch.no_grad()
def count_flops(model: nn.Module, input_shape: tuple[int, ...], batch_size: int = 1) -> FlopReport:
    """Count forward FLOPs of `model` on a zero input of shape (batch_size, *input_shape)."""
    was_training = model.training
    model.eval()
    # torch's counter does not see sparse products: a compressed layer's dense-equivalent FLOPs
    # are 2 x (output elements) x (weight columns), read from its output in a hook.
    compressed_flops: dict[str, int] = {}

    def hook(name):
        def record(module, inputs, output):
            compressed_flops[name] = 2 * output.numel() * module.matrix_shape[1]
        return record

    layers = prunable_layers(model)
    handles = [m.register_forward_hook(hook(n)) for n, m in layers.items() if is_compressed(m)]
    try:
        param = next(model.parameters(), None)
        device = param.device if param is not None else torch.device("cpu")
        example = torch.zeros((batch_size, *input_shape), device=device)
        with FlopCounterMode(display=False) as counter:
            model(example)
    finally:
        model.train(was_training)
        for handle in handles:
            handle.remove()
    counts = counter.get_flop_counts()
    root = type(model).__name__
    dense = int(counter.get_total_flops()) + sum(compressed_flops.values())
    saved = 0
    per_layer = {}
    for name, module in layers.items():
        layer_flops = compressed_flops.get(name) or int(sum(counts.get(f"{root}.{name}", {}).values()))
        weights, nonzero = weight_counts(module)
        density = nonzero / weights
        sparse_layer = round(layer_flops * density)
        per_layer[name] = (layer_flops, sparse_layer)
        saved += layer_flops - sparse_layer
    return FlopReport(dense=dense, sparse=dense - saved, per_layer=per_layer)
