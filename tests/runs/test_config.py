import pytest

from slimkit.runs.config import ConfigError, RunConfig, dump_config, load_config, make_config


def test_defaults_are_valid():
    assert make_config({}).epochs == 10


@pytest.mark.parametrize(
    "values,key",
    [
        ({"epoch": 3}, "epoch: unknown key"),
        ({"epochs": "ten"}, "epochs"),
        ({"epochs": -1}, "epochs"),
        ({"lr": 0}, "lr"),
        ({"optimizer": "rmsprop"}, "optimizer"),
        ({"milestones": [0.8, 0.2]}, "milestones"),
        ({"val_fraction": 1.5}, "val_fraction"),
    ],
)
def test_bad_values_name_the_key(values, key):
    with pytest.raises(ConfigError, match=key):
        make_config(values)


def test_yaml_file_then_overrides(tmp_path):
    path = tmp_path / "r.yaml"
    path.write_text("model: lenet300\nlr: 1e-3\nepochs: 4\n")
    config = load_config(path, {"epochs": 7})
    assert (config.model, config.lr, config.epochs) == ("lenet300", 0.001, 7)


def test_round_trip_through_yaml(tmp_path):
    config = make_config({"model": "resnet20", "model_options": {"shortcut": "B"}, "weight_decay": 1e-4})
    path = tmp_path / "config.yaml"
    path.write_text(dump_config(config))
    assert load_config(path) == config


def test_yaml_must_be_a_mapping(tmp_path):
    path = tmp_path / "bad.yaml"
    path.write_text("- a\n- b\n")
    with pytest.raises(ConfigError, match="mapping"):
        load_config(path)
    with pytest.raises(ConfigError, match="not found"):
        load_config(tmp_path / "missing.yaml")


def test_every_recipe_in_the_repo_is_valid():
    from pathlib import Path

    recipes = sorted((Path(__file__).parents[2] / "recipes").glob("*.yaml"))
    assert recipes
    for recipe in recipes:
        assert isinstance(load_config(recipe), RunConfig)


def test_run_config_is_composed_of_sections_that_validate_themselves():
    import inspect

    from pydantic import ValidationError

    from slimkit.efficiency.settings import DataEfficiencySettings
    from slimkit.methods import DSR, MEST, SET, DynamicSparseTraining, GradualMagnitude, RigL
    from slimkit.methods.dst.settings import DSTSettings
    from slimkit.methods.gradual import GradualSettings
    from slimkit.methods.imp import IMPSettings
    from slimkit.methods.prune_once import PruneOnceSettings
    from slimkit.train import TrainConfig

    sections = (TrainConfig, PruneOnceSettings, GradualSettings, IMPSettings, DSTSettings, DataEfficiencySettings)
    for section in sections:
        assert issubclass(RunConfig, section)
    owned = [name for section in sections for name in section.model_fields]
    assert len(owned) == len(set(owned)), "a key belongs to one section"
    with pytest.raises(ValidationError, match="gmp_start"):
        GradualSettings(gmp_start=0.8, gmp_end=0.5)
    with pytest.raises(ValidationError, match="only apply with data_efficient"):
        DataEfficiencySettings(stats_epochs=3)
    # the method keys are the methods' own keyword names
    keywords = set().union(*(inspect.signature(cls).parameters for cls in (MEST, SET, RigL, DSR, DynamicSparseTraining)))
    assert set(DSTSettings.model_fields) <= keywords
    assert set(GradualSettings.model_fields) <= set(inspect.signature(GradualMagnitude).parameters)
