"""Linear and Conv2d layers that hold only their nonzero weights.

`CompressedLayer` is what every layout shares (see `channels.py` for whole-channel layers).
The CSR layers keep their weight as a (rows x cols) CSR matrix: the `values` Parameter (1-D, one entry
per kept weight, so gradients and optimizer state are that size too) and int32 `crow_indices` /
`col_indices` buffers. The transposed structure needed by the backward pass is derived from them
and not saved, so a file holds values + indices only and its size follows the number of nonzeros.
"""

from __future__ import annotations

import math
from abc import ABC, abstractmethod

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from slimkit.compressed.functional import csr_matmul
from slimkit.compressed.structure import check_structure, from_linear, to_linear, transpose
from slimkit.sparse.units import SegmentUnits, UnitView


class CompressedLayer(nn.Module, ABC):
    """What every compressed layer shares: the full weight's shape, the kept weights as one 1-D
    `values` Parameter (in the order of their positions in the flattened weight, so gradients and
    optimizer state are that size too) and the bias.

    Subclasses say how kept weights are laid out and multiplied. What a *unit* is (the smallest
    group of weights that mutation keeps, drops or grows together) and how many a density keeps
    is the sparsity scheme's `unit_view` (`slimkit.sparse.units`): for CSR layers a weight, a row
    segment or a pattern kernel; for channel layers a channel. Prune-and-grow works on units, so
    it never builds a tensor of the dense weight's size.
    """

    #: the scheme's units of this layer's weight (set by subclasses)
    unit_view: UnitView

    #: the storage layout, recorded in model files so loading rebuilds the same layer kind
    layout: str = ""

    def __init__(self, weight_shape: tuple[int, ...], values: Tensor, bias: Tensor | None) -> None:
        super().__init__()
        self.weight_shape = tuple(int(s) for s in weight_shape)
        self.matrix_shape = (self.weight_shape[0], math.prod(self.weight_shape[1:]))
        self.values = nn.Parameter(values.detach().clone())
        if isinstance(bias, nn.Parameter):
            self.bias = bias  # the same Parameter: an optimizer holding it stays valid
        else:
            self.register_parameter("bias", None if bias is None else nn.Parameter(bias.detach().clone()))

    def _replace_values(self, values: Tensor, keep_parameter: bool) -> None:
        """Swap in new kept values. With `keep_parameter` the Parameter keeps its identity (its
        data is swapped), which is right when no autograd graph is alive (loading). During training
        a graph from the last step may still hold the parameter's gradient accumulator with the old
        size, so a resize then gets a new Parameter and the caller moves the optimizer to it."""
        values = values.to(self.values.device, self.values.dtype).contiguous()
        if keep_parameter or values.shape == self.values.shape:
            self.values.data = values
        else:
            self.values = nn.Parameter(values, requires_grad=self.values.requires_grad)

    # ---- what a layout defines ------------------------------------------------------------
    @abstractmethod
    def linear_indices(self) -> Tensor:
        """Sorted int64 positions of the kept weights in the flattened weight (conversion only)."""

    @abstractmethod
    def units(self) -> Tensor:
        """Sorted int64 ids of the kept units (ids of `unit_view`)."""

    @property
    def unit_count(self) -> int:
        """Number of units in the full weight."""
        return self.unit_view.count

    def kept_units(self, density: float) -> int:
        """Units kept at `density`: the scheme's rounding."""
        return self.unit_view.kept(density)

    @property
    def unit_size(self) -> int:
        """Weights per unit."""
        return self.unit_view.size

    def unit_means(self, tensor: Tensor) -> Tensor:
        """A values-shaped tensor averaged over each kept unit's weights, in units() order."""
        return self.unit_view.unit_rows(tensor).mean(1)

    def regroup(self, tensor: Tensor, survivors: Tensor, grown: int, order: Tensor) -> Tensor:
        """A values-shaped `tensor` for the units `survivors` (slots into units()) followed by
        `grown` new zero units, in the order `order`: how values and optimizer state follow a mutation."""
        rows = tensor.view(-1, self.unit_size)
        return torch.cat([rows[survivors], rows.new_zeros(grown, self.unit_size)])[order].flatten()

    @abstractmethod
    def set_units(self, units: Tensor, values: Tensor, *, keep_parameter: bool = True) -> None:
        """Keep exactly the sorted `units`, with `values` in position order."""

    # ---- shared ---------------------------------------------------------------------------
    @property
    def nnz(self) -> int:
        return self.values.numel()

    @property
    def weight_numel(self) -> int:
        return math.prod(self.weight_shape)

    @property
    def density(self) -> float:
        return self.nnz / self.weight_numel

    def count_nonzero(self) -> int:
        return int((self.values != 0).sum())

    def dense_weight(self) -> Tensor:
        """The full weight as a dense tensor: for conversion and export only, never in training."""
        full = self.values.detach().new_zeros(self.weight_numel)
        full[self.linear_indices()] = self.values.detach()
        return full.view(self.weight_shape)

    def dense_mask(self) -> Tensor:
        mask = torch.zeros(self.weight_numel, dtype=torch.bool, device=self.values.device)
        mask[self.linear_indices()] = True
        return mask.view(self.weight_shape)

    #: state-dict keys holding the structure beside `values`, and how to apply them
    structure_keys: tuple[str, ...] = ()

    @abstractmethod
    def _set_from_state(self, values: Tensor, structure: list[Tensor]) -> None:
        """Take `values` and the tensors of `structure_keys` from a state dict (checked)."""

    def _load_from_state_dict(self, state_dict, prefix, local_metadata, strict, missing_keys, unexpected_keys, error_msgs):
        """Take the stored structure's size (it changes during sparse training) after checking it."""
        keys = [prefix + key for key in ("values", *self.structure_keys)]
        if all(key in state_dict for key in keys):
            values, *structure = (state_dict[key] for key in keys)
            try:
                if values.dim() != 1:
                    raise ValueError(f"values must be 1-D, got shape {tuple(values.shape)}")
                self._set_from_state(values.detach(), structure)
            except ValueError as exc:
                error_msgs.append(f"compressed layer '{prefix.rstrip('.')}': {exc}")
                return
        super()._load_from_state_dict(state_dict, prefix, local_metadata, strict, missing_keys, unexpected_keys, error_msgs)

    def extra_repr(self) -> str:
        return (f"weight_shape={self.weight_shape}, layout={self.layout}, nnz={self.nnz}, "
                f"density={self.density:.4f}, bias={self.bias is not None}")


