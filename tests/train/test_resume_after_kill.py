"""Kill a training subprocess mid-epoch with SIGKILL, resume it through the CLI, and check the
final weights equal an uninterrupted run bit for bit."""

import os
import signal
import subprocess
import sys
import textwrap
import time

import torch
from safetensors.torch import load_file

from slimkit.cli import main
from slimkit.train import CheckpointError, load_checkpoint

ARGS = ["--model", "lenet5", "--data", "synthetic", "--epochs", "4", "--batch-size", "32", "--progress", "none"]

SLOW_RUN = textwrap.dedent(
    """
    import sys, time
    from slimkit.runs.config import load_config
    from slimkit.runs import train_run
    from slimkit.train import Callback

    class SlowThirdEpoch(Callback):  # gives the test time to kill the run inside epoch 3
        def on_step_end(self, trainer, step):
            if step.epoch == 2:
                time.sleep(0.5)

    config = load_config(overrides=dict(model="lenet5", data="synthetic", epochs=4, batch_size=32, progress="none"))
    train_run(config, sys.argv[1], callbacks=[SlowThirdEpoch()])
    """
)


def _completed_epochs(path):
    try:
        return load_checkpoint(path)["epoch"]
    except CheckpointError:
        return 0


def test_resume_after_sigkill_matches_uninterrupted_run(tmp_path):
    assert main(["train", *ARGS, "--out", str(tmp_path / "reference")]) == 0

    killed = tmp_path / "killed"
    proc = subprocess.Popen([sys.executable, "-c", SLOW_RUN, str(killed)], env={**os.environ, "PYTHONUNBUFFERED": "1"})
    deadline = time.time() + 120
    while _completed_epochs(killed / "checkpoint.pt") < 2:
        assert proc.poll() is None, "the run ended before it could be killed"
        assert time.time() < deadline
        time.sleep(0.05)
    time.sleep(0.3)  # now inside epoch 3
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    assert not (killed / "metrics.json").exists()
    assert load_checkpoint(killed / "checkpoint.pt")["epoch"] == 2

    assert main(["train", "--resume", str(killed)]) == 0
    reference = load_file(tmp_path / "reference" / "model.safetensors")
    resumed = load_file(killed / "model.safetensors")
    assert reference.keys() == resumed.keys()
    for key in reference:
        assert torch.equal(reference[key], resumed[key]), key
