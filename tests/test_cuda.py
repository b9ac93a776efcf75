"""The training paths on a CUDA device (skipped without one; CI has none, the lent GPU runs them).

CPU-only tests cannot see a tensor left on the wrong device: the generators behind random
masks and growth live on the CPU while the model lives on the GPU.
"""

import json

import pytest
import torch

from slimkit.cli import main

pytestmark = pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")

QUICK = ["--data", "synthetic", "--epochs", "2", "--batch-size", "64", "--progress", "none", "--device", "cuda"]


def _train(tmp_path, *args: str) -> dict:
    out = tmp_path / "run"
    assert main(["train", *QUICK, *args, "--out", str(out)]) == 0
    return json.loads((out / "metrics.json").read_text())


@pytest.mark.parametrize("method", ["random", "snip", "grasp", "synflow", "gmp", "set", "dsr", "rigl", "mest",
                                    "mest-em", "mest-ems"])
def test_sparse_training_on_cuda(tmp_path, method):
    metrics = _train(tmp_path, "--model", "lenet5", "--method", method, "--sparsity", "0.9")
    assert metrics["sparsity_pruned_layers"] == pytest.approx(0.9, abs=0.01)


@pytest.mark.parametrize("scheme", ["block", "pattern", "channel", "nm"])
def test_schemes_under_mest_em_on_cuda(tmp_path, scheme):
    options = {"block": "{block: [8, 1], prune: cols}", "nm": "{n: 2, m: 4}"}.get(scheme, "{}")
    sparsity = "0.5" if scheme == "nm" else "0.9"
    metrics = _train(tmp_path, "--model", "resnet20", "--method", "mest-em", "--sparsity", sparsity,
                     "--scheme", scheme, "--scheme-options", options)
    assert metrics["sparsity_pruned_layers"] >= float(sparsity) - 0.01


def test_compressed_storage_on_cuda(tmp_path):
    metrics = _train(tmp_path, "--model", "mlp", "--model-options", "{hidden: [256, 256]}", "--method", "mest-ems",
                     "--sparsity", "0.9", "--storage", "compressed")
    assert metrics["compressed_layers"]


def test_channel_layers_on_cuda(tmp_path):
    metrics = _train(tmp_path, "--model", "resnet20", "--method", "mest-ems", "--sparsity", "0.75", "--scheme", "channel",
                     "--storage", "compressed")
    assert metrics["compressed_layers"]
    assert metrics["sparsity_pruned_layers"] == pytest.approx(0.75, abs=0.02)
