"""benchmarks/common.py: run_jobs shows how many runs of a sweep are done; run_job resumes interrupted runs."""

import json
import sys
from pathlib import Path

import pytest

import slimkit.utils.progress as progress_module

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


@pytest.fixture
def recorded_commands(monkeypatch):
    """subprocess.run replaced by a recorder: run_job's decisions without training anything."""
    commands = []
    monkeypatch.setattr(common.subprocess, "run", lambda cmd, **kwargs: commands.append(cmd[3:]))
    return commands


def _interrupted(out, args):
    """A run folder left by an interrupted run_job of `args`."""
    out.mkdir(parents=True)
    out.with_name(f"{out.name}.args.json").write_text(json.dumps(args))


def test_interrupted_train_run_is_resumed_not_deleted(tmp_path, recorded_commands):
    out = tmp_path / "dense"
    _interrupted(out, ["train", "--epochs", "10"])
    (out / "config.yaml").write_text("model: lenet5\n")
    (out / "checkpoint.pt").write_bytes(b"epoch 3")
    common.run_job(("dense", ["train", "--epochs", "10"], out), say=lambda _: None)
    assert recorded_commands == [["train", "--resume", str(out)]]
    assert (out / "checkpoint.pt").read_bytes() == b"epoch 3"
    assert "resumed" in (tmp_path / "dense.log").read_text()


def test_interrupted_slim_run_continues_its_l1_training(tmp_path, recorded_commands):
    out = tmp_path / "slim"
    _interrupted(out, ["slim", "--prune-ratio", "0.5"])
    (out / "train").mkdir()
    (out / "train" / "config.yaml").write_text("model: vgg11\n")
    common.run_job(("slim", ["slim", "--prune-ratio", "0.5"], out), say=lambda _: None)
    assert recorded_commands == [["slim", "--prune-ratio", "0.5", "--progress", "log", "--out", str(out)]]
    assert (out / "train" / "config.yaml").exists()


def test_interrupted_channel_fine_tuning_is_run_again_in_place(tmp_path, recorded_commands):
    out = tmp_path / "scratch"
    _interrupted(out, ["prune-channels", "--from", "x"])
    (out / "checkpoint.pt").write_bytes(b"epoch 4")  # prune-channels continues it itself
    common.run_job(("scratch", ["prune-channels", "--from", "x"], out), say=lambda _: None)
    assert recorded_commands == [["prune-channels", "--from", "x", "--progress", "log", "--out", str(out)]]
    assert (out / "checkpoint.pt").exists()


def test_run_that_cannot_resume_starts_over_in_an_empty_folder(tmp_path, recorded_commands):
    out = tmp_path / "int8"
    out.mkdir()
    (out / "model.fp32.onnx").write_bytes(b"half written")  # quantize has no resume
    common.run_job(("int8", ["quantize", "--from", "x"], out), say=lambda _: None)
    assert recorded_commands == [["quantize", "--from", "x", "--progress", "log", "--out", str(out)]]
    assert not out.exists() or not any(out.iterdir())


@pytest.mark.parametrize("resume", [True, False])
def test_changed_job_or_timing_run_starts_over(tmp_path, recorded_commands, resume):
    out = tmp_path / "dense"
    _interrupted(out, ["train", "--epochs", "10"] if not resume else ["train", "--epochs", "5"])
    (out / "config.yaml").write_text("epochs: 5\n")
    common.run_job(("dense", ["train", "--epochs", "10"], out), say=lambda _: None, resume=resume)
    assert recorded_commands == [["train", "--epochs", "10", "--progress", "log", "--out", str(out)]]
    assert not out.exists() or not any(out.iterdir())


def _write_metrics(folder: Path, **metrics) -> None:
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "metrics.json").write_text(json.dumps(metrics))


def test_netslim_table_names_the_seeds_behind_each_row(tmp_path, monkeypatch):
    """Rows with fewer finished seeds than asked for say so, and average only those seeds in every column."""
    import argparse

    import netslim_fmnist

    benchmarks_md = tmp_path / "BENCHMARKS.md"
    monkeypatch.setattr(common, "BENCHMARKS_MD", benchmarks_md)
    sizes = dict(params_before=2e5, params_after=1e5, flops_before=6e7, flops_after=3e7, flops_reduction=2.0,
                 latency_ms_before=2.0, latency_ms_after=1.0, speedup=2.0)
    seeds_per_model = {"resnet20": [0, 1], "vgg11": [0]}
    _write_metrics(tmp_path / "dense-vgg11-s1", test_acc=0.99)  # seed 1 under way: its dense run alone is done
    for model, seeds in seeds_per_model.items():
        for seed in seeds:
            _write_metrics(tmp_path / f"dense-{model}-s{seed}", test_acc=0.93)
            _write_metrics(tmp_path / f"slim0.5-{model}-s{seed}" / "train", test_acc=0.92)
            _write_metrics(tmp_path / f"slim0.5-{model}-s{seed}", test_acc=0.91 + seed / 100,
                           test_acc_before_finetune=0.2, **sizes)
            _write_metrics(tmp_path / f"scratch0.5-{model}-s{seed}", test_acc=0.90)
    args = argparse.Namespace(models=["resnet20", "vgg11"], seeds=[0, 1], ratios=[0.5], epochs=10,
                              finetune_epochs=5, sparsity_l1=1e-4, device="cpu")

    netslim_fmnist.write_table(args, tmp_path)

    rows = {line.split(" | ")[0].lstrip("| "): line for line in benchmarks_md.read_text().splitlines()
            if line.startswith("| resnet20") or line.startswith("| vgg11")}
    assert rows["resnet20"].startswith("| resnet20 | 50% | 0, 1 | 93.00% ± 0.00% |")
    assert "91.50% ± 0.71%" in rows["resnet20"]
    assert rows["vgg11"].startswith("| vgg11 | 50% | 0 | 93.00% |")
