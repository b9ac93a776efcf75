"""Channel layers: a physically smaller dense weight holding only the kept channels.

Under the channel scheme whole output filters/neurons (dim 0) or whole input channels (dim 1)
are kept or removed. Their compressed form is therefore not a sparse matrix but a smaller dense
one: `values` is the kept channels' weights flattened ((kept, in, kh, kw) for dim 0,
(out, kept, kh, kw) for dim 1, which is also the order of their positions in the full weight) and
`channels` lists the kept channel ids. Forward and backward are ordinary dense convolutions /
matmuls on that smaller weight, so time, weight memory, gradients and optimizer state all shrink
with the density, and mutation can still grow any removed channel back.

- dim 0: y = conv(x, W_kept) scattered into the kept output channels; removed ones carry the
  bias only, exactly as a masked layer's would.
- dim 1: the kept input channels are gathered from x, then conv(x_kept, W_kept).
"""

from __future__ import annotations


import torch
import torch.nn.functional as F
from torch import Tensor, nn

from slimkit.compressed.layers import CompressedLayer, conv_output_size, conv_repr
from slimkit.sparse.units import ChannelUnits


def check_channels(channels: Tensor, count: int, values: int, unit_size: int) -> None:
    """Raise ValueError unless `channels` is a valid sorted list of kept channels for `values` weights."""
    if channels.dtype != torch.int64 or channels.dim() != 1:
        raise ValueError(f"channels must be a 1-D int64 tensor, got {channels.dtype} of shape {tuple(channels.shape)}")
    if channels.numel() == 0:
        raise ValueError("a channel layer needs at least one kept channel")
    if int(channels.min()) < 0 or int(channels.max()) >= count:
        raise ValueError(f"channels out of range: must lie in [0, {count}), got [{int(channels.min())}, {int(channels.max())}]")
    if bool((channels[1:] <= channels[:-1]).any()):
        raise ValueError("channels must be strictly increasing (sorted, no duplicates)")
    if values != channels.numel() * unit_size:
        raise ValueError(f"{values} values for {channels.numel()} channels of {unit_size} weights each")


class ChannelLayer(CompressedLayer):
    """Shared storage of whole-channel layers; a unit is one channel along `dim`."""

    structure_keys = ("channels",)

    def __init__(self, weight_shape: tuple[int, ...], dim: int, channels: Tensor, values: Tensor, bias: Tensor | None):
        if dim not in (0, 1):
            raise ValueError(f"a channel layer keeps output (dim 0) or input (dim 1) channels, got dim={dim!r}")
        self.dim = dim
        super().__init__(weight_shape, values, bias)
        self.unit_view = ChannelUnits(self.weight_shape, dim)
        check_channels(channels, self.unit_count, values.numel(), self.unit_size)
        self.register_buffer("channels", channels.clone())

    @property
    def layout(self) -> str:  # type: ignore[override]
        return f"channel{self.dim}"

    @property
    def inner(self) -> int:
        """Weights per (output, input) channel pair: kh * kw for a conv, 1 for a Linear."""
        return self.unit_view.inner

    def kept_weight(self) -> Tensor:
        """The kept channels' weights, shaped like a (smaller) weight of this layer."""
        shape = list(self.weight_shape)
        shape[self.dim] = self.channels.numel()
        return self.values.view(shape)

    # ---- structure ------------------------------------------------------------------------
    @torch.no_grad()
    def set_units(self, units: Tensor, values: Tensor, *, keep_parameter: bool = True) -> None:
        units = units.to(self.values.device, torch.int64)
        check_channels(units, self.unit_count, values.numel(), self.unit_size)
        self.channels = units
        self._replace_values(values, keep_parameter)

    def _set_from_state(self, values: Tensor, structure: list[Tensor]) -> None:
        self.set_units(structure[0], values)

    def units(self) -> Tensor:
        return self.channels

    def linear_indices(self) -> Tensor:
        return self.unit_view.positions(self.channels)

    def regroup(self, tensor: Tensor, survivors: Tensor, grown: int, order: Tensor) -> Tensor:
        if self.dim == 0:
            return super().regroup(tensor, survivors, grown, order)
        blocks = tensor.view(self.weight_shape[0], -1, self.inner)
        zeros = blocks.new_zeros(self.weight_shape[0], grown, self.inner)
        return torch.cat([blocks[:, survivors], zeros], 1)[:, order].flatten()

    # ---- construction ---------------------------------------------------------------------
    @staticmethod
    def _parts(weight: Tensor, mask: Tensor, dim: int) -> tuple[Tensor, Tensor]:
        """(kept channels, their values) of `weight` under a whole-channel `mask`."""
        if mask.shape != weight.shape:
            raise ValueError(f"mask shape {tuple(mask.shape)} does not match weight shape {tuple(weight.shape)}")
        per_channel = mask.movedim(dim, 0).reshape(mask.shape[dim], -1)
        kept = per_channel.all(1)
        partial = (per_channel.any(1) & ~kept).nonzero()
        if partial.numel():
            what = "output" if dim == 0 else "input"
            raise ValueError(f"the mask keeps part of {what} channel {int(partial[0])}: a channel layer needs whole channels")
        channels = kept.nonzero().flatten()
        return channels, weight.detach().index_select(dim, channels).flatten()

    def extra_repr(self) -> str:
        return f"kept {self.channels.numel()} of {self.unit_count} channels (dim {self.dim}), " + super().extra_repr()


