"""Channel layers (a physically smaller dense weight) against the masked-dense reference, their
mutation, files, and dynamic sparse training under the channel scheme in compressed storage."""

import pytest
import torch
from torch import nn

from slimkit.compressed import (
    ChannelConv2d, ChannelLinear, apply_mutation, choose_mutation, compress, compressed_layers, decompress,
    importance_of, prepare_for_loading,
)
from slimkit.runs.config import make_config
from slimkit.export import ModelFileError, load_model
from slimkit.methods import PhasedMEST, soft_memory_bound_phases
from slimkit.runs import train_run
from slimkit.sparse.masking import apply_masks, original_weight
from slimkit.sparse.schemes import ChannelScheme

from tests.compressed.helpers import make_mest, train_compressed_dst

TOLERANCE = {torch.float64: 1e-10, torch.float32: 1e-5}


def _channel_mask(shape, dim, density, generator):
    keep = torch.rand(shape[dim], generator=generator) < density
    keep[0], keep[-1] = False, True  # a removed and a kept channel whatever the draw
    view = [1] * len(shape)
    view[dim] = -1
    return keep.view(view).expand(shape).clone()


def _relative_error(a, b):
    return float((a - b).norm() / b.norm().clamp_min(1e-30))


def _check_against_masked(layer, input_shape, dim, dtype, seed=0):
    g = torch.Generator().manual_seed(seed)
    holder = nn.Sequential(layer.to(dtype))
    apply_masks(holder, {"0": _channel_mask(tuple(layer.weight.shape), dim, 0.5, g)})
    x = torch.randn(input_shape, dtype=dtype, generator=g, requires_grad=True)
    upstream = None

    def run():
        nonlocal upstream
        out = holder(x)
        upstream = torch.randn(out.shape, dtype=dtype, generator=g) if upstream is None else upstream
        (out * upstream).sum().backward()
        return out.detach()

    ref_out, ref_dx, ref_dw = run(), x.grad.clone(), original_weight(holder[0]).grad.clone()
    x.grad = None
    compressed = compress(holder, layout=f"channel{dim}")["0"]
    out = run()
    tol = TOLERANCE[dtype]
    assert _relative_error(out, ref_out) < tol
    assert _relative_error(x.grad, ref_dx) < tol
    assert _relative_error(compressed.values.grad, ref_dw.flatten()[compressed.linear_indices()]) < tol
    assert compressed.nnz == int(holder_mask_count(compressed))
    return compressed


def holder_mask_count(layer):
    return layer.dense_mask().sum()


@pytest.mark.parametrize("dtype", [torch.float64, torch.float32])
@pytest.mark.parametrize("dim", [0, 1])
@pytest.mark.parametrize("bias", [True, False])
def test_linear_matches_masked_dense(dtype, dim, bias):
    torch.manual_seed(0)
    layer = _check_against_masked(nn.Linear(13, 9, bias=bias), (4, 3, 13), dim, dtype)
    assert isinstance(layer, ChannelLinear)


@pytest.mark.parametrize("dtype", [torch.float64, torch.float32])
@pytest.mark.parametrize("dim", [0, 1])
@pytest.mark.parametrize(
    "conv, size",
    [
        (dict(in_channels=5, out_channels=8, kernel_size=3, padding=1), 9),
        (dict(in_channels=4, out_channels=6, kernel_size=(3, 2), stride=2, padding=(1, 0), bias=False), 11),
        (dict(in_channels=3, out_channels=7, kernel_size=3, dilation=2), 10),
    ],
)
def test_conv2d_matches_masked_dense(dtype, dim, conv, size):
    torch.manual_seed(0)
    layer = _check_against_masked(nn.Conv2d(**conv), (2, conv["in_channels"], size, size), dim, dtype)
    assert isinstance(layer, ChannelConv2d)
    assert layer.kept_weight().shape[dim] == layer.channels.numel() < layer.weight_shape[dim]


def test_round_trip_and_optimizer_state_move_with_the_weights():
    torch.manual_seed(0)
    model = nn.Sequential(nn.Conv2d(3, 8, 3), nn.ReLU(), nn.Flatten(), nn.Linear(8 * 4 * 4, 5))
    g = torch.Generator().manual_seed(1)
    apply_masks(model, {"0": _channel_mask((8, 3, 3, 3), 0, 0.5, g)})
    optimizer = torch.optim.Adam(model.parameters(), lr=0.01)
    x = torch.randn(4, 3, 6, 6)
    model(x).sum().backward()
    optimizer.step()
    reference, moment = model(x).detach(), optimizer.state[original_weight(model[0])]["exp_avg"].clone()
    layer = compress(model, layout="channel0", optimizer=optimizer)["0"]
    assert torch.equal(model(x), reference)
    assert torch.equal(optimizer.state[layer.values]["exp_avg"], moment.flatten()[layer.linear_indices()])
    decompress(model, optimizer=optimizer)
    assert torch.equal(model(x), reference)
    assert torch.equal(optimizer.state[original_weight(model[0])]["exp_avg"], moment)


