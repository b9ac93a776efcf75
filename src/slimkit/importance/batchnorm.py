"""Network Slimming's criterion: the scale γ of the BatchNorm that follows each layer."""

from __future__ import annotations

import torch
from torch import Tensor, nn
from torch.nn.modules.batchnorm import _BatchNorm
from torch.nn.modules.conv import _ConvTransposeNd

from slimkit.importance.data_free import magnitude
from slimkit.importance.registry import Scores, ScoringInputs, register_criterion
from slimkit.importance.scorer import check_layers


def _out_channels(layer: nn.Module) -> int:
    for attr in ("out_channels", "out_features"):
        if isinstance(getattr(layer, attr, None), int):
            return getattr(layer, attr)
    return layer.weight.shape[0]


def _matches(layer: nn.Module, bn: nn.Module) -> bool:
    return isinstance(bn, _BatchNorm) and bn.affine and bn.num_features == _out_channels(layer)


def _bn_pairs_traced(model: nn.Module, layers: dict[str, nn.Module]) -> dict[str, nn.Module]:
    """Pairs (layer, BN) where the BN's input is the layer's output in the torch.fx graph."""
    graph = torch.fx.Tracer().trace(model)
    modules = dict(model.named_modules())
    qualified = {id(module): name for name, module in modules.items()}
    scored = {qualified[id(layer)]: name for name, layer in layers.items()}
    pairs: dict[str, nn.Module] = {}
    for node in graph.nodes:
        if node.op != "call_module" or not node.args:
            continue
        source = node.args[0]
        if not isinstance(source, torch.fx.Node) or source.op != "call_module" or source.target not in scored:
            continue
        name, bn = scored[source.target], modules[node.target]
        if name not in pairs and _matches(layers[name], bn):
            pairs[name] = bn
    return pairs


def _bn_pairs_registered(model: nn.Module, layers: dict[str, nn.Module]) -> dict[str, nn.Module]:
    """Pairs (layer, BN) where the BN is the next computing module registered after the layer."""
    scored = {id(layer): name for name, layer in layers.items()}
    units = []  # leaf-like modules in registration order; containers and parametrization internals skipped
    for qualified, module in model.named_modules():
        if "parametrizations" in qualified.split("."):
            continue
        children = [child for child, _ in module.named_children() if child != "parametrizations"]
        if id(module) in scored or isinstance(module, _BatchNorm) or not children:
            units.append(module)
    pairs = {}
    for module, following in zip(units, units[1:]):
        name = scored.get(id(module))
        if name is not None and _matches(module, following):
            pairs[name] = following
    return pairs


def _following_batchnorms(model: nn.Module, layers: dict[str, nn.Module]) -> dict[str, nn.Module]:
    try:
        return _bn_pairs_traced(model, layers)
    except Exception:  # noqa: BLE001 - fx raises many error types on untraceable Python control flow
        return _bn_pairs_registered(model, layers)


def _broadcast_channels(values: Tensor, layer: nn.Module) -> Tensor:
    """Spread one value per output channel over every weight feeding that channel."""
    weight = layer.weight
    trailing = [1] * (weight.dim() - 2)
    if isinstance(layer, _ConvTransposeNd):  # weight is (in, out // groups, *kernel)
        inputs, per_group = weight.shape[0], weight.shape[1]
        group = torch.arange(inputs, device=values.device) // (inputs // layer.groups)
        channel = group[:, None] * per_group + torch.arange(per_group, device=values.device)[None, :]
        return values[channel].reshape(inputs, per_group, *trailing).expand(weight.shape).clone()
    return values.reshape(-1, 1, *trailing).expand(weight.shape).clone()


@register_criterion("bn_gamma")
def bn_gamma(model: nn.Module, layers: dict[str, nn.Module], inputs: ScoringInputs) -> Scores:
    """|γ| of the BatchNorm right after each layer, per output channel (Network Slimming, Liu et al. 2017).

    A channel whose BN scale γ is ~0 is switched off whatever its weights are, so |γ| ranks the
    channel's importance; every weight feeding a channel gets that channel's |γ|. The BN is the
    one consuming the layer's output directly in the torch.fx graph; if the model cannot be
    traced, it is the BN registered right after the layer with matching num_features. Layers with
    no such (affine) BN fall back to magnitude scores |w|, which are on another scale: compare
    scores across such layers only with layer-wise (not global) thresholds.
    """
    check_layers(model, layers)
    pairs = _following_batchnorms(model, layers)
    scores = magnitude(model, layers, inputs)
    with torch.no_grad():
        for name, bn in pairs.items():
            scores[name] = _broadcast_channels(bn.weight.detach().abs(), layers[name])
    return scores
