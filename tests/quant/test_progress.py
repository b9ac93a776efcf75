"""Progress of int8 calibration (counted as ORT reads the batches) in 'log' and 'none' mode."""

import logging

import numpy as np
import pytest

import slimkit.utils.progress as progress_module
from slimkit.quant.calibration import BatchReader
from slimkit.utils.progress import Progress


@pytest.fixture(autouse=True)
def _logged(monkeypatch, caplog):
    monkeypatch.setattr(progress_module, "LOG_DELAY_S", 0.0)
    caplog.set_level(logging.INFO, logger="slimkit")


def read_all(reader: BatchReader) -> int:
    """What ORT's calibrators do: get_next until None, running each batch."""
    count = 0
    while reader.get_next() is not None:
        count += 1
    return count


def test_calibration_batches_are_counted_once_run(caplog):
    batches = [np.zeros((2, 3), dtype=np.float32) for _ in range(25)]
    with Progress(len(batches), "int8 calibration", mode="log", unit="batches") as task:
        reader = BatchReader(batches, "input", task)
        assert read_all(reader) == 25
    written = [r.getMessage() for r in caplog.records]
    assert len(written) == 10
    assert written[-1].startswith("int8 calibration: 25/25 batches done (100%")


def test_none_mode_is_silent(caplog, capsys):
    batches = [np.zeros((2, 3), dtype=np.float32) for _ in range(5)]
    with Progress(len(batches), "int8 calibration", mode="none") as task:
        reader = BatchReader(batches, "input", task)
        read_all(reader)
        reader.rewind()
        read_all(reader)
    assert task.count == 10
    assert caplog.records == [] and capsys.readouterr() == ("", "")
