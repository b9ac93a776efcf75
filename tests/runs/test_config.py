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


def _float_settings():
    """Every setting that holds a float or a list of floats, over all of RunConfig's sections."""
    import typing

    for name, field in RunConfig.model_fields.items():
        annotation = field.annotation
        args = [a for a in typing.get_args(annotation) if a is not type(None)]
        if annotation is float or float in args:
            yield name, float
        elif typing.get_origin(annotation) is list and typing.get_args(annotation) == (float,):
            yield name, list


FLOAT_SETTINGS = list(_float_settings())


def test_the_float_settings_include_the_training_loop_s():
    names = {name for name, _ in FLOAT_SETTINGS}
    assert {"lr", "weight_decay", "warmup_epochs", "momentum", "sparsity", "milestones"} <= names


@pytest.mark.parametrize("value", [float("inf"), float("-inf"), float("nan")])
@pytest.mark.parametrize("name,kind", FLOAT_SETTINGS, ids=[name for name, _ in FLOAT_SETTINGS])
def test_no_float_setting_takes_a_non_finite_value(name, kind, value):
    with pytest.raises(ConfigError, match=name):
        make_config({name: value if kind is float else [value]})


def test_non_finite_values_are_refused_from_yaml_too(tmp_path):
    path = tmp_path / "r.yaml"
    path.write_text("lr: .inf\n")
    with pytest.raises(ConfigError, match="lr: Input should be a finite number"):
        load_config(path)


# 397 bytes that expand to 10**8 list items (the "billion laughs"): a config.yaml of ~300 MB when written back.
ALIAS_BOMB = "model_options:\n  a: &a [x, x, x, x, x, x, x, x, x, x]\n" + "".join(
    f"  {chr(98 + i)}: &{chr(98 + i)} [*{chr(97 + i)}, *{chr(97 + i)}, *{chr(97 + i)}, *{chr(97 + i)}, "
    f"*{chr(97 + i)}, *{chr(97 + i)}, *{chr(97 + i)}, *{chr(97 + i)}, *{chr(97 + i)}, *{chr(97 + i)}]\n"
    for i in range(7)
)


def test_yaml_aliases_are_refused_before_they_expand(tmp_path):
    path = tmp_path / "bomb.yaml"
    path.write_text(ALIAS_BOMB)
    with pytest.raises(ConfigError, match=f"config file {path}: YAML anchor &a at line 2: anchors and aliases are not"):
        load_config(path)


def test_a_lone_alias_is_named_with_its_line(tmp_path):
    from slimkit.runs.config import YAMLAliasError, parse_yaml

    with pytest.raises(YAMLAliasError, match=r"alias \*x at line 2"):
        parse_yaml("a: 1\nb: *x\n")


@pytest.mark.parametrize("content", [b"\xff\xfe\x00lr", None])
def test_an_unreadable_config_file_is_named(tmp_path, content):
    path = tmp_path / "r.yaml"
    if content is None:
        path.mkdir()  # a folder where a file is expected: IsADirectoryError
    else:
        path.write_bytes(content)
    with pytest.raises(ConfigError, match=f"config file {path}"):
        load_config(path)


def test_a_yaml_syntax_error_is_one_line_with_its_position(tmp_path):
    path = tmp_path / "config.yaml"
    path.write_text("epochs: 3\nlr: [0.1\nseed: 1\n")
    with pytest.raises(ConfigError) as err:
        load_config(path)
    assert len(str(err.value).splitlines()) == 1
    assert f"config file {path} is not valid YAML at line" in str(err.value)
