"""The CLI side of run folders: `--overwrite`, and an interrupted command names its real folder."""

import pytest

import slimkit.runs
from slimkit.cli import main

QUICK = ["--model", "lenet300", "--data", "synthetic", "--epochs", "1", "--batch-size", "64", "--progress", "none"]


def _interrupt(*args, **kwargs):
    raise KeyboardInterrupt


@pytest.mark.parametrize("argv, folder", [
    (["train", *QUICK, "--out", "runs/my run"], "'runs/my run'"),
    (["train", *QUICK], "runs/lenet300-synthetic-dense-s0"),
    (["train", "--resume", "runs/old"], "runs/old"),
    (["distill", "--resume", "runs/kd"], "runs/kd"),
])
def test_the_interrupt_hint_names_the_real_folder(argv, folder, monkeypatch, capsys):
    for name in ("train_run", "resume_distill_run"):
        monkeypatch.setattr(slimkit.runs, name, _interrupt)
    assert main(argv) == 130
    err = capsys.readouterr().err
    assert f"--resume {folder}`" in err
    assert " OUT" not in err


def test_the_interrupt_hint_of_prune_names_its_default_folder(tmp_path, monkeypatch, capsys):
    from tests.runs.test_run_folder_claims import FIXTURES

    monkeypatch.setattr(slimkit.runs, "prune_run", _interrupt)
    source = FIXTURES / "mest-mlp"
    assert main(["prune", "--from", str(source), "--method", "magnitude"]) == 130
    assert f"slimkit train --resume {source.parent / 'mest-mlp-magnitude-0.8'}`" in capsys.readouterr().err


def test_overwrite_flag(tmp_path, capsys):
    out = tmp_path / "notes"
    out.mkdir()
    (out / "config.yaml").write_text("# mine\n")
    assert main(["train", *QUICK, "--out", str(out)]) == 2
    assert "slimkit did not write it (config.yaml)" in capsys.readouterr().err
    assert (out / "config.yaml").read_text() == "# mine\n"
    assert main(["train", *QUICK, "--out", str(out), "--overwrite"]) == 0
    assert (out / "metrics.json").exists()
