"""Sequential one-shot pruning of a tiny random Llama: masks, dense leftovers, and the block-by-block path."""

import copy

import pytest
import torch
from torch import nn

from slimkit.importance import ScoringInputs, collect_input_norms
from slimkit.lm import as_batches, prune_oneshot, select_linears
from slimkit.sparse import make_scheme

LINEARS = ("q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj")
MLP = ("gate_proj", "up_proj", "down_proj")


def _dense_params(model):
    return {name: p.detach().clone() for name, p in model.named_parameters() if "layers" not in name or "norm" in name}


@pytest.mark.parametrize("criterion,sparsity", [("magnitude", 0.5), ("wanda", 0.6), ("wanda", 0.7), ("sparsegpt", 0.5)])
def test_unstructured_keeps_the_same_count_in_every_row(tiny_llama, calibration, criterion, sparsity):
    model = tiny_llama()
    dense = _dense_params(model)
    result = prune_oneshot(model, calibration, criterion=criterion, sparsity=sparsity, batch_size=4, progress="none")
    assert sorted(result.masks) == sorted(
        f"model.layers.{i}.{'mlp' if name in MLP else 'self_attn'}.{name}" for i in range(2) for name in LINEARS
    )
    for name, mask in result.masks.items():
        weight = model.get_submodule(name).weight
        keep = round((1 - sparsity) * weight.shape[1])
        assert (mask.sum(1) == keep).all(), name
        assert torch.equal(weight != 0, mask), name  # pruned weights are exact zeros, kept ones are not
    for name, value in dense.items():  # embeddings, lm_head and the norms are untouched
        assert torch.equal(dict(model.named_parameters())[name], value), name
    assert result.to_dict()["calibration"] == {"sequences": 8, "seq_len": 16}


@pytest.mark.parametrize("criterion,scheme", [("wanda", "2:4"), ("magnitude", "4:8"), ("sparsegpt", "2:4")])
def test_nm_gives_the_pattern_in_every_pruned_linear(tiny_llama, calibration, criterion, scheme):
    model = tiny_llama()
    dense = _dense_params(model)
    result = prune_oneshot(model, calibration, criterion=criterion, scheme=scheme, batch_size=8, progress="none")
    n, m = (int(part) for part in scheme.split(":"))
    pattern = make_scheme("nm", n=n, m=m)
    assert len(result.masks) == 14 and result.sparsity == 1 - n / m
    for name, mask in result.masks.items():
        pattern.validate(mask)
        assert torch.equal(model.get_submodule(name).weight != 0, mask), name
    assert all(torch.equal(dict(model.named_parameters())[name], value) for name, value in dense.items())


def _wanda_masks(layers, norms):
    """Half of every row, by |W| · ‖X_j‖₂ (no ties in random floats)."""
    masks = {}
    for name, layer in layers.items():
        scores = layer.weight.detach().abs().double() * norms[name]
        keep = scores.shape[1] // 2
        masks[name] = torch.zeros_like(scores, dtype=torch.bool).scatter_(1, scores.topk(keep, dim=1).indices, True)
    return masks


def test_block_1_is_calibrated_on_what_the_pruned_block_0_outputs(tiny_llama, calibration):
    model = tiny_llama()
    reference, unpruned = copy.deepcopy(model), copy.deepcopy(model)
    result = prune_oneshot(model, calibration, criterion="wanda", sparsity=0.5, batch_size=3, progress="none")

    # by hand: block 0 of a copy pruned with the same masks, then block 1's input norms from a plain forward
    with torch.no_grad():
        for name, mask in result.masks.items():
            if name.startswith("model.layers.0."):
                reference.get_submodule(name).weight.mul_(mask)
    block1 = {name: reference.get_submodule(name) for name in result.masks if name.startswith("model.layers.1.")}
    batches = list(as_batches(calibration, 8))
    norms = collect_input_norms(reference, block1, ScoringInputs(batches=batches, progress="none"))
    expected = _wanda_masks(block1, norms)
    for name, mask in expected.items():
        assert torch.equal(result.masks[name], mask), name

    # and the calibration really matters: norms through the unpruned block 0 give other masks
    dense_block1 = {name: unpruned.get_submodule(name) for name in block1}
    dense_norms = collect_input_norms(unpruned, dense_block1, ScoringInputs(batches=batches, progress="none"))
    from_dense = _wanda_masks(dense_block1, dense_norms)
    assert any(not torch.equal(from_dense[name], result.masks[name]) for name in block1)


def _layer_input(model, name, calibration):
    seen = []
    layer = model.get_submodule(name)
    handle = layer.register_forward_hook(lambda module, args, output: seen.append(args[0].reshape(-1, layer.in_features)))
    with torch.no_grad():
        model(calibration)
    handle.remove()
    return torch.cat(seen).double()


@pytest.mark.parametrize("scheme,sparsity", [("unstructured", 0.5), ("2:4", None)])
def test_sparsegpt_reconstructs_the_layer_output_better_than_magnitude(tiny_llama, calibration, scheme, sparsity):
    name = "model.layers.0.mlp.up_proj"
    dense = tiny_llama()
    x = _layer_input(dense, name, calibration)  # block 0's inputs do not depend on pruning
    errors = {}
    for criterion in ("magnitude", "sparsegpt"):
        model = copy.deepcopy(dense)
        prune_oneshot(model, calibration, criterion=criterion, scheme=scheme, sparsity=sparsity, targets=[name],
                      batch_size=8, progress="none")
        change = (model.get_submodule(name).weight - dense.get_submodule(name).weight).detach().double()
        errors[criterion] = float((x @ change.T).norm())
    assert errors["sparsegpt"] < 0.95 * errors["magnitude"], errors


def test_targets_and_ignore_select_by_full_name(tiny_llama):
    model = tiny_llama()
    chosen = select_linears(model, targets=["*.mlp.*"], ignore=["model.layers.1.*"])
    assert [sorted(layers) for layers in chosen] == [
        ["model.layers.0.mlp.down_proj", "model.layers.0.mlp.gate_proj", "model.layers.0.mlp.up_proj"], []]
    assert all(isinstance(layer, nn.Linear) for layer in chosen[0].values())
    with pytest.raises(ValueError, match="match no nn.Linear"):
        select_linears(model, targets=["lm_head"])
    with pytest.raises(ValueError, match="criterion"):
        prune_oneshot(model, torch.zeros(1, 4, dtype=torch.long), criterion="snip")
    with pytest.raises(ValueError, match="scheme"):
        prune_oneshot(model, torch.zeros(1, 4, dtype=torch.long), scheme="2-4")
    with pytest.raises(ValueError, match="2:4 means sparsity 0.5"):
        prune_oneshot(model, torch.zeros(1, 4, dtype=torch.long), scheme="2:4", sparsity=0.6)
