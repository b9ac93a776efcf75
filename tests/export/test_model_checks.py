"""model.json is small and hand-editable: wrong types, aliases to nothing and absurd sizes are one
ModelFileError naming the file and the field, found before any model is built for real."""

import json
import shutil
from pathlib import Path

import pytest
import torch

import slimkit.export.model_files as model_files
from slimkit.data.base import DatasetInfo
from slimkit.export import ModelFileError, load_model, save_model
from slimkit.models import build_model

INFO = DatasetInfo("synthetic", (1, 28, 28), 10, (0.5,), (0.2,))
OLD_COMPRESSED_RUN = Path(__file__).parents[1] / "fixtures" / "runs-0.1.0" / "mest-mlp"


@pytest.fixture
def folder(tmp_path):
    save_model(build_model("lenet300", INFO), tmp_path, name="lenet300", info=INFO)
    return tmp_path


def _edit(folder, change):
    sidecar = json.loads((folder / "model.json").read_text())
    change(sidecar)
    (folder / "model.json").write_text(json.dumps(sidecar))


def _set(path, value):
    def change(sidecar):
        *parents, last = path.split(".")
        target = sidecar
        for key in parents:
            target = target[key]
        target[last] = value
    return change


@pytest.mark.parametrize(
    "path,value,message",
    [
        ("model", 5, "'model' must be a model name"),
        ("model_options", [1], "'model_options' must be a mapping"),
        ("aliases", {"fc1.weight": 3}, "'aliases' must map tensor names to tensor names"),
        ("compressed_layers", 5, "'compressed_layers' must map layer names to layouts"),
        ("structured_pruned", "yes", "'structured_pruned' must be true or false"),
        ("dataset", "synthetic", "'dataset' must be a mapping"),
        ("dataset.input_shape", ["1", 28, 28], "'dataset.input_shape' must be 1 to 4 positive whole numbers"),
        ("dataset.input_shape", [1, 0, 28], "'dataset.input_shape' must be 1 to 4 positive whole numbers"),
        ("dataset.input_shape", [1, 100_000, 100_000], "asks for 10,000,000,000 values per example"),
        ("dataset.num_classes", 10**9, "'dataset.num_classes' must be a whole number from 1 to 1,048,576"),
        ("dataset.num_classes", 10.0, "'dataset.num_classes' must be a whole number"),
        ("dataset.mean", ["a"], "'dataset.mean' must be a list of finite numbers"),
        ("dataset.name", None, "'dataset.name' must be a dataset name"),
    ],
)
def test_wrong_types_and_sizes_are_named(folder, path, value, message):
    _edit(folder, _set(path, value))
    with pytest.raises(ModelFileError, match="model.json") as err:
        load_model(folder)
    assert str(err.value).startswith(str(folder / "model.json")) and message in str(err.value)


@pytest.mark.parametrize("content", ["[1, 2]", '"slimkit-model"', "\udcff"])
def test_a_sidecar_that_is_not_an_object_is_named(folder, content):
    (folder / "model.json").write_bytes(content.encode("utf-8", "surrogateescape"))
    with pytest.raises(ModelFileError, match="model.json"):
        load_model(folder)


@pytest.mark.parametrize(
    "aliases", [{"fc1.bias": "nope"}, {"fc1.bias": "fc2.bias"}],
    ids=["source-not-stored", "alias-shadows-a-stored-tensor"],
)
def test_aliases_must_name_stored_tensors(folder, aliases):
    _edit(folder, _set("aliases", aliases))
    with pytest.raises(ModelFileError, match=r"alias 'fc1.bias' -> '[\w.]+' does not name one stored tensor"):
        load_model(folder)


@pytest.mark.parametrize(
    "change,message",
    [
        (_set("dataset.num_classes", 20), "'fc3.bias' is stored with shape [10], the model has [20]"),
        (_set("dataset.input_shape", [1, 512, 512]), "'fc1.weight' is stored with shape [300, 784]"),
        (_set("model", "lenet5"), "the stored weights lack "),
    ],
)
def test_sizes_are_compared_with_the_weights_before_the_model_is_built(folder, monkeypatch, change, message):
    """A 1 kB model.json could ask for terabytes: the real build must come after the comparison."""
    devices = []

    def recording_build(*args, **kwargs):
        model = build_model(*args, **kwargs)
        devices.append(next(model.parameters()).device.type)
        return model

    monkeypatch.setattr(model_files, "build_model", recording_build)
    _edit(folder, change)
    with pytest.raises(ModelFileError, match="do not fit model") as err:
        load_model(folder)
    assert message in str(err.value) and devices == ["meta"]


def test_a_compressed_model_may_not_declare_a_far_larger_architecture(tmp_path):
    run = shutil.copytree(OLD_COMPRESSED_RUN, tmp_path / "run")
    _edit(run, _set("model_options", {"hidden": [32]}))
    assert load_model(run)[0] is not None  # as saved: loads
    _edit(run, _set("model_options", {"hidden": [1_000_000]}))
    with pytest.raises(ModelFileError, match=r"holds 795,\d+,\d+ values, over 4096x the [\d,]+ the weights file stores"):
        load_model(run)


def test_unknown_model_options_are_named(folder):
    _edit(folder, _set("model_options", {"wings": 2}))
    with pytest.raises(ModelFileError, match=r"model.json: model 'lenet300': cannot build it: .*wings"):
        load_model(folder)


def test_tied_weights_still_round_trip(tmp_path):
    model = build_model("mlp", INFO, hidden=[10, 10])
    model.layers[5].weight = model.layers[3].weight
    save_model(model, tmp_path, name="mlp", info=INFO, options={"hidden": [10, 10]})
    assert json.loads((tmp_path / "model.json").read_text())["aliases"] == {"layers.5.weight": "layers.3.weight"}
    loaded, _ = load_model(tmp_path)
    assert torch.equal(loaded.layers[5].weight, model.layers[3].weight)