class CsrLayer(CompressedLayer):
    """Kept weights as a (rows x cols) CSR matrix: int32 `crow_indices` / `col_indices` buffers
    beside the values. A unit is one weight. Subclasses define how inputs become the dense operand."""

    layout = "csr"
    structure_keys = ("crow_indices", "col_indices")

    def __init__(self, weight_shape: tuple[int, ...], crow: Tensor, col: Tensor, values: Tensor, bias: Tensor | None):
        super().__init__(weight_shape, values, bias)
        check_structure(crow, col, self.matrix_shape, values.numel())
        self.unit_view: UnitView = SegmentUnits(self.weight_shape, 1)
        self.register_buffer("crow_indices", crow.clone())
        self.register_buffer("col_indices", col.clone())
        for name in ("t_crow", "t_col", "t_perm"):  # derived: not saved
            self.register_buffer(name, torch.empty(0, dtype=torch.int32), persistent=False)
        self._refresh_transpose()

    # ---- structure ------------------------------------------------------------------------
    def _refresh_transpose(self) -> None:
        t = transpose(self.crow_indices, self.col_indices, self.matrix_shape)
        self.t_crow, self.t_col, self.t_perm = t.crow, t.col, t.perm

    @torch.no_grad()
    def set_structure(self, crow: Tensor, col: Tensor, values: Tensor, *, keep_parameter: bool = True) -> None:
        """Replace the kept positions and their values (see `_replace_values` for `keep_parameter`)."""
        check_structure(crow, col, self.matrix_shape, values.numel())
        device = self.values.device
        self.crow_indices, self.col_indices = crow.to(device), col.to(device)
        self._replace_values(values, keep_parameter)
        self._refresh_transpose()

    def set_linear(self, linear: Tensor, values: Tensor, *, keep_parameter: bool = True) -> None:
        """Kept positions as sorted linear indices (row * cols + col)."""
        crow, col = from_linear(linear, self.matrix_shape)
        self.set_structure(crow, col, values, keep_parameter=keep_parameter)

    def _set_from_state(self, values: Tensor, structure: list[Tensor]) -> None:
        self.set_structure(*structure, values)

    def linear_indices(self) -> Tensor:
        return to_linear(self.crow_indices, self.col_indices, self.matrix_shape[1])

    # ---- units: the scheme's (single weights by default) -----------------------------------
    def use_units(self, view: UnitView) -> None:
        """Mutate by the units of `view` (a scheme's `units(weight_shape)`: aligned row segments
        for the block scheme, pattern kernels for the pattern scheme); raises unless the kept
        weights already form such units."""
        if view.shape != self.weight_shape:
            raise ValueError(f"a units view of shape {view.shape} for a weight of shape {self.weight_shape}")
        view.check(self.linear_indices())
        self.unit_view = view

    def units(self) -> Tensor:
        return self.unit_view.ids(self.linear_indices())

    def set_units(self, units: Tensor, values: Tensor, *, keep_parameter: bool = True) -> None:
        self.set_linear(self.unit_view.positions(units), values, keep_parameter=keep_parameter)

    def matmul(self, dense: Tensor) -> Tensor:
        """(weight as rows x cols) @ dense (cols x N)."""
        return csr_matmul(
            self.values, dense, self.crow_indices, self.col_indices, self.t_crow, self.t_col, self.t_perm,
            self.matrix_shape,
        )

    # ---- construction ---------------------------------------------------------------------
    @staticmethod
    def _parts(weight: Tensor, mask: Tensor) -> tuple[Tensor, Tensor, Tensor]:
        """CSR structure and values of `weight` at `mask` (conversion from the dense form)."""
        if mask.shape != weight.shape:
            raise ValueError(f"mask shape {tuple(mask.shape)} does not match weight shape {tuple(weight.shape)}")
        rows = weight.shape[0]
        linear = torch.nonzero(mask.reshape(rows, -1).flatten()).flatten()
        crow, col = from_linear(linear, (rows, mask[0].numel()))
        return crow, col, weight.detach().flatten()[linear]


