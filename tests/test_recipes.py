"""Every sparse recipe in recipes/ trains through the CLI (one epoch on the toy dataset), and the
config.yaml it saves is the recipe with the command line's overrides."""

import json
from pathlib import Path

import pytest

from slimkit.cli import main
from slimkit.runs.config import load_config, read_yaml

RECIPES = Path(__file__).parent.parent / "recipes"
SPARSE = sorted(p for p in RECIPES.glob("*.yaml") if read_yaml(p).get("method", "dense") != "dense")
FAST = {"data": "synthetic", "epochs": 1, "progress": "none"}
EXTRA = {"imp": {"epochs": 2, "imp_rounds": 2}}  # rewinding to epoch 1 needs a second epoch


def flags(values):
    return [arg for key, value in values.items() for arg in (f"--{key.replace('_', '-')}", str(value))]


@pytest.fixture(scope="module")
def dense_runs(tmp_path_factory):
    """Trained toy models for the recipes that prune a finished run (init_from)."""
    runs = {}
    for model in sorted({read_yaml(p)["model"] for p in SPARSE if "init_from" in read_yaml(p)}):
        out = tmp_path_factory.mktemp(f"dense-{model}")
        assert main(["train", "--model", model, *flags(FAST), "--out", str(out)]) == 0
        runs[model] = str(out)
    return runs


def test_every_method_family_has_a_recipe():
    methods = {read_yaml(p)["method"] for p in SPARSE}
    assert {"mest-ems", "mest-em", "set", "rigl", "dsr", "snip", "grasp", "synflow", "gmp", "imp", "magnitude",
            "obd"} <= methods
    for path in SPARSE:
        assert path.read_text().startswith("#"), f"{path.name} has no comment citing its source"


@pytest.mark.parametrize("recipe", SPARSE, ids=lambda p: p.stem)
def test_recipe_trains_and_saves_its_config(recipe, dense_runs, tmp_path):
    values = read_yaml(recipe)
    overrides = {**FAST, **EXTRA.get(values["method"], {})}
    if "init_from" in values:
        overrides["init_from"] = dense_runs[values["model"]]
    out = tmp_path / "run"
    assert main(["train", "--config", str(recipe), *flags(overrides), "--out", str(out)]) == 0
    resolved = load_config(recipe, overrides)
    assert load_config(out / "config.yaml") == resolved
    metrics = json.loads((out / "metrics.json").read_text())
    assert metrics["method"] == values["method"] and metrics["target_sparsity"] == values["sparsity"]
