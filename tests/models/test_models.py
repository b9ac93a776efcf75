import pytest
import torch

from slimkit.data.base import DatasetInfo
from slimkit.models import MODELS, build_model

SHAPES = {
    "fashion-mnist": (1, 28, 28),
    "digits": (1, 8, 8),
    "cifar10": (3, 32, 32),
    "mnist1d": (1, 40),
}


@pytest.mark.parametrize("dataset", SHAPES)
@pytest.mark.parametrize("name", sorted(MODELS))
def test_every_model_on_every_dataset_shape(name, dataset):
    info = DatasetInfo(dataset, SHAPES[dataset], 10)
    if len(SHAPES[dataset]) == 2 and MODELS[name][2]:
        with pytest.raises(ValueError, match="needs 2-D images"):
            build_model(name, info)
        return
    model = build_model(name, info).eval()
    with torch.no_grad():
        assert model(torch.randn(3, *SHAPES[dataset])).shape == (3, 10)


@pytest.mark.parametrize("name,params", [("lenet300", 266_610), ("lenet5", 61_706), ("resnet20", 269_722 - 288)])
def test_parameter_counts_match_the_papers(name, params):
    model = build_model(name, DatasetInfo("x", (1, 28, 28), 10))
    assert sum(p.numel() for p in model.parameters()) == params


def test_resnet_option_b_adds_projections():
    info = DatasetInfo("x", (3, 32, 32), 10)
    a = build_model("resnet20", info)
    b = build_model("resnet20", info, shortcut="B")
    assert sum(p.numel() for p in b.parameters()) > sum(p.numel() for p in a.parameters())
    with pytest.raises(ValueError, match="shortcut"):
        build_model("resnet20", info, shortcut="C")


@pytest.mark.parametrize("name", ["resnet18", "mobilenet_v3_small", "squeezenet1_0", "alexnet", "vit_b_16"])
def test_torchvision_classifiers_adapt_to_grey_28px(name):
    model = build_model(f"tv:{name}", DatasetInfo("fashion-mnist", (1, 28, 28), 7)).eval()
    with torch.no_grad():
        assert model(torch.randn(2, 1, 28, 28)).shape == (2, 7)


def test_unknown_models_are_named():
    info = DatasetInfo("x", (1, 28, 28), 10)
    with pytest.raises(ValueError, match="unknown model 'lenet9'"):
        build_model("lenet9", info)
    with pytest.raises(ValueError, match="unknown torchvision classifier 'resnet9'"):
        build_model("tv:resnet9", info)


def test_mlp_widths_come_from_options():
    info = DatasetInfo("x", (1, 28, 28), 10)
    model = build_model("mlp", info, hidden=[32, 16])
    assert [m.out_features for m in model.modules() if isinstance(m, torch.nn.Linear)] == [32, 16, 10]
    assert sum(p.numel() for p in build_model("mlp", info).parameters()) == 784 * 4096 + 4096 * 4096 + 4096 * 10 + 8202
    with pytest.raises(ValueError, match="positive"):
        build_model("mlp", info, hidden=[0])
