"""slimkit: make PyTorch models smaller, faster and cheaper to train."""

from importlib.metadata import PackageNotFoundError, version

try:
    __version__ = version("slimkit")
except PackageNotFoundError:  # running from a source tree without installation
    __version__ = "0.0.0+local"

__all__ = ["__version__"]
