"""resize.replace_tensors: smaller tensors in, layer widths and declared width attributes synced."""

import torch
from torch import nn

from slimkit.structured.resize import replace_tensors, sync_width_attributes
from slimkit.structured.trace.registry import WIDTH_ATTRIBUTES


def test_replaced_tensors_keep_their_kind_and_resync_layer_widths():
    model = nn.Sequential(nn.Conv2d(3, 8, 3, groups=1), nn.BatchNorm2d(8), nn.Conv2d(8, 8, 3, groups=4))
    model[0].bias.requires_grad_(False)
    replace_tensors(model, {
        "0.weight": torch.zeros(4, 3, 3, 3), "0.bias": torch.zeros(4),
        "1.weight": torch.ones(4), "1.running_mean": torch.zeros(4),
        "2.weight": torch.zeros(4, 2, 3, 3),
    })
    assert (model[0].out_channels, model[1].num_features) == (4, 4)
    assert isinstance(model[0].bias, nn.Parameter) and not model[0].bias.requires_grad
    assert "running_mean" in dict(model[1].named_buffers()) and model[1].weight.requires_grad
    assert (model[2].groups, model[2].in_channels, model[2].out_channels) == (2, 4, 4)  # whole groups went


def test_declared_width_attributes_follow_their_parameter(monkeypatch):
    class Block(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.proj, self.width = nn.Linear(4, 8), 8

    monkeypatch.setitem(WIDTH_ATTRIBUTES, Block, {"width": "proj.weight"})
    block = Block()
    replace_tensors(block, {"proj.weight": torch.zeros(5, 4), "proj.bias": torch.zeros(5)})
    sync_width_attributes(block)
    assert block.width == 5 and block.proj.out_features == 5
