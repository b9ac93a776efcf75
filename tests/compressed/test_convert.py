"""compress(model) on models without masks: a model pruned elsewhere (its zeros folded into the
weights) is compressed where its zeros make the compressed form smaller, and a model with
nothing to compress is a clear error that says how to name layers."""

import logging

import pytest
import torch
from torch import nn

from slimkit.compressed import ChannelLinear, CompressedLinear, compress, compressed_layers
from slimkit.compressed.convert import saves_memory


def _pruned_mlp(densities=(0.1, 0.3, 1.0)):
    """Linear layers with exact zeros at the given densities (1.0: untouched), no masks."""
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(40, 30), nn.ReLU(), nn.Linear(30, 20), nn.ReLU(), nn.Linear(20, 5)).double()
    with torch.no_grad():
        for layer, density in zip(model[::2], densities):
            layer.weight.mul_(torch.rand(layer.weight.shape) < density)
    return model


def test_a_plain_pruned_model_is_compressed_where_it_pays(caplog):
    model = _pruned_mlp()
    x = torch.randn(8, 40, dtype=torch.float64)
    reference = model(x)
    with caplog.at_level(logging.INFO, logger="slimkit"):
        built = compress(model)
    assert sorted(built) == ["0", "2"]  # the dense head stays as it is
    assert isinstance(model[0], CompressedLinear) and isinstance(model[4], nn.Linear)
    assert torch.allclose(model(x), reference, rtol=0, atol=1e-12)
    assert "exact zeros" in caplog.text and "0, 2" in caplog.text


def test_kept_weights_are_the_nonzero_ones():
    model = _pruned_mlp()
    nonzero = int((model[0].weight != 0).sum())
    assert compress(model)["0"].nnz == nonzero


def test_a_model_without_zeros_or_masks_is_a_clear_error():
    model = _pruned_mlp(densities=(1.0, 0.8, 1.0))  # 80% dense: CSR would be larger
    with pytest.raises(ValueError, match=r"nothing to compress.*compress\(model, layers=\['0', '2', '4'\]\)"):
        compress(model)
    assert not compressed_layers(model)
    assert sorted(compress(model, ["2"])) == ["2"]  # named, it is compressed anyway
    assert compress(model) == {}  # nothing more to do on a compressed model is not an error


def test_a_plain_model_with_zeroed_channels_becomes_channel_layers():
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(12, 10), nn.ReLU(), nn.Linear(10, 3))
    with torch.no_grad():
        model[0].weight[::2] = 0  # half the output neurons removed
        model[0].weight[1, 3] = 0  # an exact zero inside a kept neuron stays a (kept) zero
    x = torch.randn(5, 12)
    reference = model(x)
    built = compress(model, layout="channel0")
    assert sorted(built) == ["0"] and isinstance(model[0], ChannelLinear)
    assert model[0].channels.tolist() == [1, 3, 5, 7, 9]
    assert torch.equal(model(x), reference)


def test_the_memory_rule():
    weight = torch.ones(10, 100)  # float32: a CSR value costs 4 + 4 bytes, a dense one 4
    mask = torch.zeros(10, 100, dtype=torch.bool)
    mask.view(-1)[:490] = True
    assert saves_memory(weight, mask, "csr")  # 490 * 8 + 11 * 4 < 4000
    mask.view(-1)[:500] = True
    assert not saves_memory(weight, mask, "csr")
    assert not saves_memory(weight, torch.ones_like(mask), "channel0")
    assert saves_memory(weight, torch.ones_like(mask).index_fill(0, torch.tensor([3]), False), "channel0")
