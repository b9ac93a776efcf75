"""Bad data-efficiency settings fail before training, naming the key."""

import pytest

from slimkit.cli import build_parser
from slimkit.runs.config import ConfigError, make_config

BASE = dict(epochs=20, data_efficient=True)


@pytest.mark.parametrize(
    "values,message",
    [
        ({"stats_epochs": 20, "remove_forgetting_le": 0}, "stats_epochs .20. must be shorter"),
        ({"stats_epochs": 25, "remove_fraction": 0.2}, "stats_epochs"),
        ({"remove_forgetting_le": 0}, "needs stats_epochs"),
        ({"stats_epochs": 10}, "exactly one of remove_forgetting_le and remove_fraction"),
        ({"stats_epochs": 10, "remove_forgetting_le": 0, "remove_fraction": 0.2}, "exactly one"),
        ({"stats_epochs": 10, "remove_forgetting_le": 5}, "remove_forgetting_le .5. would remove every learned"),
        ({"stats_epochs": 1, "remove_forgetting_le": 0}, "remove_forgetting_le"),
        ({"stats_epochs": 10, "remove_fraction": 1.0}, "remove_fraction"),
        ({"stats_epochs": 10, "remove_fraction": 0.0}, "remove_fraction"),
        ({"stats_epochs": 0, "remove_fraction": 0.1}, "stats_epochs"),
        ({"stats_epochs": 10, "remove_forgetting_le": -1}, "remove_forgetting_le"),
        ({"stats_epochs": 10, "remove_fraction": 0.1, "forgetting_stats": True}, "exclude each other"),
        ({"stats_epochs": 10, "remove_fraction": 0.1, "method": "imp", "sparsity": 0.9}, "imp"),
        ({"data_efficient": False, "stats_epochs": 10}, "stats_epochs only apply with data_efficient"),
    ],
)
def test_bad_settings_name_the_key(values, message):
    with pytest.raises(ConfigError, match=message):
        make_config({**BASE, **values})


def test_good_settings_and_cli_flags():
    args = build_parser().parse_args(
        ["train", "--method", "mest-ems", "--sparsity", "0.9", "--data-efficient", "--stats-epochs", "10",
         "--remove-forgetting-le", "0"]
    )
    assert (args.data_efficient, args.stats_epochs, args.remove_forgetting_le) == (True, 10, 0)
    config = make_config({**BASE, "stats_epochs": 10, "remove_forgetting_le": 0, "method": "mest-ems", "sparsity": 0.9})
    assert config.remove_fraction is None
    assert make_config({"forgetting_stats": True}).forgetting_stats