class ChannelLinear(ChannelLayer):
    """A Linear layer keeping only some output neurons (dim 0) or input features (dim 1)."""

    def __init__(self, in_features: int, out_features: int, dim: int, channels: Tensor, values: Tensor,
                 bias: Tensor | None = None) -> None:
        self.in_features, self.out_features = in_features, out_features
        super().__init__((out_features, in_features), dim, channels, values, bias)

    @classmethod
    def from_linear(cls, module: nn.Linear, weight: Tensor, mask: Tensor, dim: int) -> ChannelLinear:
        channels, values = cls._parts(weight, mask, dim)
        return cls(module.in_features, module.out_features, dim, channels, values, module.bias)

    def forward(self, x: Tensor) -> Tensor:
        if x.shape[-1] != self.in_features:
            raise ValueError(f"expected inputs with {self.in_features} features, got shape {tuple(x.shape)}")
        weight = self.kept_weight()
        if self.dim == 1:
            return F.linear(x.index_select(-1, self.channels), weight, self.bias)
        kept = F.linear(x, weight)
        out = kept.new_zeros(*x.shape[:-1], self.out_features).index_copy_(-1, self.channels, kept)
        return out if self.bias is None else out + self.bias


class ChannelConv2d(ChannelLayer):
    """A Conv2d keeping only some output filters (dim 0) or input channels (dim 1). Groups must be 1."""

    def __init__(self, in_channels: int, out_channels: int, kernel_size: tuple[int, int], stride: tuple[int, int],
                 padding: tuple[int, int], dilation: tuple[int, int], dim: int, channels: Tensor, values: Tensor,
                 bias: Tensor | None = None) -> None:
        self.in_channels, self.out_channels = in_channels, out_channels
        self.kernel_size, self.stride, self.padding, self.dilation = kernel_size, stride, padding, dilation
        super().__init__((out_channels, in_channels, *kernel_size), dim, channels, values, bias)

    @classmethod
    def from_conv(cls, module: nn.Conv2d, weight: Tensor, mask: Tensor, dim: int) -> ChannelConv2d:
        channels, values = cls._parts(weight, mask, dim)
        return cls(module.in_channels, module.out_channels, module.kernel_size, module.stride, module.padding,
                   module.dilation, dim, channels, values, module.bias)

    def forward(self, x: Tensor) -> Tensor:
        if x.dim() != 4 or x.shape[1] != self.in_channels:
            raise ValueError(f"expected (N, {self.in_channels}, H, W) inputs, got shape {tuple(x.shape)}")
        weight = self.kept_weight()
        if self.dim == 1:
            return F.conv2d(x.index_select(1, self.channels), weight, self.bias, self.stride, self.padding, self.dilation)
        kept = F.conv2d(x, weight, None, self.stride, self.padding, self.dilation)
        out_h, out_w = conv_output_size(self, x.shape[2], x.shape[3])
        out = kept.new_zeros(x.shape[0], self.out_channels, out_h, out_w).index_copy_(1, self.channels, kept)
        return out if self.bias is None else out + self.bias.view(1, -1, 1, 1)

    def extra_repr(self) -> str:
        return conv_repr(self) + super().extra_repr()
