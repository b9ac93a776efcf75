"""Layer-wise Optimal Brain Surgeon checked against closed forms in float64."""

import pytest
import torch
import torch.nn.functional as F
from torch import nn
from torch.nn.utils import parametrize

from slimkit.importance.obs import collect_input_hessians, obs_prune, obs_prune_weight

D = torch.float64
DAMP = 0.01


def problem(seed: int, rows: int = 4, cols: int = 8, samples: int = 40):
    """A weight, correlated calibration inputs X (samples x cols) and H = 2/N XᵀX."""
    gen = torch.Generator().manual_seed(seed)
    weight = torch.randn(rows, cols, generator=gen, dtype=D)
    mixing = torch.randn(cols, cols, generator=gen, dtype=D)
    x = torch.randn(samples, cols, generator=gen, dtype=D) @ mixing
    return weight, x, 2.0 / samples * x.T @ x


def damped(hessian: torch.Tensor, damp: float = DAMP) -> torch.Tensor:
    return hessian + damp * hessian.diagonal().mean() * torch.eye(hessian.shape[0], dtype=D)


def output_error(weight, pruned, x) -> float:
    return float(((weight - pruned) @ x.T).norm())


def keep_top(scores: torch.Tensor, keep: int) -> torch.Tensor:
    mask = torch.zeros_like(scores, dtype=torch.bool)
    mask.scatter_(1, scores.topk(keep, dim=1).indices, True)
    return mask


def test_removing_one_weight_is_the_classic_obs_step():
    weight, _, hessian = problem(0)
    cols = weight.shape[1]
    new, mask = obs_prune_weight(weight, hessian, (cols - 1) / cols, damp=DAMP)
    hinv = torch.linalg.inv(damped(hessian))
    for row in range(weight.shape[0]):
        w = weight[row]
        saliency = w.square() / hinv.diagonal()
        q = int(saliency.argmin())
        expected = w - w[q] / hinv[q, q] * hinv[:, q]
        torch.testing.assert_close(new[row], expected, rtol=0, atol=1e-12)
        assert new[row, q] == 0 and mask[row].sum() == cols - 1 and not mask[row, q]
        delta = new[row] - w
        # OBS error: ½ δwᵀ H δw = ½ w_q² / [H⁻¹]_qq, the smallest over q
        assert float(0.5 * delta @ damped(hessian) @ delta) == pytest.approx(float(0.5 * saliency[q]), rel=1e-10)


@pytest.mark.parametrize("density", [0.75, 0.5, 0.25, 0.125])
def test_kept_weights_are_the_least_squares_optimum_on_their_support(density):
    weight, _, hessian = problem(1, rows=5, cols=8)
    new, mask = obs_prune_weight(weight, hessian, density, damp=DAMP)
    h = damped(hessian)
    for row in range(weight.shape[0]):
        keep, drop = mask[row], ~mask[row]
        # argmin (w - w0) H (w - w0)ᵀ with w = 0 off the support: w_S = w0_S + H_SS⁻¹ H_SP w0_P
        optimum = weight[row, keep] + torch.linalg.solve(h[keep][:, keep], h[keep][:, drop] @ weight[row, drop])
        torch.testing.assert_close(new[row, keep], optimum, rtol=0, atol=1e-8)
        assert (new[row, drop] == 0).all()
        assert int(keep.sum()) == round(density * 8)


@pytest.mark.parametrize("seed", range(4))
@pytest.mark.parametrize("density", [0.25, 0.5, 0.75])
def test_obs_output_error_beats_pruning_without_compensation(seed, density):
    weight, x, hessian = problem(seed, rows=6, cols=12, samples=60)
    keep = round(density * 12)
    new, mask = obs_prune_weight(weight, hessian, density, damp=DAMP)
    magnitude = weight * keep_top(weight.abs(), keep)
    obd = weight * keep_top(weight.square() * hessian.diagonal(), keep)  # OBD saliency, no update
    assert output_error(weight, new, x) <= output_error(weight, magnitude, x)
    assert output_error(weight, new, x) <= output_error(weight, obd, x)
    assert (mask.sum(dim=1) == keep).all()


