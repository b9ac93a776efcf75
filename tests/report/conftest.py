"""Small real runs for the report tests (synthetic data, 2 epochs: about a second each)."""

from pathlib import Path

import pytest

from slimkit.cli import main

QUICK = ["--model", "lenet5", "--data", "synthetic", "--epochs", "2", "--batch-size", "64", "--progress", "none"]
RUN_FLAGS = {
    "dense": [],
    "unstructured": ["--method", "mest-ems", "--sparsity", "0.9"],
    "block": ["--method", "mest-ems", "--sparsity", "0.9", "--scheme", "block",
              "--scheme-options", "{block: [8, 1], prune: cols}"],
}


def train(out: Path, *flags: str) -> Path:
    assert main(["train", *QUICK, *flags, "--out", str(out)]) == 0
    return out


@pytest.fixture(scope="module")
def runs(tmp_path_factory) -> dict[str, Path]:
    """dense, unstructured and block runs, built once per test module."""
    root = tmp_path_factory.mktemp("runs")
    return {name: train(root / name, *flags) for name, flags in RUN_FLAGS.items()}
