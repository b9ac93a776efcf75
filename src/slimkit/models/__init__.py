"""Reference architectures sized to any dataset, and torchvision classifiers as `tv:<name>`."""

from slimkit.models.registry import MODELS, available_models, build_model
from slimkit.models.torchvision_models import classification_models

__all__ = ["MODELS", "available_models", "build_model", "classification_models"]