def test_density_extremes_and_argument_errors():
    weight, _, hessian = problem(2)
    same, full = obs_prune_weight(weight, hessian, 1.0)
    assert torch.equal(same, weight) and full.all()
    zero, empty = obs_prune_weight(weight, hessian, 0.0)
    assert (zero == 0).all() and not empty.any()
    assert obs_prune_weight(weight.float(), hessian, 0.5)[0].dtype == torch.float32
    with pytest.raises(ValueError, match="density"):
        obs_prune_weight(weight, hessian, 1.5)
    with pytest.raises(ValueError, match="hessian"):
        obs_prune_weight(weight, hessian[:-1, :-1], 0.5)
    with pytest.raises(ValueError, match="damp"):
        obs_prune_weight(weight, torch.zeros_like(hessian), 0.5, damp=0.0)


def test_linear_input_hessian_uses_every_row_of_the_first_batches():
    layer = nn.Linear(5, 3).to(D)
    gen = torch.Generator().manual_seed(0)
    data = [(torch.randn(2, 4, 5, generator=gen, dtype=D), torch.zeros(2)) for _ in range(3)]
    hessians = collect_input_hessians(layer, {"fc": layer}, data, num_batches=2)
    rows = torch.cat([x.reshape(-1, 5) for x, _ in data[:2]])
    torch.testing.assert_close(hessians["fc"], 2.0 / len(rows) * rows.T @ rows, rtol=1e-12, atol=0)


@pytest.mark.parametrize(
    "conv",
    [
        dict(kernel_size=3, padding=1),
        dict(kernel_size=3, stride=2, dilation=2, padding=2),
        dict(kernel_size=(3, 2), padding="same", padding_mode="reflect"),
        dict(kernel_size=2, padding="valid", padding_mode="circular"),
    ],
    ids=["pad1", "stride-dilation", "same-reflect", "valid-circular"],
)
def test_conv_input_hessian_reproduces_the_convolution(conv):
    """For any filter w: wᵀHw = 2/N ||conv(x, w)||², N = batch x output positions, so the unfolding is right."""
    layer = nn.Conv2d(3, 2, bias=False, **conv).to(D)
    gen = torch.Generator().manual_seed(1)
    x = torch.randn(2, 3, 7, 6, generator=gen, dtype=D)
    hessian = collect_input_hessians(layer, {"conv": layer}, [(x, torch.zeros(2))], num_batches=1)["conv"]
    for _ in range(3):
        filt = torch.randn(1, *layer.weight.shape[1:], generator=gen, dtype=D)
        with torch.no_grad():
            layer.weight[:1].copy_(filt)
            out = layer(x)[:, :1]
        quadratic = filt.flatten() @ hessian @ filt.flatten()
        assert float(quadratic) == pytest.approx(float(2.0 * out.square().sum() / out.numel()), rel=1e-10)