def test_a_mask_that_is_not_whole_channels_is_a_clear_error():
    model = nn.Sequential(nn.Linear(6, 4))
    mask = torch.ones(4, 6, dtype=torch.bool)
    mask[2, 3] = False
    apply_masks(model, {"0": mask})
    with pytest.raises(ValueError, match="layer '0'.*part of output channel 2"):
        compress(model, layout="channel0")
    assert not compressed_layers(model)
    with pytest.raises(ValueError, match="unknown compressed layout"):
        compress(model, layout="bsr")


@pytest.mark.parametrize("dim", [0, 1])
def test_kept_units_round_like_the_channel_scheme(dim):
    torch.manual_seed(0)
    model = nn.Sequential(nn.Conv2d(7, 12, 3))
    apply_masks(model, {"0": torch.ones(12, 7, 3, 3, dtype=torch.bool)})
    layer = compress(model, layout=f"channel{dim}")["0"]
    scheme = ChannelScheme(dim=dim)
    for density in (0.01, 0.1, 0.25, 0.33, 0.5, 0.77, 0.9, 1.0):
        mask = scheme.make_mask(torch.rand(12, 7, 3, 3), density)
        assert layer.kept_units(density) * layer.unit_size == int(mask.sum()), density


@pytest.mark.parametrize("dim", [0, 1])
def test_mutation_moves_whole_channels_with_their_optimizer_state(dim):
    torch.manual_seed(0)
    model = nn.Sequential(nn.Conv2d(6, 10, 3))
    g = torch.Generator().manual_seed(2)
    shape = (10, 6, 3, 3)
    apply_masks(model, {"0": _channel_mask(shape, dim, 0.6, g)})
    layer = compress(model, layout=f"channel{dim}")["0"]
    optimizer = torch.optim.SGD(model.parameters(), lr=0.1, momentum=0.9)
    model(torch.randn(2, 6, 5, 5)).sum().backward()
    optimizer.step()
    before_weight = layer.dense_weight().clone()
    before_momentum = torch.zeros(shape).flatten()
    before_momentum[layer.linear_indices()] = optimizer.state[layer.values]["momentum_buffer"]
    before_units = layer.units().clone()
    importance = importance_of(layer, 0.0)
    keep = len(before_units) - 1
    survivors, grown = choose_mutation(before_units, importance, keep, len(before_units), layer.unit_count, g)
    apply_mutation(layer, survivors, grown, optimizer)

    ChannelScheme(dim=dim).validate(layer.dense_mask())
    assert len(layer.units()) == len(before_units)
    assert int(before_units[importance.argmin()]) not in layer.units().tolist()
    weight = layer.dense_weight()
    momentum = torch.zeros(shape).flatten()
    momentum[layer.linear_indices()] = optimizer.state[layer.values]["momentum_buffer"]
    momentum = momentum.view(shape)
    for channel in layer.units().tolist():
        kept = weight.select(dim, channel)
        if channel in grown.tolist():
            assert torch.all(kept == 0) and torch.all(momentum.select(dim, channel) == 0)
        else:
            assert torch.equal(kept, before_weight.select(dim, channel))
            assert torch.equal(momentum.select(dim, channel), before_momentum.view(shape).select(dim, channel))


def _conv_net():
    torch.manual_seed(0)
    return nn.Sequential(
        nn.Conv2d(1, 8, 3, padding=1), nn.ReLU(), nn.Conv2d(8, 16, 3, padding=1), nn.BatchNorm2d(16), nn.ReLU(),
        nn.Conv2d(16, 16, 3, padding=1), nn.ReLU(), nn.AdaptiveAvgPool2d(2), nn.Flatten(), nn.Linear(64, 4),
    )


