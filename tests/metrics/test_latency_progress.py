"""Latency measurement shows its timed runs: bounded log lines, nothing in 'none' mode."""

import logging

import pytest
from torch import nn

import slimkit.utils.progress as progress_module
from slimkit.metrics import measure_latency, time_callable


@pytest.fixture(autouse=True)
def _logged(monkeypatch, caplog):
    monkeypatch.setattr(progress_module, "LOG_DELAY_S", 0.0)
    caplog.set_level(logging.INFO, logger="slimkit")


def test_log_mode_writes_at_most_ten_lines(caplog):
    time_callable(lambda: None, warmup=5, repeats=95, progress="log")
    written = [r.getMessage() for r in caplog.records]
    assert len(written) == 10
    assert written[-1].startswith("latency: 100/100 runs done (100%")


def test_none_mode_is_silent(caplog, capsys):
    report = measure_latency(nn.Linear(4, 4), (4,), warmup=2, repeats=30, progress="none")
    assert report.repeats == 30
    assert caplog.records == [] and capsys.readouterr() == ("", "")
