"""The criteria registry: names, strict options, shared inputs, and criteria users register."""

import re
from pathlib import Path

import pytest
import torch
from torch import nn

from slimkit.importance import (
    CRITERIA, get_criterion, magnitude, random_scores, register_criterion, snip, unregister_criterion,
)
from slimkit.methods import PruneOnce
from slimkit.sparse import get_masks
from tests.importance.helpers import batches, mlp_layers, scoring, tiny_mlp


def test_criteria_registry_and_errors():
    assert set(CRITERIA) == {"magnitude", "random", "snip", "grasp", "synflow", "obd", "taylor", "bn_gamma", "wanda"}
    assert get_criterion("snip") is snip and get_criterion("random") is random_scores
    with pytest.raises(ValueError, match="unknown criterion 'nope'.*magnitude"):
        get_criterion("nope")
    model, stranger = tiny_mlp(), nn.Linear(2, 2)
    with pytest.raises(ValueError, match="not a submodule"):
        magnitude(model, {"x": stranger})
    with pytest.raises(ValueError, match="empty"):
        snip(model, mlp_layers(model), scoring([]))
    with pytest.raises(ValueError, match="num_batches"):
        snip(model, mlp_layers(model), scoring(batches(), num_batches=0))


def test_unknown_or_misspelt_options_are_errors_naming_them():
    model = tiny_mlp()
    layers = mlp_layers(model)
    with pytest.raises(ValueError, match=r"'obd' has no option 'estimater'; accepted options: estimator, samples"):
        get_criterion("obd")(model, layers, scoring(batches()), estimater="fisher")
    with pytest.raises(ValueError, match=r"'magnitude' has no option 'estimator'; accepted options: none"):
        magnitude(model, layers, estimator="fisher")
    shared = r"'snip' has no option 'num_batches' \(a shared input: set it in ScoringInputs\)"
    with pytest.raises(ValueError, match=shared):
        snip(model, layers, scoring(batches()), num_batches=2)


def test_missing_shared_inputs_are_named():
    model = tiny_mlp()
    with pytest.raises(ValueError, match="criterion 'snip' needs batches"):
        snip(model, mlp_layers(model))
    with pytest.raises(ValueError, match="criterion 'synflow' needs input_shape"):
        get_criterion("synflow")(model, mlp_layers(model), scoring(batches()))
    with pytest.raises(TypeError, match="ScoringInputs"):
        snip(model, mlp_layers(model), batches())


@pytest.fixture
def registered():
    """Names registered by a test, removed again afterwards."""
    names: list[str] = []
    yield names
    for name in names:
        unregister_criterion(name)


def test_registering_a_criterion(registered):
    @register_criterion("scaled_magnitude")
    def scaled(model, layers, inputs, *, power: float = 1.0):
        return {name: layer.weight.detach().abs() ** power for name, layer in layers.items()}

    registered.append("scaled_magnitude")
    assert get_criterion("scaled_magnitude") is scaled and "scaled_magnitude" in CRITERIA
    assert dict(scaled.options) == {"power": 1.0} and scaled.needs == frozenset()
    model = tiny_mlp()
    scores = scaled(model, mlp_layers(model), power=2.0)
    assert torch.equal(scores["fc1"], model[0].weight.detach().square())
    with pytest.raises(ValueError, match="no option 'pwr'.*accepted options: power"):
        scaled(model, mlp_layers(model), pwr=2.0)
    with pytest.raises(ValueError, match="already registered"):
        register_criterion("scaled_magnitude", scaled.fn)
    with pytest.raises(ValueError, match="unknown criterion 'nope'"):
        unregister_criterion("nope")


def test_registration_refuses_loose_signatures_and_unknown_needs():
    def swallowing(model, layers, inputs, **options):
        return {}

    with pytest.raises(TypeError, match=r"\*\*kwargs.*misspelt option"):
        register_criterion("swallowing", swallowing)
    with pytest.raises(TypeError, match="positionally"):
        register_criterion("two_args", lambda model, layers: {})
    with pytest.raises(ValueError, match=r"needs \['data'\] are not ScoringInputs fields"):
        register_criterion("bad_needs", lambda model, layers, inputs: {}, needs=("data",))
    assert not {"swallowing", "two_args", "bad_needs"} & set(CRITERIA)


def test_a_registered_criterion_prunes_by_name_through_prune_once(registered):
    """A user criterion reaches PruneOnce with the shared inputs it needs, and its scores decide the mask."""
    seen = {}

    @register_criterion("first_rows", needs=("batches",))
    def first_rows(model, layers, inputs):
        seen["inputs"] = inputs
        # keep the weights of the lowest-indexed output rows: a ranking magnitude would never produce
        return {name: -torch.arange(layer.weight.shape[0], dtype=torch.float32)[:, None].expand_as(layer.weight)
                for name, layer in layers.items()}

    registered.append("first_rows")
    model = nn.Sequential(nn.Linear(6, 8), nn.ReLU(), nn.Linear(8, 4))
    data = [(torch.randn(5, 6), torch.randint(0, 4, (5,)))]
    method = PruneOnce(model, sparsity=0.5, criterion="first_rows", batches=data, num_batches=1,
                       allocation="uniform", progress="none", seed=1)
    method.bind(None, total_steps=10)
    assert seen["inputs"].batches is data and seen["inputs"].progress == "none"
    masks = get_masks(model)
    assert masks["0"][:4].all() and not masks["0"][4:].any()
    with pytest.raises(ValueError, match="criterion 'first_rows' needs data: pass batches="):
        PruneOnce(nn.Sequential(nn.Linear(6, 8), nn.ReLU(), nn.Linear(8, 4)), sparsity=0.5,
                  criterion="first_rows").bind(None, total_steps=10)


def test_the_extending_guide_example_runs(registered, capsys):
    """docs/extending.md registers a criterion and prunes with it: the example must keep working."""
    guide = (Path(__file__).parents[2] / "docs" / "extending.md").read_text()
    example = re.findall(r"```python\n(.*?)```", guide, re.S)[1]
    registered.append("row_scaled")
    exec(compile(example, "docs/extending.md", "exec"), {})
    assert capsys.readouterr().out.strip() == "0.80"
