import json

import pytest
import torch

from slimkit.data.base import DatasetInfo
from slimkit.export import ModelFileError, load_model, save_model
from slimkit.models import build_model

INFO = DatasetInfo("fashion-mnist", (1, 28, 28), 10, (0.286,), (0.353,))


@pytest.mark.parametrize("name,options", [("lenet5", {}), ("resnet20", {"shortcut": "B"})])
def test_round_trip_gives_identical_outputs(tmp_path, name, options):
    model = build_model(name, INFO, **options).eval()
    save_model(model, tmp_path, name=name, info=INFO, options=options)
    loaded, sidecar = load_model(tmp_path)
    x = torch.randn(4, 1, 28, 28)
    assert torch.equal(model(x), loaded.eval()(x))
    assert sidecar["model"] == name and sidecar["dataset"]["input_shape"] == [1, 28, 28]


def test_corrupt_weights_give_a_clear_error(tmp_path):
    save_model(build_model("lenet5", INFO), tmp_path, name="lenet5", info=INFO)
    (tmp_path / "model.safetensors").write_bytes(b"not a safetensors file")
    with pytest.raises(ModelFileError, match="cannot read"):
        load_model(tmp_path)


def test_mismatched_weights_are_rejected(tmp_path):
    save_model(build_model("lenet5", INFO), tmp_path, name="lenet5", info=INFO)
    sidecar = json.loads((tmp_path / "model.json").read_text())
    sidecar["model"] = "lenet300"
    (tmp_path / "model.json").write_text(json.dumps(sidecar))
    with pytest.raises(ModelFileError, match="do not fit model 'lenet300'"):
        load_model(tmp_path)


def test_missing_sidecar(tmp_path):
    with pytest.raises(ModelFileError, match="not a slimkit model folder"):
        load_model(tmp_path)