@pytest.mark.parametrize("method", ["mest", "mest-ems"])
def test_dynamic_sparse_training_keeps_whole_channels_in_compressed_storage(method):
    model = _conv_net()
    common = dict(scheme="channel", update_every=2, seed=0, dense_layers=["0"])
    dst = make_mest(method, model, 0.75, **common)
    dst.bind(None, total_steps=20)
    dst.use_compressed_storage(["2", "5"])
    assert all(isinstance(compressed_layers(model)[n], ChannelConv2d) for n in ("2", "5"))
    moved = train_compressed_dst(model, dst)
    assert dst.updates >= 3 and moved > 0
    target = dst.densities(0.75)
    for name, layer in compressed_layers(model).items():
        ChannelScheme().validate(layer.dense_mask())
        assert layer.channels.numel() == layer.kept_units(target[name])


def test_run_folder_with_channel_layers_saves_and_loads(tmp_path):
    run = dict(model="lenet5", data="digits", epochs=2, batch_size=64, method="mest", sparsity=0.5,
               scheme="channel", update_every=5, progress="none", storage="compressed")
    metrics = train_run(make_config(run), tmp_path)
    assert metrics["compressed_layers"] == ["conv1", "conv2", "fc1", "fc2"]
    model, sidecar = load_model(tmp_path)
    assert sidecar["compressed_layers"] == {name: "channel0" for name in metrics["compressed_layers"]}
    assert isinstance(model.conv2, ChannelConv2d) and isinstance(model.fc1, ChannelLinear)
    assert model.fc1.channels.numel() < model.fc1.out_features
    model(torch.zeros(2, 1, 8, 8))  # digits are 8x8

    from safetensors.torch import load_file, save_file

    path = tmp_path / "model.safetensors"
    tensors = load_file(path)
    tensors["conv2.channels"] = tensors["conv2.channels"].clone()
    tensors["conv2.channels"][-1] = 99
    save_file(tensors, path)
    with pytest.raises(ModelFileError, match="conv2.*out of range"):
        load_model(tmp_path)


def test_older_model_files_list_csr_layers_by_name():
    model = nn.Sequential(nn.Linear(5, 3))
    prepare_for_loading(model, ["0"])
    assert type(model[0]).__name__ == "CompressedLinear"
    with pytest.raises(ValueError, match="unknown compressed layout"):
        prepare_for_loading(nn.Sequential(nn.Linear(5, 3)), {"0": "bsr"})


def test_pruning_at_init_under_the_channel_scheme_gets_channel_layers(tmp_path):
    run = dict(model="lenet5", data="digits", epochs=1, batch_size=64, method="snip", sparsity=0.5, scheme="channel",
               progress="none", storage="compressed")
    metrics = train_run(make_config(run), tmp_path)
    model, _ = load_model(tmp_path)
    assert all(isinstance(layer, (ChannelConv2d, ChannelLinear)) for layer in compressed_layers(model).values())
    assert metrics["sparsity_pruned_layers"] == pytest.approx(0.5, abs=0.05)


def test_block_rows_mutate_as_whole_aligned_segments_in_compressed_storage():
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(32, 22), nn.ReLU(), nn.Linear(22, 30), nn.ReLU(), nn.Linear(30, 4))
    scheme_options = {"block": [4, 4], "prune": "rows"}
    dst = PhasedMEST(model, sparsity=0.75, phases=soft_memory_bound_phases(0.75), scheme="block",
                     scheme_options=scheme_options, update_every=2, seed=0)
    dst.bind(None, total_steps=16)
    moved = dst.use_compressed_storage()
    assert moved == ["0"]  # layer "2" has 22 columns per row: no whole segments of 4, so it stays masked
    optimizer = torch.optim.SGD(model.parameters(), lr=0.05, momentum=0.9)
    dst.bind(optimizer, total_steps=16)
    g = torch.Generator().manual_seed(0)
    before = model[0].units().clone()
    for _ in range(16):
        x, y = torch.randn(8, 32, generator=g), torch.randint(4, (8,), generator=g)
        loss = nn.functional.cross_entropy(model(x), y)
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        dst.step()
    layer = model[0]
    assert layer.unit_size == 4 and not torch.equal(layer.units(), before)
    dst.scheme.validate(layer.dense_mask())
    dst.scheme.validate(model[2].parametrizations.weight[0].mask)
    assert layer.nnz == layer.kept_units(dst.densities(0.75)["0"]) * 4


def test_auto_storage_gives_channel_layers_to_channel_scheme_runs(tmp_path):
    run = dict(model="lenet5", data="digits", epochs=1, batch_size=64, method="set", sparsity=0.5, scheme="channel",
               update_every=5, progress="none")
    metrics = train_run(make_config(run), tmp_path)
    assert metrics["compressed_layers"] == ["conv1", "conv2", "fc1", "fc2"]
