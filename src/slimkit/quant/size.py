"""Storage of a (pruned) model's weights in fp32, dense int8 and sparse int8.

Deep Compression (Han et al. 2016) stores pruned, quantized layers as values + indices. Here the
sparse int8 forms are: values (1 byte per nonzero) with either int32 CSR indices (4 bytes per
nonzero + 4 per row pointer, what slimkit's compressed layers use) or a 1-bit occupancy mask
(numel / 8 bytes), plus one fp32 scale per output channel. The smaller index form is reported
as `sparse_int8_bytes`. Biases and other parameters stay fp32 in every form.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

import torch
from torch import nn

from slimkit.metrics.params import is_compressed, prunable_layers, weight_counts, weight_shape


@dataclass
class SizeReport:
    weights_total: int
    weights_nonzero: int
    fp32_bytes: int
    int8_dense_bytes: int
    int8_sparse_csr_bytes: int
    int8_sparse_bitmask_bytes: int

    @property
    def sparse_int8_bytes(self) -> int:
        return min(self.int8_sparse_csr_bytes, self.int8_sparse_bitmask_bytes)

    def as_dict(self) -> dict[str, int | float]:
        data: dict[str, int | float] = asdict(self)
        data["sparse_int8_bytes"] = self.sparse_int8_bytes
        data["fp32_over_sparse_int8"] = self.fp32_bytes / max(self.sparse_int8_bytes, 1)
        return data


def size_report(model: nn.Module) -> SizeReport:
    """Bytes of the model in each storage form (prunable Conv/Linear weights get int8 forms)."""
    total = nonzero = stored = 0
    int8_dense = csr = bitmask = 0
    for module in prunable_layers(model).values():
        numel, nnz = weight_counts(module)  # compressed layers count without densifying
        rows = weight_shape(module)[0]
        total += numel
        nonzero += nnz
        stored += module.values.numel() if is_compressed(module) else numel
        scales = 4 * rows
        int8_dense += numel + scales
        csr += nnz + 4 * nnz + 4 * (rows + 1) + scales
        bitmask += nnz + (numel + 7) // 8 + scales
    other = sum(
        t.numel() * t.element_size() for t in model.state_dict().values() if t.is_floating_point()
    ) - 4 * stored  # fp32 bytes of everything that is not a prunable weight
    other = max(other, 0)
    fp32 = 4 * total + other
    return SizeReport(total, nonzero, fp32, int8_dense + other, csr + other, bitmask + other)


def int8_weights(onnx_path) -> dict[str, "torch.Tensor"]:
    """The int8 weight initializers of a QDQ / dynamic ONNX model, by initializer name."""
    import onnx
    from onnx import numpy_helper

    graph = onnx.load(str(onnx_path)).graph
    return {
        t.name: torch.from_numpy(numpy_helper.to_array(t).copy())
        for t in graph.initializer
        if t.data_type == onnx.TensorProto.INT8 and len(t.dims) >= 2
    }