class TinyConvNet(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(3, 4, 3, padding=1)
        self.bn = nn.BatchNorm2d(4)
        self.conv2 = nn.Conv2d(4, 6, 3, stride=2)
        self.fc = nn.Linear(6 * 3 * 3, 5)

    def forward(self, x):
        x = F.relu(self.conv2(F.relu(self.bn(self.conv1(x)))))
        return self.fc(x.flatten(1))


def _calibration(count: int = 3):
    gen = torch.Generator().manual_seed(3)
    batch = 4
    return [
        (torch.randn(batch, 3, 8, 8, generator=gen), torch.zeros(batch, dtype=torch.long), torch.arange(batch))
        for _ in range(count)
    ]


def test_obs_prune_on_a_conv_net():
    torch.manual_seed(0)
    model = TinyConvNet().train()
    densities = {"conv1": 0.5, "conv2": 0.3, "fc": 0.25}
    layers = {"conv1": model.conv1, "conv2": model.conv2, "fc": model.fc}
    running_mean = model.bn.running_mean.clone()
    before = {name: layer.weight.detach().clone() for name, layer in layers.items()}

    masks = obs_prune(model, layers, _calibration(), densities, num_batches=2)

    for name, layer in layers.items():
        mask, weight = masks[name], layer.weight.detach()
        assert mask.dtype == torch.bool and mask.shape == weight.shape
        per_row = mask.reshape(mask.shape[0], -1)
        assert (per_row.sum(dim=1) == round(densities[name] * per_row.shape[1])).all()
        assert (weight[~mask] == 0).all()
        assert not torch.equal(weight[mask], before[name][mask])  # the kept weights were compensated
    assert model.training and model.bn.training  # modes restored after the eval-mode calibration
    assert torch.equal(model.bn.running_mean, running_mean)
    assert torch.isfinite(model(torch.randn(2, 3, 8, 8))).all()


def test_obs_prune_writes_into_the_parametrization_original():
    class Mask(nn.Module):
        def __init__(self, mask):
            super().__init__()
            self.register_buffer("mask", mask)

        def forward(self, weight):
            return weight * self.mask

    torch.manual_seed(1)
    model = nn.Sequential(nn.Linear(6, 4), nn.ReLU(), nn.Linear(4, 3)).to(D)
    parametrize.register_parametrization(model[0], "weight", Mask(torch.ones(4, 6, dtype=D)))
    gen = torch.Generator().manual_seed(2)
    data = [(torch.randn(16, 6, generator=gen, dtype=D), torch.zeros(16))]
    hessian = collect_input_hessians(model, {"a": model[0]}, data, num_batches=1)["a"]
    expected, expected_mask = obs_prune_weight(model[0].weight.detach(), hessian, 0.5)

    masks = obs_prune(model, {"a": model[0]}, data, {"a": 0.5}, num_batches=1)

    assert torch.equal(masks["a"], expected_mask)
    torch.testing.assert_close(model[0].parametrizations.weight.original.detach(), expected, rtol=0, atol=1e-12)
    torch.testing.assert_close(model[0].weight.detach(), expected, rtol=0, atol=1e-12)


def test_obs_prune_errors_name_the_layer():
    model = nn.Sequential(nn.Conv2d(4, 4, 3, groups=2), nn.Flatten(), nn.Linear(4, 2))
    data = [(torch.randn(2, 4, 3, 3), torch.zeros(2))]
    with pytest.raises(ValueError, match="'grouped'.*grouped convolution"):
        obs_prune(model, {"grouped": model[0]}, data, {"grouped": 0.5})
    with pytest.raises(ValueError, match="Conv1d"):
        collect_input_hessians(nn.Conv1d(2, 2, 3), {"c": nn.Conv1d(2, 2, 3)}, data, num_batches=1)
    with pytest.raises(ValueError, match="missing \\['fc'\\]"):
        obs_prune(model, {"fc": model[2]}, data, {})
    with pytest.raises(ValueError, match="empty"):
        obs_prune(model, {"fc": model[2]}, [], {"fc": 0.5})


def _output_errors(weight, x, density, block=128):
    hessian = 2.0 / x.shape[0] * x.T @ x
    errors, keep_count = {}, round(density * weight.shape[1])
    for method in ("exact", "sparsegpt"):
        new, mask = obs_prune_weight(weight, hessian, density, method=method, block=block)
        assert torch.all(mask.sum(dim=1) == keep_count)
        assert torch.all(new[~mask] == 0)
        errors[method] = float(((weight - new) @ x.T).square().sum())
    keep = torch.argsort(weight.abs(), dim=1, descending=True)[:, :keep_count]
    magnitude = torch.zeros_like(weight).scatter(1, keep, weight.gather(1, keep))
    errors["magnitude"] = float(((weight - magnitude) @ x.T).square().sum())
    return errors


def test_sparsegpt_equals_exact_obs_for_uncorrelated_inputs():
    """With a diagonal H nothing can be compensated and both reduce to the saliency w_q^2 h_qq."""
    gen = torch.Generator().manual_seed(1)
    weight = torch.randn(8, 200, generator=gen, dtype=torch.float64)
    scales = torch.rand(200, generator=gen, dtype=torch.float64) * 3
    x = torch.eye(200, dtype=torch.float64) * scales  # orthogonal inputs of different scales: diagonal H
    errors = _output_errors(weight, x, 0.25, block=200)  # one block: the same mask as exact OBS
    assert errors["sparsegpt"] == pytest.approx(errors["exact"], rel=1e-6)


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_sparsegpt_sits_between_exact_obs_and_magnitude(seed):
    gen = torch.Generator().manual_seed(seed)
    weight = torch.randn(12, 300, generator=gen, dtype=torch.float64)
    mixing = torch.randn(300, 300, generator=gen, dtype=torch.float64) * 0.1
    x = torch.randn(600, 300, generator=gen, dtype=torch.float64) @ mixing  # correlated inputs
    errors = _output_errors(weight, x, 0.3)
    assert errors["exact"] <= errors["sparsegpt"] < errors["magnitude"]
