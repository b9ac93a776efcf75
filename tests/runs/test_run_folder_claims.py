"""Every pipeline holds its run folder for the whole run, refuses a folder another run holds or
one of files slimkit did not write, and sweeps the temp files a killed run left."""

import fcntl
import os
from pathlib import Path

import pytest

from slimkit.runs import (
    RunFolderError, distill_run, make_config, prune_channels_run, prune_run, quantize_run, slim_run, train_run,
)
from slimkit.runs.config import dump_config
from slimkit.utils.folder_lock import LOCK_FILE

FIXTURES = Path(__file__).parents[1] / "fixtures" / "runs-0.1.0"
TINY = dict(model="lenet300", data="synthetic", epochs=1, batch_size=64, progress="none")


@pytest.fixture
def held_folder(tmp_path):
    """A folder whose lock another open file (as another process would) holds, naming pid 4242."""
    out = tmp_path / "out"
    out.mkdir()
    fd = os.open(out / LOCK_FILE, os.O_RDWR | os.O_CREAT)
    fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    os.write(fd, b"4242\n")
    yield out
    os.close(fd)


PIPELINES = {
    "train": lambda out: train_run(make_config(TINY), out),
    "resume": lambda out: train_run(make_config(TINY), out, resume=True),
    "imp": lambda out: train_run(make_config({**TINY, "method": "imp", "sparsity": 0.5}), out),
    "prune": lambda out: prune_run(FIXTURES / "mest-mlp", out, method="magnitude", finetune_epochs=1),
    "distill": lambda out: distill_run(make_config(TINY), [FIXTURES / "mest-mlp"], out),
    "prune-channels": lambda out: prune_channels_run(FIXTURES / "channels-lenet5", out, ratio=0.5),
    "slim": lambda out: slim_run(make_config({**TINY, "model": "lenet5"}), out, sparsity_l1=1e-4, prune_ratio=0.5,
                                 finetune_epochs=1),
    "quantize": lambda out: quantize_run(FIXTURES / "mest-mlp", out),
}


@pytest.mark.parametrize("pipeline", PIPELINES)
def test_a_folder_held_by_another_run_is_refused_naming_its_pid(held_folder, pipeline):
    (held_folder / ".slimkit-run").write_text("")  # a slimkit run folder (resume needs one)
    (held_folder / "config.yaml").write_text("model: lenet300\ndata: synthetic\n")
    before = sorted(p.name for p in held_folder.iterdir())
    with pytest.raises(RunFolderError, match=f"{held_folder} is in use by another slimkit run .pid 4242"):
        PIPELINES[pipeline](held_folder)
    assert sorted(p.name for p in held_folder.iterdir()) == before  # nothing written, nothing mixed


@pytest.mark.parametrize("pipeline", ["train", "prune", "distill", "prune-channels", "slim", "quantize"])
def test_a_folder_slimkit_did_not_write_is_refused(tmp_path, pipeline):
    out = tmp_path / "mine"
    out.mkdir()
    (out / "config.yaml").write_text("# my own settings\n")
    (out / "model.json").write_text('{"mine": true}')
    with pytest.raises(RunFolderError, match="slimkit did not write it .config.yaml, model.json.*--overwrite"):
        PIPELINES[pipeline](out)
    assert (out / "config.yaml").read_text() == "# my own settings\n"
    assert sorted(p.name for p in out.iterdir()) == ["config.yaml", "model.json"]


def test_overwrite_writes_the_run_into_a_foreign_folder(tmp_path):
    out = tmp_path / "mine"
    out.mkdir()
    (out / "config.yaml").write_text("# my own settings\n")
    train_run(make_config(TINY), out, overwrite=True)
    assert "lenet300" in (out / "config.yaml").read_text()
    assert (out / "metrics.json").exists()


def test_resume_sweeps_the_temp_files_a_killed_run_left(tmp_path):
    out = tmp_path / "run"
    before = train_run(make_config({**TINY, "epochs": 2}), out)
    (out / "metrics.json").unlink()  # as if killed after its last checkpoint ...
    stale = [out / ".checkpoint.pt.a1b2c3d4.tmp", out / ".model.safetensors.zz_9yx8w.tmp"]
    for path in stale:
        path.write_bytes(b"half written")  # ... while writing these
    after = train_run(make_config(TINY), out, resume=True)
    assert not any(path.exists() for path in stale)
    # no step taken in this process, yet the same figures (gradients it held are counted)
    assert after["train_state_bytes"] == before["train_state_bytes"]
    assert after["test_acc"] == before["test_acc"]


def test_imp_sweeps_the_temp_files_of_its_rounds(tmp_path):
    out = tmp_path / "imp"
    config = make_config({**TINY, "method": "imp", "sparsity": 0.5, "imp_rounds": 1})
    (out / "round-0").mkdir(parents=True)
    (out / "config.yaml").write_text(dump_config(config))  # killed in round 0 before its first checkpoint ...
    stale = out / "round-0" / ".checkpoint.pt.a1b2c3d4.tmp"
    stale.write_bytes(b"half written")  # ... while writing it
    train_run(config, out, resume=True)
    assert not stale.exists()
