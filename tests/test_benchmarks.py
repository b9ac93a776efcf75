"""benchmarks/common.py's run_jobs shows how many runs of a sweep are done."""

import json
import sys
from pathlib import Path

import pytest

import slimkit.train.progress as progress_module

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "benchmarks"))
import common  # noqa: E402


@pytest.fixture
def finished_jobs(tmp_path, monkeypatch):
    """Jobs whose run folders are already finished (run_jobs skips them: no subprocess)."""
    monkeypatch.setattr(progress_module, "LOG_DELAY_S", 0.0)
    jobs = []
    for i in range(23):
        out = tmp_path / f"run-{i}"
        out.mkdir()
        (out / "metrics.json").write_text(json.dumps({"test_acc": 0.5}))
        jobs.append((f"run {i}", ["train"], out))
    return jobs


def test_log_mode_prints_at_most_ten_runs_done_lines(finished_jobs, capsys):
    assert common.run_jobs(finished_jobs, workers=2, progress="log") == []
    out = capsys.readouterr().out.splitlines()
    assert len(out) == 10
    assert all(line.startswith("sweep: ") for line in out)
    assert out[-1].startswith("sweep: 23/23 runs done (100%")


def test_none_mode_prints_nothing_for_skipped_runs(finished_jobs, capsys):
    assert common.run_jobs(finished_jobs, workers=2, progress="none") == []
    assert capsys.readouterr() == ("", "")