class CompressedLinear(CsrLayer):
    """y = x W^T + b with W held compressed."""

    def __init__(self, in_features: int, out_features: int, crow: Tensor, col: Tensor, values: Tensor,
                 bias: Tensor | None = None) -> None:
        self.in_features, self.out_features = in_features, out_features
        super().__init__((out_features, in_features), crow, col, values, bias)

    @classmethod
    def from_linear(cls, module: nn.Linear, weight: Tensor, mask: Tensor) -> CompressedLinear:
        crow, col, values = cls._parts(weight, mask)
        return cls(module.in_features, module.out_features, crow, col, values, module.bias)

    def forward(self, x: Tensor) -> Tensor:
        if x.shape[-1] != self.in_features:
            raise ValueError(f"expected inputs with {self.in_features} features, got shape {tuple(x.shape)}")
        flat = x.reshape(-1, self.in_features)
        # The product works on (features x batch) activations and returns its (out x batch)
        # result as a transposed view: elementwise ops (bias, ReLU) keep those strides, so the
        # next compressed layer's `.contiguous()` is free, and so are the gradients' in backward.
        out = self.matmul(flat.transpose(0, 1).contiguous()).transpose(0, 1)
        if self.bias is not None:
            out = out + self.bias
        return out.reshape(*x.shape[:-1], self.out_features)


class CompressedConv2d(CsrLayer):
    """2-D convolution as im2col (F.unfold) + the compressed product. Groups must be 1.

    The unfolded input is kernel-size times larger than the input, which is what a dense im2col
    convolution also pays; the gain is in the product, which scales with the density.
    """

    def __init__(self, in_channels: int, out_channels: int, kernel_size: tuple[int, int], stride: tuple[int, int],
                 padding: tuple[int, int], dilation: tuple[int, int], crow: Tensor, col: Tensor, values: Tensor,
                 bias: Tensor | None = None) -> None:
        self.in_channels, self.out_channels = in_channels, out_channels
        self.kernel_size, self.stride, self.padding, self.dilation = kernel_size, stride, padding, dilation
        super().__init__((out_channels, in_channels, *kernel_size), crow, col, values, bias)

    @classmethod
    def supports(cls, module: nn.Module) -> bool:
        return (
            isinstance(module, nn.Conv2d) and module.groups == 1 and module.padding_mode == "zeros"
            and not isinstance(module.padding, str)
        )

    @classmethod
    def from_conv(cls, module: nn.Conv2d, weight: Tensor, mask: Tensor) -> CompressedConv2d:
        if not cls.supports(module):
            raise ValueError(
                "compressed Conv2d needs groups=1, zero padding given as numbers; "
                f"got groups={module.groups}, padding={module.padding!r}, padding_mode={module.padding_mode!r}"
            )
        crow, col, values = cls._parts(weight, mask)
        return cls(module.in_channels, module.out_channels, module.kernel_size, module.stride, module.padding,
                   module.dilation, crow, col, values, module.bias)

    def forward(self, x: Tensor) -> Tensor:
        if x.dim() != 4 or x.shape[1] != self.in_channels:
            raise ValueError(f"expected (N, {self.in_channels}, H, W) inputs, got shape {tuple(x.shape)}")
        batch, _, height, width = x.shape
        out_h, out_w = conv_output_size(self, height, width)
        columns = F.unfold(x, self.kernel_size, dilation=self.dilation, padding=self.padding, stride=self.stride)
        dense = columns.transpose(0, 1).reshape(self.matrix_shape[1], batch * out_h * out_w)
        out = self.matmul(dense).view(self.out_channels, batch, out_h * out_w).transpose(0, 1)
        out = out.reshape(batch, self.out_channels, out_h, out_w)
        if self.bias is not None:
            out = out + self.bias.view(1, -1, 1, 1)
        return out

    def extra_repr(self) -> str:
        return conv_repr(self) + super().extra_repr()


def conv_repr(layer: nn.Module) -> str:
    return f"stride={layer.stride}, padding={layer.padding}, dilation={layer.dilation}, "


def conv_output_size(layer: nn.Module, height: int, width: int) -> tuple[int, int]:
    """(out_h, out_w) of a Conv2d-like layer with numeric padding."""
    return tuple(
        (size + 2 * p - d * (k - 1) - 1) // s + 1
        for size, p, d, k, s in zip((height, width), layer.padding, layer.dilation, layer.kernel_size, layer.stride)
    )
