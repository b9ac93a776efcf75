"""metrics.json and every other JSON file slimkit writes is strict JSON: no bare NaN or Infinity."""

import json
import math

import pytest

from slimkit.utils.fileio import atomic_write_json


@pytest.mark.parametrize(
    "data,where",
    [
        ({"test_acc": 0.9, "test_loss": math.nan}, "test_loss = nan"),
        ({"rounds": [{"sparsity": 0.5}, {"sparsity": math.inf}]}, "rounds.1.sparsity = inf"),
        ([1.0, -math.inf], "1 = -inf"),
        (math.nan, "the value = nan"),
    ],
)
def test_non_finite_numbers_are_refused_and_nothing_is_written(tmp_path, data, where):
    path = tmp_path / "metrics.json"
    with pytest.raises(ValueError, match=f"refusing to write {path}: {where} is not a finite number"):
        atomic_write_json(path, data)
    assert list(tmp_path.iterdir()) == []


def test_finite_data_is_written_as_before(tmp_path):
    data = {"b": [1, 2.5, None, "x"], "a": {"nested": True}}
    path = atomic_write_json(tmp_path / "m.json", data)
    assert json.loads(path.read_text()) == data and path.read_text().startswith('{\n  "a"')
