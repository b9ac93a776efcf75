"""A small trained model shared by the quantization tests."""

import torch

from slimkit.data import load_dataset, make_loaders
from slimkit.models import build_model
from slimkit.train import Trainer
from slimkit.train.config import TrainConfig


def trained_digits_lenet5(epochs: int):
    """LeNet-5 trained with Adam on scikit-learn digits: (model, loaders, splits)."""
    splits = load_dataset("digits")
    loaders = make_loaders(splits, 64, seed=0)
    torch.manual_seed(0)
    model = build_model("lenet5", splits.info)
    Trainer(model, loaders, TrainConfig(epochs=epochs, optimizer="adam", lr=3e-3, progress="none")).fit()
    return model, loaders, splits
