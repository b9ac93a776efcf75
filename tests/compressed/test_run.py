"""Compressed storage through the runner: run folders, resume, model files."""

import json

import pytest
import torch
from safetensors.torch import load_file, save_file

from slimkit.compressed import CompressedLinear, compressed_layers
from slimkit.runs.config import make_config
from slimkit.export import ModelFileError, load_model
from slimkit.runs import train_run
from tests.methods.resume import assert_resume_is_exact

RUN = dict(model="lenet300", data="synthetic", epochs=2, batch_size=64, method="mest-ems", sparsity=0.9,
           update_every=2, progress="none", storage="compressed")


def test_compressed_run_resumes_exactly(tmp_path):
    assert_resume_is_exact({**RUN, "epochs": 3}, tmp_path)


def test_compressed_run_folder_holds_values_and_indices_only(tmp_path):
    dense = train_run(make_config({**RUN, "method": "dense", "sparsity": 0.0, "storage": "masked"}), tmp_path / "dense")
    sparse = train_run(make_config(RUN), tmp_path / "sparse")
    assert sparse["compressed_layers"] == ["fc1", "fc2", "fc3"]
    assert sparse["sparsity"] == pytest.approx(0.9, abs=0.01)
    # values (4 B) + column index (4 B) per kept weight, plus row pointers and the dense biases
    assert sparse["model_file_bytes"] < 0.25 * dense["model_file_bytes"]
    model, _ = load_model(tmp_path / "sparse")
    assert all(isinstance(m, CompressedLinear) for m in compressed_layers(model).values())
    tensors = load_file(tmp_path / "sparse" / "model.safetensors")
    assert "fc1.values" in tensors and "fc1.weight" not in tensors and "fc1.t_perm" not in tensors
    x = torch.randn(5, *json.loads((tmp_path / "sparse" / "model.json").read_text())["dataset"]["input_shape"])
    assert model(x).shape == (5, 10)


def test_corrupt_indices_in_a_model_file_are_a_clear_error(tmp_path):
    train_run(make_config({**RUN, "epochs": 1}), tmp_path)
    path = tmp_path / "model.safetensors"
    tensors = load_file(path)
    tensors["fc2.col_indices"] = tensors["fc2.col_indices"].clone()
    tensors["fc2.col_indices"][3] = 10_000
    save_file(tensors, path)
    with pytest.raises(ModelFileError, match="fc2.*out of range"):
        load_model(tmp_path)
    tensors["fc2.col_indices"] = tensors["fc2.col_indices"].long()
    save_file(tensors, path)
    with pytest.raises(ModelFileError, match="int32"):
        load_model(tmp_path)


def test_compressed_storage_for_a_method_that_needs_masks_fails_before_training(tmp_path):
    with pytest.raises(ValueError, match="masked storage"):
        train_run(make_config({**RUN, "method": "gmp"}), tmp_path)
