import torch

from slimkit.data.base import DatasetInfo
from slimkit.metrics import count_flops
from slimkit.models import build_model

MNIST = DatasetInfo("fashion-mnist", (1, 28, 28), 10)


def test_lenet300_flops_by_hand():
    report = count_flops(build_model("lenet300", MNIST), MNIST.input_shape)
    macs = 784 * 300 + 300 * 100 + 100 * 10
    assert report.dense == report.sparse == 2 * macs == 532_400


def test_lenet5_flops_by_hand():
    report = count_flops(build_model("lenet5", MNIST), MNIST.input_shape, batch_size=2)
    conv1 = 6 * 28 * 28 * (1 * 5 * 5)  # same padding
    conv2 = 16 * 10 * 10 * (6 * 5 * 5)
    fcs = 400 * 120 + 120 * 84 + 84 * 10
    assert report.dense == 2 * 2 * (conv1 + conv2 + fcs)
    assert report.per_layer["conv2"] == (2 * 2 * conv2, 2 * 2 * conv2)


def test_sparse_flops_count_only_nonzero_weights():
    model = build_model("lenet5", MNIST)
    with torch.no_grad():
        model.conv2.weight[:, :3] = 0  # half of conv2's weights
        model.fc1.weight[:, ::4] = 0  # a quarter of fc1's weights
    report = count_flops(model, MNIST.input_shape)
    conv2 = 2 * 16 * 10 * 10 * 150
    fc1 = 2 * 400 * 120
    assert report.dense - report.sparse == conv2 // 2 + fc1 // 4
