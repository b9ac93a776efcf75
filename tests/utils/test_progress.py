"""The progress display: bounded log lines in 'log' mode, silence in 'none', bar-only operations."""

import logging

import pytest

import slimkit.utils.progress as progress_module
from slimkit.runs.config import make_config
from slimkit.runs import build_trainer
from slimkit.utils.progress import LOG_LINES, Progress, progress


@pytest.fixture
def no_delay(monkeypatch):
    """Log even operations that end within LOG_DELAY_S (every operation in a test is that short)."""
    monkeypatch.setattr(progress_module, "LOG_DELAY_S", 0.0)


def lines(caplog, prefix: str = "") -> list[str]:
    return [r.getMessage() for r in caplog.records if r.name == "slimkit" and r.getMessage().startswith(prefix)]


def test_log_mode_writes_at_most_ten_lines(no_delay, caplog):
    caplog.set_level(logging.INFO, logger="slimkit")
    assert list(progress(range(1000), desc="work", mode="log", unit="items")) == list(range(1000))
    written = lines(caplog)
    assert len(written) == LOG_LINES == 10
    assert written[0].startswith("work: 100/1000 items done (10%,")
    assert written[-1].startswith("work: 1000/1000 items done (100%,")


def test_short_operations_log_each_step_and_unknown_totals_one_line(no_delay, caplog):
    caplog.set_level(logging.INFO, logger="slimkit")
    list(progress(range(3), desc="three", mode="log"))
    assert [line.split(" (")[0] for line in lines(caplog, "three")] == [
        "three: 1/3 it done", "three: 2/3 it done", "three: 3/3 it done"]
    list(progress(iter(range(7)), desc="stream", mode="log", unit="batches"))  # no len(): total unknown
    assert [line.split(" (")[0] for line in lines(caplog, "stream")] == ["stream: 7 batches done"]


def test_none_and_bar_only_operations_print_nothing(no_delay, caplog, capsys):
    caplog.set_level(logging.INFO, logger="slimkit")
    list(progress(range(50), desc="quiet", mode="none"))
    list(progress(range(50), desc="epoch", mode="log", log_lines=0))
    with Progress(50, "manual", mode="none") as task:
        task.update(50)
        task.write("a message")
    assert lines(caplog) == []
    assert capsys.readouterr() == ("", "")


def test_operations_shorter_than_the_delay_print_nothing(caplog):
    caplog.set_level(logging.INFO, logger="slimkit")
    list(progress(range(100), desc="fast", mode="log"))
    assert lines(caplog) == []


def test_a_failed_operation_writes_no_closing_line(no_delay, caplog):
    caplog.set_level(logging.INFO, logger="slimkit")
    with pytest.raises(RuntimeError):
        with Progress(None, "failing", mode="log") as task:
            task.update()
            raise RuntimeError("boom")
    assert lines(caplog) == []


def test_unknown_mode_is_refused():
    with pytest.raises(ValueError, match="progress mode"):
        Progress(3, "x", mode="verbose")


def test_training_logs_one_summary_line_per_epoch(no_delay, caplog, capsys):
    """Epoch batches and the evaluation after them are bar-only: the epoch line is their log."""
    config = make_config({"model": "lenet300", "data": "synthetic", "epochs": 2, "batch_size": 256,
                          "progress": "log"})
    trainer, _ = build_trainer(config, None)
    caplog.set_level(logging.INFO, logger="slimkit")
    trainer.fit()
    written = lines(caplog)
    assert [line.split("  ")[0] for line in written] == ["epoch 1/2", "epoch 2/2"]
    caplog.clear()
    trainer.config.progress = "none"
    trainer.evaluate(trainer.loaders.test)
    assert lines(caplog) == [] and capsys.readouterr() == ("", "")
